"""The MIL positive controls with slide effects, one training change at a time.

For each variant of `train mil`'s settings, each witness rate and each seed: an oracle set
(training/oracle.py: 80 bags of 300 cells, per-bag offset, scale and cell-type mix), MIL
training on its train bags (validation inside), bag AUC and top-K retrieval on its held-out
bags; beside them the instance-truth ceiling (training/ceiling.py) and the cell probe. Every
run is one JSON file under OUT, so a stopped run resumes. Prints a Markdown table: mean and
worst over seeds.

    .venv/bin/python scripts/mil_controls.py --out runs/mil-controls
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from slamctl.training.bagset import read_cell_truth
from slamctl.training.ceiling import ceiling_scores
from slamctl.training.metrics import default_top_k, roc_auc, top_k_retrieval
from slamctl.training.mil import load_mil, load_split_bags, predict, train_mil
from slamctl.training.mil_config import MilConfig
from slamctl.training.oracle import OracleConfig, write_oracle
from slamctl.training.probe import probe_auc

CURRICULUM = "10%"  # init_from marker: start from the same settings trained on the seed's 10% oracle
PREVIOUS = MilConfig(standardise=False, instance_loss="none", restarts=1)  # the defaults before
STD = replace(PREVIOUS, standardise=True)
NEG = replace(STD, instance_loss="negatives")
# (aggregator, what changed, settings): one change at a time from the previous defaults
ROWS = [
    ("pamil", "previous defaults", PREVIOUS),
    ("pamil", "+ standardise", STD),
    ("pamil", "+ standardise, reference instance loss", replace(STD, instance_loss="reference")),
    ("pamil", "+ standardise, proto pred", replace(STD, proto_pred=True)),
    ("pamil", "+ standardise, negatives loss", NEG),
    ("pamil", "+ standardise, negatives loss, 3 restarts", replace(NEG, restarts=3)),
    ("abmil", "previous defaults", PREVIOUS),
    ("abmil", "+ standardise", STD),
    ("abmil", "+ standardise, reference instance loss", replace(STD, instance_loss="reference")),
    ("abmil", "+ standardise, negatives loss", NEG),
    ("maxmil", "no standardise, no instance loss", PREVIOUS),
    ("maxmil", "+ standardise", STD),
    ("maxmil", "+ standardise, negatives loss", NEG),
    ("maxmil", "+ standardise, negatives loss, 5 restarts", replace(NEG, restarts=5)),
    ("maxmil", "+ standardise, 5 restarts (the new default)", MilConfig()),
    ("maxmil", "default without standardise", replace(MilConfig(), standardise=False)),
    ("maxmil", "default, 4-fold ensemble (--folds 4)", replace(MilConfig(), folds=4)),
    ("maxmil", "default, bag augmentation (--subsample 0.5)", replace(MilConfig(), subsample=0.5)),
    ("pamil", "+ standardise, bag augmentation (--subsample 0.5)", replace(STD, subsample=0.5)),
    ("pamil", "+ standardise, curriculum from 10%", replace(STD, init_from=CURRICULUM)),
    ("maxmil", "default, curriculum from 10%", replace(MilConfig(), init_from=CURRICULUM)),
    ("maxmil", "default, top-1% pooling (--top-fraction 0.01)", replace(MilConfig(), top_fraction=0.01)),
    (
        "maxmil",
        "default, top-1% pooling, 5-fold ensemble",
        replace(MilConfig(), top_fraction=0.01, folds=5),
    ),
]


def labelled(folder: Path, split: str):
    bags, ys, _ = load_split_bags(folder, folder / "labels.csv", split)
    truth = read_cell_truth(folder)
    cells = [np.array([truth[(b.bag_id, n)] for n in b.names], dtype=bool) for b in bags]
    return bags, np.array(ys), cells


def scores(ys, probs, attention, cells) -> dict:
    fracs = [top_k_retrieval(a, c, default_top_k(len(a)))[1] for y, a, c in zip(ys, attention, cells) if y]
    return {"auc": roc_auc(ys, probs), "top_k": float(np.mean(fracs))}


def run_one(out: Path, name: str, aggregator: str, cfg: MilConfig, oracle: OracleConfig) -> dict:
    slug = name.split(" (")[0].replace(" ", "_")
    path = out / f"{slug}-{aggregator}-wr{oracle.witness_rate}-seed{oracle.seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    folder = write_oracle(oracle, out / "data" / f"wr{oracle.witness_rate}-seed{oracle.seed}")
    run = out / "runs" / path.stem
    if cfg.init_from == CURRICULUM:  # the reference's --resume_path: a model of a higher witness rate
        start = replace(oracle, witness_rate=0.1)
        source = write_oracle(start, out / "data" / f"wr{start.witness_rate}-seed{start.seed}")
        first = replace(cfg, aggregator=aggregator, seed=oracle.seed, init_from=None)
        cfg = replace(cfg, init_from=str(train_mil(first, source, source / "labels.csv", run / "start")))
    train_mil(replace(cfg, aggregator=aggregator, seed=oracle.seed), folder, folder / "labels.csv", run)
    model, _ = load_mil(run / "mil.pt")
    bags, ys, cells = labelled(folder, "test")
    probs, attention = predict(model, bags)
    result = {
        "variant": name,
        "aggregator": aggregator,
        **asdict(oracle),
        **scores(ys, probs, attention, cells),
    }
    path.write_text(json.dumps(result) + "\n")
    return result


def reference_rows(out: Path, oracle: OracleConfig) -> dict:
    path = out / f"reference-wr{oracle.witness_rate}-seed{oracle.seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    folder = write_oracle(oracle, out / "data" / f"wr{oracle.witness_rate}-seed{oracle.seed}")
    train, test = labelled(folder, "train"), labelled(folder, "test")
    bag_scores, cell_scores = ceiling_scores(
        [b.features for b in train[0]], train[2], [b.features for b in test[0]]
    )
    every = labelled(folder, None)
    result = {
        **asdict(oracle),
        **{f"ceiling_{k}": v for k, v in scores(test[1], bag_scores, cell_scores, test[2]).items()},
        "probe_auc": probe_auc([b.features for b in every[0]], every[2]),
    }
    path.write_text(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--witness-rates", type=float, nargs="+", default=[0.01, 0.005])
    parser.add_argument("--aggregators", nargs="+", default=["pamil", "abmil", "maxmil"])
    parser.add_argument(
        "--settings", nargs="+", choices=sorted({name for _, name, _ in ROWS}), help="rows (default: all)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| aggregator | setting | witness rate | bag AUC mean | worst | top-K mean | worst |")
    print("|---|---|---|---|---|---|---|")
    for wr in args.witness_rates:
        oracles = [OracleConfig(witness_rate=wr, seed=s) for s in range(args.seeds)]
        refs = [reference_rows(args.out, o) for o in oracles]
        auc, top = [r["ceiling_auc"] for r in refs], [r["ceiling_top_k"] for r in refs]
        probe = np.mean([r["probe_auc"] for r in refs])
        print(
            f"| instance truth (ceiling) | cell probe AUC {probe:.3f} | {wr:g} | {np.mean(auc):.3f} | "
            f"{min(auc):.3f} | {np.mean(top):.3f} | {min(top):.3f} |",
            flush=True,
        )
        for aggregator, name, cfg in ROWS:
            if aggregator not in args.aggregators or (args.settings and name not in args.settings):
                continue
            rows = [run_one(args.out, name, aggregator, cfg, o) for o in oracles]
            auc, top = [r["auc"] for r in rows], [r["top_k"] for r in rows]
            print(
                f"| {aggregator} | {name} | {wr:g} | {np.mean(auc):.3f} | {min(auc):.3f} | "
                f"{np.mean(top):.3f} | {min(top):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
