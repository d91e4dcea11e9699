"""`slamctl experiment`: the witness-rate sweep and the synthetic-data difficulty check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.choices import Foundation, SweepPreset
from slamctl.cli.console import err, progress_bar
from slamctl.cli.options import WeightsOption
from slamctl.training.bag_generation import BagSpec
from slamctl.training.experiment_config import CELL_AUC_PRETRAIN, CELL_AUC_SYNTH, PRESETS
from slamctl.training.pretrain_config import METHODS

app = typer.Typer(help="Experiments: the witness-rate sweep of the paper's claim.", no_args_is_help=True)


def check_methods(value: str) -> str:
    """--methods: every name a pretraining method, checked before any data is made."""
    unknown = [m for m in value.split(",") if m and m not in METHODS]
    if unknown:
        raise typer.BadParameter(f"unknown method {unknown[0]!r}: expected some of {', '.join(METHODS)}")
    return value


@app.command(name="wr-sweep")
def wr_sweep(
    out: Annotated[Path, typer.Option(help="Output folder: data, runs, results tables and plot.")],
    preset: Annotated[
        SweepPreset,
        typer.Option(help="cpu (2 cores), smoke (seconds, a check that it runs) or paper (GPU servers)."),
    ] = "cpu",
    methods: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated pretraining methods among {', '.join(METHODS)} (default: all).",
            callback=check_methods,
        ),
    ] = "",
    witness_rates: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated witness rates (default: the preset's, cpu "
            + ",".join(f"{w:g}" for w in PRESETS["cpu"].witness_rates)
            + ")."
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Seeds per (method, witness rate) (default: the preset's, {len(PRESETS['cpu'].seeds)}).",
        ),
    ] = None,
    cells: Annotated[
        Path | None, typer.Option(help="A real class-folder data set instead of synthetic data.")
    ] = None,
    negative_class: Annotated[
        str, typer.Option(help="With --cells: class of normal cells.")
    ] = BagSpec.negative_class,
    positive_class: Annotated[
        str, typer.Option(help="With --cells: class of abnormal cells.")
    ] = BagSpec.positive_class,
    foundation: Annotated[
        Foundation | None,
        typer.Option(
            help="Add a frozen foundation encoder's row (its embeddings, the same MIL, the same bags); "
            "needs --weights."
        ),
    ] = None,
    weights: WeightsOption = None,
) -> None:
    """Every pretraining method x witness rate x seed with MIL on top; tables and a plot.

    Resumable: finished runs are kept and skipped when the command is run again.
    """
    from slamctl.training.experiment import run_sweep

    cfg = PRESETS[preset.value]
    if witness_rates is not None:
        try:
            cfg = replace(cfg, witness_rates=tuple(float(w) for w in witness_rates.split(",")))
        except ValueError:
            raise typer.BadParameter(f"expected numbers like 0.1,0.05, got {witness_rates!r}") from None
    if seeds is not None:
        cfg = replace(cfg, seeds=tuple(range(seeds)))
    cfg = replace(cfg, methods=tuple(m for m in methods.split(",") if m) or cfg.methods)
    if (foundation is None) != (weights is None):
        raise typer.BadParameter("--foundation and --weights go together: the encoder's name and its file")
    if foundation is not None:
        cfg = replace(cfg, foundation=foundation.value, foundation_weights=str(weights))
    spec = BagSpec(
        negative_class=negative_class,
        positive_class=positive_class,
        bags=cfg.synth.bags,
        cells_per_bag=cfg.synth.cells_per_bag,
    )
    with progress_bar() as bar:
        task = bar.add_task("witness-rate sweep", total=None, info="")
        run_sweep(
            cfg,
            out,
            cells_root=cells,
            bag_spec=spec,
            on_run=lambda done, total, name: bar.update(task, completed=done, total=total, info=name),
        )
    err.print(f"results: {out / 'results.md'}, {out / 'results.png'}")


@app.command(name="cell-auc")
def cell_auc(
    out: Annotated[Path, typer.Option(help="Folder for the synthetic bags and the classifier it trains.")],
    difficulty: Annotated[
        float, typer.Option(help="Synthetic difficulty to measure (0 distinct .. 1 identical).")
    ] = CELL_AUC_SYNTH.difficulty,
    image_size: Annotated[int, typer.Option(help="Cell image size in px.")] = CELL_AUC_SYNTH.image_size,
    epochs: Annotated[
        int, typer.Option(help="Training epochs of the cell classifier.")
    ] = CELL_AUC_PRETRAIN.epochs,
    bags: Annotated[
        int, typer.Option(help="Synthetic bags (30% held out for the test AUC).")
    ] = CELL_AUC_SYNTH.bags,
    cells_per_bag: Annotated[
        int, typer.Option(help="Cells per bag (20% abnormal in abnormal bags).")
    ] = CELL_AUC_SYNTH.cells_per_bag,
    null: Annotated[
        bool,
        typer.Option("--null", help="Abnormal cells drawn exactly like normal ones (a control: AUC ~0.5)."),
    ] = False,
) -> None:
    """How hard are synthetic abnormal cells? Test AUC of a cell classifier on true cell labels.

    The classifier is the witness-rate sweep's cell-supervised encoder (pretrained on the
    cells' true labels), scored by its classification head on every cell of the test bags.
    """
    from slamctl.training.cell_auc import cell_classifier_auc

    synth = replace(
        CELL_AUC_SYNTH,
        bags=bags,
        cells_per_bag=cells_per_bag,
        image_size=image_size,
        difficulty=difficulty,
        null=null,
    )
    auc = cell_classifier_auc(synth, replace(CELL_AUC_PRETRAIN, epochs=epochs), out)
    typer.echo(f"difficulty {difficulty}: single-cell classifier test AUC {auc:.3f}")
