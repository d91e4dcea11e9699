"""`slamctl train`: pretrain the cell encoder (SLAM-AGS or a baseline)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from client.console import err, progress_bar

app = typer.Typer(help="Pretrain the cell encoder and train the MIL aggregator.", no_args_is_help=True)


@app.command()
def pretrain(
    bags: Annotated[Path, typer.Option(help="Bag folder with labels.csv (the train split is used).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt, telemetry.csv.")],
    method: Annotated[
        str, typer.Option(help="slam-ags | weaksupcon | pcgrad | simclr | supervised.")
    ] = "slam-ags",
    preset: Annotated[str, typer.Option(help="paper (DESIGN 2.3 defaults) or tiny (CPU minutes).")] = "paper",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's learning rate.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Override: decode size of cell images.")] = None,
    crop_size: Annotated[int | None, typer.Option(help="Override: crop size (the model's input S).")] = None,
    width: Annotated[int | None, typer.Option(help="Override: ResNet18 width (64 = standard).")] = None,
    workers: Annotated[int | None, typer.Option(help="Override: image-decoding processes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if present).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop this run after N steps (resumable).")] = None,
) -> None:
    """Pretrain a ResNet18 cell encoder with SLAM-AGS or a baseline, with exact resume.

    Multi-GPU: torchrun --nproc-per-node N $(which slamctl) train pretrain ...
    """
    from training.pretrain import PRESETS
    from training.pretrain import pretrain as run

    if preset not in PRESETS:
        raise typer.BadParameter(
            f"expected one of {', '.join(PRESETS)}, got {preset!r}", param_hint="--preset"
        )
    overrides = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "image_size": image_size,
        "crop_size": crop_size, "width": width, "num_workers": workers,
    }  # fmt: skip
    cfg = replace(
        PRESETS[preset],
        method=method,
        seed=seed,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    with progress_bar() as bar:
        task = bar.add_task(f"pretraining {method}", total=None, info="")

        def on_step(step, total, stats):
            losses = " ".join(f"{v:.3f}" for v in stats.losses)
            bar.update(task, completed=step, total=total, info=f"loss {losses}")

        path = run(cfg, bags, out, resume=resume, max_steps=max_steps, device=device, on_step=on_step)
    err.print(f"checkpoint: {path}")
