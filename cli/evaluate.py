"""`slamctl evaluate`: bag metrics and Top-K positive-cell retrieval on held-out bags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.choices import Split
from slamctl.cli.console import out as stdout
from slamctl.cli.console import warn_if_degenerate
from slamctl.cli.options import probability


def evaluate(
    run: Annotated[Path, typer.Option(help="MIL run folder (holds mil.pt) or the mil.pt file.")],
    embeddings: Annotated[Path, typer.Option(help="Embedding folder.")],
    bags: Annotated[Path, typer.Option(help="Bag folder with labels.csv, split.csv and cells.csv.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/eval).")] = None,
    split: Annotated[Split, typer.Option(help="Bags to evaluate (split.csv): test, train or all.")] = "test",
    top_k: Annotated[
        int | None, typer.Option(min=1, help="K cells for retrieval (default: 0.4 x bag size).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            callback=probability,
            help="Decision threshold on P(abnormal) (default: the one train mil chose on validation).",
        ),
    ] = None,
) -> None:
    """Evaluate a MIL run: bag F1, AUC, precision, recall; Top-K retrieval; per-bag and per-cell CSVs.

    With cell truth (BAGS/cells.csv) it also reports the encoder probe: the cell-level AUC of a
    bag-wise cross-validated logistic regression on the embeddings, so a weak encoder and a
    weak aggregator can be told apart.
    """
    from slamctl.training.evaluate import evaluate as run_eval

    mil_path = run / "mil.pt" if run.is_dir() else run
    out = out or mil_path.parent / "eval"
    s = run_eval(
        mil_path,
        embeddings,
        bags,
        out,
        split=None if split.value == "all" else split.value,
        top_k=top_k,
        threshold=threshold,
    )
    retrieval = "n/a" if s["top_k_fraction_mean"] is None else f"{s['top_k_fraction_mean']:.3f}"
    probe = "n/a (no cells.csv)" if s["probe_auc"] is None else f"{s['probe_auc']:.3f}"
    stdout.print(
        f"{s['bags']} bags: F1 {s['f1']:.3f}  AUC {s['auc']:.3f}  precision {s['precision']:.3f}  "
        f"recall {s['recall']:.3f} at threshold {s['threshold']:.3f} ({s['threshold_rule']})  "
        f"top-K retrieval {retrieval}  encoder probe cell AUC {probe}  -> {out}"
    )
    warn_if_degenerate(s["health"], f"on the {split.value} bags")
