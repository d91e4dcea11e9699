"""The witness-rate sweep: every pretraining method x witness rate x seed, MIL on top.

For each (witness rate, seed) one data set is made (synthetic, or bags from a class-folder
data set) and shared by every method, so methods differ only in pretraining; every
method gets the same budget (epochs, batch, model, MIL training). Each run is
synth/bags -> pretrain -> embed -> MIL -> evaluate and leaves its summary.json, so an
interrupted sweep resumes where it stopped; a sweep resumed with other MIL settings retrains
only MIL on the kept embeddings.

Outputs under OUT (training/sweep_results.py writes them): runs.csv (one row per run, with the gradient-conflict telemetry),
results.csv and results.md (mean +- std over seeds of bag F1, Top-K retrieval and bag AUC per
method and witness rate), intervals.csv and intervals.md (the same figures with 95% bootstrap
intervals over the test bags, training/statistics.py), paired.md (SLAM-AGS minus each other
method on the same data: bag AUC per seed and a paired bootstrap interval), conflicts.md, and
results.png (bag AUC and top-K with their intervals, probe AUC, against the witness rate).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.files import write_atomic
from slamctl.tables import read_csv
from slamctl.training.bag_generation import BagSpec, make_bags
from slamctl.training.embed import embed_bags
from slamctl.training.embed_config import FOUNDATION_FEATURES
from slamctl.training.evaluate import evaluate
from slamctl.training.experiment_config import SweepConfig
from slamctl.training.mil import train_mil
from slamctl.training.mil_config import MilConfig
from slamctl.training.pretrain import pretrain
from slamctl.training.sweep_results import plot, run_dir, write_intervals, write_tables
from slamctl.training.synthetic import generate

log = logging.getLogger(__name__)

MIL_SETTINGS = "mil_config.json"  # beside eval/summary.json: the MIL settings it was made with


def conflict_stats(telemetry: Path) -> tuple[float, float]:
    """(fraction of steps whose task gradients conflicted, mean gradient cosine); nan for one task."""
    if not Path(telemetry).exists():  # a reference row: no pretraining
        return float("nan"), float("nan")
    rows = [r for r in read_csv(telemetry, ("conflict", "grad_cos")) if r["grad_cos"] != ""]
    if not rows:
        return float("nan"), float("nan")
    return float(np.mean([int(r["conflict"]) for r in rows])), float(
        np.mean([float(r["grad_cos"]) for r in rows])
    )


def make_data(
    cfg: SweepConfig, out: Path, wr: float, seed: int, cells_root: Path | None, spec: BagSpec | None
) -> Path:
    data = out / "data" / f"wr{wr:g}_seed{seed}"
    if cells_root is None:
        generate(replace(cfg.synth, witness_rate=wr, seed=seed), data)
    elif not (data / "labels.csv").exists():
        make_bags(cells_root, replace(spec or BagSpec(), witness_rate=wr, seed=seed), data)
    return data


def run_mil(cfg: SweepConfig, seed: int) -> MilConfig:
    """The MIL settings of one run: the sweep's, with the run's seed."""
    return replace(cfg.mil, seed=seed)


def finished(cfg: SweepConfig, run: Path, seed: int) -> dict | None:
    """The run's summary if it was evaluated after MIL with exactly its settings, else None:
    a sweep resumed with other MIL settings retrains MIL (pretraining and embeddings are kept)."""
    summary, settings = run / "eval" / "summary.json", run / "eval" / MIL_SETTINGS
    if (
        summary.exists()
        and settings.exists()
        and json.loads(settings.read_text()) == asdict(run_mil(cfg, seed))
    ):
        return json.loads(summary.read_text())
    return None


def mil_and_evaluate(cfg: SweepConfig, seed: int, emb: Path, data: Path, run: Path) -> dict:
    """train mil -> evaluate on the held-out bags; records the MIL settings beside the summary."""
    mil = run_mil(cfg, seed)
    summary = evaluate(train_mil(mil, emb, data / "labels.csv", run), emb, data, run / "eval")
    write_atomic(run / "eval" / MIL_SETTINGS, json.dumps(asdict(mil), indent=2) + "\n")
    return summary


def run_one(cfg: SweepConfig, data: Path, run: Path, method: str, seed: int) -> dict:
    """pretrain -> embed -> MIL -> evaluate for one method on one data set (resumable)."""
    if (summary := finished(cfg, run, seed)) is not None:
        return summary
    pcfg = replace(cfg.pretrain, method=method, seed=seed)
    ckpt = pretrain(pcfg, data, run, resume=True)
    emb = run / "embeddings"
    embed_bags(ckpt, data, emb, features=cfg.features, batch_size=cfg.embed_batch, num_workers=0)
    return mil_and_evaluate(cfg, seed, emb, data, run)


def run_reference(cfg: SweepConfig, data: Path, run: Path, reference: str, seed: int) -> dict:
    """A reference row on one data set (resumable): the cell classifier's encoder, or MIL and
    evaluation on oracle embeddings or on a frozen foundation encoder's."""
    from slamctl.training.oracle import oracle_embeddings

    if reference == "cell-supervised":
        return run_one(cfg, data, run, reference, seed)
    if (summary := finished(cfg, run, seed)) is not None:
        return summary
    if reference == cfg.foundation:  # frozen: no pretraining, its own transform
        emb = run / "embeddings"
        embed_bags(
            reference,
            data,
            emb,
            weights=Path(cfg.foundation_weights),
            features=FOUNDATION_FEATURES[0],
            batch_size=cfg.embed_batch,
            num_workers=0,
        )
    elif reference == "oracle":
        emb = oracle_embeddings(data, run / "embeddings", seed=seed)
    else:
        raise SlamError(f"reference {reference!r}: expected oracle, cell-supervised or a foundation encoder")
    return mil_and_evaluate(cfg, seed, emb, data, run)


def run_sweep(
    cfg: SweepConfig,
    out: Path,
    *,
    cells_root: Path | None = None,
    bag_spec: BagSpec | None = None,
    on_run: Callable[[int, int, str], None] | None = None,
) -> list[dict]:
    """Run every (method, witness rate, seed); write the tables and the plot; return the rows."""
    out = Path(out)
    if cfg.foundation:  # a wrong weights file fails now, not after hours of pretraining
        from slamctl.training.foundation import load_foundation

        load_foundation(cfg.foundation, Path(cfg.foundation_weights or ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    total = len(cfg.rows) * len(cfg.witness_rates) * len(cfg.seeds)
    rows, done = [], 0
    for wr in cfg.witness_rates:
        for seed in cfg.seeds:
            data = make_data(cfg, out, wr, seed, cells_root, bag_spec)
            for method in cfg.rows:
                run = run_dir(out, method, wr, seed)
                if method in cfg.references or method == cfg.foundation:
                    s = run_reference(cfg, data, run, method, seed)
                else:
                    s = run_one(cfg, data, run, method, seed)
                frac, cos = conflict_stats(run / "telemetry.csv")
                rows.append(
                    {
                        "method": method,
                        "witness_rate": wr,
                        "seed": seed,
                        "f1": s["f1"],
                        "auc": s["auc"],
                        "top_k_fraction": s["top_k_fraction_mean"],
                        "probe_auc": s.get("probe_auc"),
                        "ceiling_auc": s.get("ceiling_auc"),
                        "conflict_fraction": frac,
                        "mean_grad_cos": cos,
                    }
                )
                done += 1
                if on_run:
                    on_run(done, total, f"{method} wr={wr:g} seed={seed}")
    write_tables(rows, cfg, out)
    write_intervals(cfg, out)
    plot(rows, cfg, out)
    return rows
