"""MIL settings on a finished sweep's embeddings: each MIL row beside its instance-truth ceiling.

For every run of `experiment wr-sweep --out SWEEP` at --witness-rate (each method, each
seed: the same bags and embeddings the study used), `train mil` with each variant's settings
and `evaluate` on the held-out bags, which reports the bag AUC and the instance-truth ceiling
(training/ceiling.py) on the same embeddings. Pretraining and embedding are not redone. One
JSON file per (variant, method, seed) under OUT, so a stopped run resumes. Prints a Markdown
table: per variant and method, the mean bag AUC and ceiling over seeds and their gap.

    .venv/bin/python scripts/mil_on_sweep.py --sweep runs/wr-sweep-cpu --out runs/mil-on-sweep
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from slamctl.files import write_atomic
from slamctl.training.evaluate import evaluate
from slamctl.training.experiment_config import PRESETS
from slamctl.training.mil import train_mil
from slamctl.training.mil_config import MilConfig
from slamctl.training.sweep_results import run_dir

PRESET = PRESETS["cpu"].mil  # no standardisation, 5 restarts, top-1% pooling, 5-fold ensemble
BEFORE = replace(PRESET, top_fraction=0.0, folds=1)  # the preset before top-1% pooling and folds
VARIANTS: dict[str, MilConfig] = {
    "max pooling, one model (5 restarts)": BEFORE,
    "+ 5-fold ensemble": replace(BEFORE, folds=5),
    "+ negatives loss": replace(BEFORE, instance_loss="negatives"),
    "+ standardise": replace(BEFORE, standardise=True),
    "+ top-1% pooling": replace(BEFORE, top_fraction=0.01),
    "+ top-1% pooling, 5-fold ensemble (the cpu preset)": PRESET,
    "+ 5-fold ensemble, 1 start per fold": replace(BEFORE, folds=5, restarts=1),
    "+ top-1% pooling, 5-fold ensemble, 1 start per fold": replace(PRESET, restarts=1),
    "the cpu preset + negatives loss": replace(PRESET, instance_loss="negatives"),
}


def run_one(sweep: Path, out: Path, variant: str, cfg: MilConfig, method: str, wr: float, seed: int) -> dict:
    slug = variant.split(" (")[0].replace(" ", "_").replace("+", "").strip("_")
    path = out / f"{slug}-{method}-wr{wr:g}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    run = run_dir(sweep, method, wr, seed)
    data = sweep / "data" / f"wr{wr:g}_seed{seed}"
    work = out / "runs" / path.stem
    mil = train_mil(replace(cfg, seed=seed), run / "embeddings", data / "labels.csv", work)
    s = evaluate(mil, run / "embeddings", data, work / "eval")
    result = {"variant": variant, "method": method, "witness_rate": wr, "seed": seed}
    result |= {k: s[k] for k in ("auc", "ceiling_auc", "top_k_fraction_mean", "probe_auc")}
    write_atomic(path, json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sweep", type=Path, required=True, help="a finished wr-sweep's --out")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--witness-rate", type=float, default=0.01)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", help="rows of the sweep (default: every one)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the sweep's")
    args = parser.parse_args()
    sweep_cfg = json.loads((args.sweep / "sweep.json").read_text())
    methods = args.methods or sweep_cfg["methods"] + sweep_cfg["references"]
    args.out.mkdir(parents=True, exist_ok=True)
    print("| MIL settings | row | bag AUC | ceiling | gap | worst seed's gap | top-K |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        for method in methods:
            rows = [
                run_one(args.sweep, args.out, variant, VARIANTS[variant], method, args.witness_rate, s)
                for s in args.seeds or sweep_cfg["seeds"]
            ]
            auc, ceiling = np.array([r["auc"] for r in rows]), np.array([r["ceiling_auc"] for r in rows])
            top = np.mean([r["top_k_fraction_mean"] for r in rows])
            print(
                f"| {variant} | {method} | {auc.mean():.3f} | {ceiling.mean():.3f} | "
                f"{auc.mean() - ceiling.mean():+.3f} | {(auc - ceiling).min():+.3f} | {top:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
