"""`slamctl data`: make bag data sets (synthetic, or from a class-folder cell data set)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.console import err, progress_bar
from slamctl.cli.options import Seed
from slamctl.training.bag_generation import BagSpec  # numpy and Pillow only: no torch
from slamctl.training.synthetic import SynthConfig

_SYNTH = SynthConfig()
_SPEC = BagSpec()

app = typer.Typer(
    help="Make bag data sets: synthetic cytology or bags from class folders.", no_args_is_help=True
)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output bag folder (BAGS).")],
    bags: Annotated[int, typer.Option(help="Number of bags, half of them abnormal.")] = _SYNTH.bags,
    cells_per_bag: Annotated[int, typer.Option(help="Mean cells per bag.")] = _SYNTH.cells_per_bag,
    witness_rate: Annotated[
        float, typer.Option(help="Fraction of abnormal cells in an abnormal bag.")
    ] = _SYNTH.witness_rate,
    image_size: Annotated[
        int, typer.Option(help="Cell image size in px (the real data set: 250).")
    ] = _SYNTH.image_size,
    difficulty: Annotated[
        float, typer.Option(help="0 = blasts clearly distinct .. 1 = identical to lymphocytes.")
    ] = _SYNTH.difficulty,
    null: Annotated[
        bool, typer.Option("--null", help="Draw abnormal cells exactly like normal ones (no signal).")
    ] = False,
    bag_size_jitter: Annotated[
        float, typer.Option(help="Bag size varies by +- this fraction.")
    ] = _SYNTH.bag_size_jitter,
    test_fraction: Annotated[
        float, typer.Option(help="Fraction of bags held out (split.csv).")
    ] = _SYNTH.test_fraction,
    seed: Seed = _SYNTH.seed,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a different data set in OUT.")] = False,
) -> None:
    """Generate synthetic stained-smear bags: OUT/<bag>/*.png, labels.csv, split.csv, cells.csv."""
    from slamctl.training.synthetic import generate

    config = SynthConfig(
        bags=bags,
        cells_per_bag=cells_per_bag,
        witness_rate=witness_rate,
        image_size=image_size,
        seed=seed,
        difficulty=difficulty,
        null=null,
        bag_size_jitter=bag_size_jitter,
        test_fraction=test_fraction,
    )
    with progress_bar() as bar:
        task = bar.add_task("synthesising bags", total=bags, info="")
        made = generate(
            config, out, force=force, progress=lambda done, total: bar.update(task, completed=done)
        )
    err.print(f"{'wrote' if made else 'already there:'} {bags} bags in {out}")


@app.command(name="bags")
def make_bags(
    cells: Annotated[Path, typer.Option(help="Cell data set root: ROOT/<CLASS>/<image>.")],
    out: Annotated[Path, typer.Option(help="Output bag folder (BAGS).")],
    negative_class: Annotated[str, typer.Option(help="Class folder of normal cells.")] = _SPEC.negative_class,
    positive_class: Annotated[
        str, typer.Option(help="Class folder of abnormal cells.")
    ] = _SPEC.positive_class,
    witness_rate: Annotated[
        float, typer.Option(help="Fraction of positive cells in an abnormal bag.")
    ] = _SPEC.witness_rate,
    bags: Annotated[int, typer.Option(help="Number of bags, half of them abnormal.")] = _SPEC.bags,
    cells_per_bag: Annotated[int, typer.Option(help="Cells per bag.")] = _SPEC.cells_per_bag,
    test_fraction: Annotated[
        float, typer.Option(help="Fraction of bags held out (split.csv).")
    ] = _SPEC.test_fraction,
    seed: Seed = _SPEC.seed,
    force: Annotated[bool, typer.Option("--force", help="Overwrite bags already in OUT.")] = False,
) -> None:
    """Make bags from a class-folder data set (e.g. Bone Marrow Cytomorphology), linking cells."""
    from slamctl.training.bag_generation import make_bags as make

    spec = BagSpec(
        negative_class=negative_class,
        positive_class=positive_class,
        witness_rate=witness_rate,
        bags=bags,
        cells_per_bag=cells_per_bag,
        seed=seed,
        test_fraction=test_fraction,
    )
    counts = make(cells, spec, out, force=force)
    err.print(
        f"wrote {counts['bags']} bags ({counts['cells']} cells, {counts['positives']} positive, "
        f"{counts['copied']} copied) in {out}"
    )
