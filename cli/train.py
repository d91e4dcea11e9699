"""`slamctl train`: pretrain the cell encoder (SLAM-AGS or a baseline)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.choices import Aggregator, Features, InstanceLoss, Method, PretrainPreset
from slamctl.cli.console import err, progress_bar, warn_if_degenerate
from slamctl.cli.options import EncoderOption, Seed, WeightsOption, positive
from slamctl.training.embed_config import EmbedConfig
from slamctl.training.mil_config import MilConfig
from slamctl.training.pretrain_config import PRESETS, PretrainConfig

_MIL = MilConfig()  # the defaults of `train mil`, defined once

app = typer.Typer(help="Pretrain the cell encoder and train the MIL aggregator.", no_args_is_help=True)


@app.command()
def pretrain(
    bags: Annotated[Path, typer.Option(help="Bag folder with labels.csv (the train split is used).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt, telemetry.csv.")],
    method: Annotated[
        Method, typer.Option(help="Pretraining method: SLAM-AGS or a baseline.")
    ] = PretrainConfig.method,
    preset: Annotated[
        PretrainPreset, typer.Option(help="paper (the paper's settings) or tiny (CPU minutes).")
    ] = "paper",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch size.")] = None,
    lr: Annotated[
        float | None, typer.Option(callback=positive, help="Override the preset's learning rate.")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Override: decode size of cell images.")] = None,
    crop_size: Annotated[
        int | None, typer.Option(min=1, help="Override: crop size (the model's input S).")
    ] = None,
    width: Annotated[
        int | None, typer.Option(min=1, help="Override: ResNet18 width (64 = standard).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Override: image-decoding processes.")] = None,
    max_cells: Annotated[
        int,
        typer.Option(min=0, help="Pretrain on a seeded subset of this many training cells (0: all)."),
    ] = PretrainConfig.max_cells,
    seed: Seed = PretrainConfig.seed,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if present).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop this run after N steps (resumable).")
    ] = None,
) -> None:
    """Pretrain a ResNet18 cell encoder with SLAM-AGS or a baseline, with exact resume.

    Multi-GPU: torchrun --nproc-per-node N $(which slamctl) train pretrain ...
    """
    from slamctl.training.pretrain import pretrain as run

    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "image_size": image_size,
        "crop_size": crop_size,
        "width": width,
        "num_workers": workers,
    }
    cfg = replace(
        PRESETS[preset.value],
        method=method.value,
        seed=seed,
        max_cells=max_cells,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    with progress_bar() as bar:
        task = bar.add_task(f"pretraining {method.value}", total=None, info="")

        def on_step(step, total, stats):
            losses = " ".join(f"{v:.3f}" for v in stats.losses)
            bar.update(task, completed=step, total=total, info=f"loss {losses}")

        path = run(cfg, bags, out, resume=resume, max_steps=max_steps, device=device, on_step=on_step)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        err.print(f"checkpoint: {path}")


@app.command()
def embed(
    encoder: EncoderOption,
    bags: Annotated[Path, typer.Option(help="Bag folder with labels.csv.")],
    out: Annotated[Path, typer.Option(help="Embedding folder: one <bag_id>.npz per bag.")],
    weights: WeightsOption = None,
    interpolate_pos_embed: Annotated[
        bool,
        typer.Option(
            "--interpolate-pos-embed",
            help="A foundation encoder's weights made at another size (stock DINOv2: 518 px): resize "
            "their position embedding to 224 px. DinoBloom's own weights need no resizing.",
        ),
    ] = False,
    features: Annotated[
        Features,
        typer.Option(
            help="h (backbone, 8*width; the better for the MIL, see README) or z (projection head)."
        ),
    ] = EmbedConfig.features,
    batch_size: Annotated[int, typer.Option(min=1, help="Cells per forward pass.")] = EmbedConfig.batch_size,
    workers: Annotated[int, typer.Option(min=0, help="Image-decoding processes.")] = EmbedConfig.num_workers,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if present).")] = None,
) -> None:
    """Embed every cell of every bag, batched; bags already embedded are skipped (resumable).

    The encoder is a slamctl pretraining checkpoint, or a frozen foundation encoder:
    --encoder dinobloom-s --weights DinoBloom-S.pth (DinoBloom's own file, read from disk).
    """
    from slamctl.training.embed import embed_bags

    with progress_bar() as bar:
        task = bar.add_task("embedding bags", total=None, info="")
        meta = embed_bags(
            encoder,
            bags,
            out,
            weights=weights,
            interpolate=interpolate_pos_embed,
            features=features.value,
            batch_size=batch_size,
            num_workers=workers,
            device=device,
            on_bag=lambda done, total, bag_id: bar.update(task, completed=done, total=total, info=bag_id),
        )
    err.print(f"embeddings ({meta['features']}, D={meta['dim']}) in {out}")


@app.command()
def mil(
    embeddings: Annotated[Path, typer.Option(help="Embedding folder from `slamctl train embed`.")],
    labels: Annotated[Path, typer.Option(help="BAGS/labels.csv (split.csv beside it selects train bags).")],
    out: Annotated[Path, typer.Option(help="Run folder: mil.pt, mil_history.csv.")],
    aggregator: Annotated[
        Aggregator,
        typer.Option(
            help="maxmil (a linear cell scorer, max pooling: the default), pamil (the paper's) or "
            "abmil (gated attention)."
        ),
    ] = _MIL.aggregator,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = _MIL.epochs,
    lr: Annotated[float, typer.Option(callback=positive, help="Adam learning rate.")] = _MIL.lr,
    n_proto: Annotated[int, typer.Option(min=1, help="PAMIL prototypes.")] = _MIL.n_proto,
    standardise: Annotated[
        bool,
        typer.Option(
            help="Per-bag robust standardisation (median, MAD) as the aggregator's first layer, "
            "in the exported graph: removes a slide's offset and scale."
        ),
    ] = _MIL.standardise,
    top_fraction: Annotated[
        float,
        typer.Option(
            help="maxmil's pooling: the bag's logit is the mean of its k highest cell scores, k = this "
            "fraction of its cells (at least one); 0 takes the highest. 0.01 pools as many cells as a "
            "1% witness rate puts in a bag."
        ),
    ] = _MIL.top_fraction,
    instance_loss: Annotated[
        InstanceLoss,
        typer.Option(
            help="Instance-level loss: 'negatives' (every cell of a negative bag is normal, the top "
            "cell of a positive bag abnormal, on the attention logits), 'reference' (PAMIL.py's "
            "--inst_pred: top/bottom 8 attended cells) or 'none'."
        ),
    ] = _MIL.instance_loss,
    proto_pred: Annotated[
        bool, typer.Option(help="PAMIL's prototype prediction with its ER loss (PAMIL.py's --proto_pred).")
    ] = _MIL.proto_pred,
    restarts: Annotated[
        int,
        typer.Option(help="Models trained from different seeds; the lowest validation loss is kept."),
    ] = _MIL.restarts,
    subsample: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Bag augmentation: each training step sees this random fraction of a bag's cells "
            "(1: all; validation and serving always see every cell).",
        ),
    ] = _MIL.subsample,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Curriculum (PAMIL.py's --resume_path): start from this mil.pt, trained at a higher "
            "witness rate, with the prototypes and projections frozen for --freeze-epochs."
        ),
    ] = None,
    freeze_epochs: Annotated[
        int, typer.Option(help="Curriculum: epochs before the frozen parts train.")
    ] = _MIL.freeze_epochs,
    folds: Annotated[
        int,
        typer.Option(
            help="K > 1: one model per stratified fold of the train bags, selected on its fold; every "
            "train bag gets an out-of-fold prediction (OUT/oof.csv, the threshold's data) and the K "
            "models are saved and served as one (mean probability, mean attention)."
        ),
    ] = _MIL.folds,
    val_fraction: Annotated[
        float, typer.Option(help="Train bags held out for model selection.")
    ] = _MIL.val_fraction,
    patience: Annotated[
        int, typer.Option(min=1, help="Early stopping: epochs without a better validation loss.")
    ] = _MIL.patience,
    target_sensitivity: Annotated[
        float | None,
        typer.Option(
            help="Choose the highest threshold reaching this sensitivity on validation bags "
            "(default: the threshold of best validation F1)."
        ),
    ] = _MIL.target_sensitivity,
    seed: Seed = _MIL.seed,
) -> None:
    """Train the MIL aggregator on bag labels; the model kept has the lowest validation loss.

    The decision threshold is chosen on the validation bags and stored in mil.pt; a model
    whose attention is uniform or whose outputs are constant is flagged as degenerate.
    """
    from slamctl.training.checkpoint import MIL_KIND, load_checkpoint
    from slamctl.training.mil import train_mil

    cfg = MilConfig(
        aggregator=aggregator.value,
        epochs=epochs,
        lr=lr,
        n_proto=n_proto,
        standardise=standardise,
        top_fraction=top_fraction,
        instance_loss=instance_loss.value,
        proto_pred=proto_pred,
        restarts=restarts,
        subsample=subsample,
        folds=folds,
        init_from=str(init_from) if init_from else None,
        freeze_epochs=freeze_epochs,
        val_fraction=val_fraction,
        patience=patience,
        target_sensitivity=target_sensitivity,
        seed=seed,
    )
    with progress_bar() as bar:
        task = bar.add_task(f"training {aggregator.value}", total=epochs, info="")

        def on_epoch(done, total, row):
            info = f"val loss {row['val_loss']:.3f} F1 {row['val_f1']:.2f}"
            bar.update(task, completed=done, info=info)

        path = train_mil(cfg, embeddings, labels, out, on_epoch=on_epoch)
    ckpt = load_checkpoint(path, MIL_KIND)
    health = ckpt["health"]
    best = ckpt["best"]
    selected = (
        f"{folds} folds, best epochs {', '.join(str(b['epoch'] + 1) for b in best['folds'])}, mean validation loss"
        if folds > 1
        else f"epoch {best['epoch'] + 1}, validation loss"
    )
    err.print(
        f"checkpoint: {path} ({selected} {best['val_loss']:.3f}, "
        f"threshold {ckpt['threshold']:.3f}: {ckpt['threshold_rule']}; attention entropy "
        f"{health['attention_entropy']:.3f} of log N, P(abnormal) spread {health['prob_spread']:.3f})"
    )
    warn_if_degenerate(health, "on the validation bags")
