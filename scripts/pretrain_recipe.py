"""The CPU pretraining recipe: encoder probe AUC of the tiny preset against epochs, width,
image size and learning rate, on default-difficulty synthetic data (docs/results/pretrain-recipe).

Each row pretrains SLAM-AGS from the tiny preset with one setting changed, embeds every cell
with h and with z, and scores both with the encoder probe (training/probe.py: bag-wise
cross-validated logistic regression on the per-cell truth). Resumable: finished rows are
read back from OUT/results.csv. Run: .venv/bin/python scripts/pretrain_recipe.py OUT
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from slamctl.training.bagset import read_cell_truth, read_labels
from slamctl.training.embed import embed_bags, load_embedded
from slamctl.training.pretrain import pretrain
from slamctl.training.pretrain_config import PRESETS
from slamctl.training.probe import probe_auc
from slamctl.training.synthetic import SynthConfig, generate

DATA = {"bags": 60, "cells_per_bag": 80, "witness_rate": 0.1}  # difficulty: the default 0.6
ROWS = {  # name -> (image size, overrides of the tiny preset); max_steps 1 = about a random init
    "1 step (about random init)": (72, {"epochs": 1}, 1),
    "tiny preset (3 epochs, width 16, 72 px, lr 1e-3)": (72, {}, None),
    "6 epochs": (72, {"epochs": 6}, None),
    "12 epochs": (72, {"epochs": 12}, None),
    "lr 1e-2": (72, {"lr": 0.01}, None),
    "lr 5e-2": (72, {"lr": 0.05}, None),
    "6 epochs, lr 5e-2": (72, {"epochs": 6, "lr": 0.05}, None),
    "width 8": (72, {"width": 8}, None),
    "width 32": (72, {"width": 32}, None),
    "48 px, crop 40": (48, {"image_size": 48, "crop_size": 40}, None),
    "48 px, crop 40, width 8 (the demo)": (48, {"image_size": 48, "crop_size": 40, "width": 8}, None),
}
COLUMNS = ["setting", "probe_auc_h", "probe_auc_z", "pretrain_s"]


def probe(emb: Path, bags: Path) -> float:
    truth, labels = read_cell_truth(bags), read_labels(bags)
    feats, cells = [], []
    for bag_id in sorted(labels):
        b = load_embedded(emb / f"{bag_id}.npz")
        feats.append(b.features)
        cells.append(np.array([truth[(bag_id, n)] for n in b.names]))
    return probe_auc(feats, cells)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "results.csv"
    done = {r["setting"]: r for r in csv.DictReader(open(table))} if table.exists() else {}
    for name, (size, overrides, max_steps) in ROWS.items():
        if name in done:
            continue
        bags = out / f"bags_{size}"
        generate(SynthConfig(**DATA, image_size=size), bags)
        run = out / f"run_{len(done)}"
        t0 = time.perf_counter()
        ckpt = pretrain(replace(PRESETS["tiny"], **overrides), bags, run, max_steps=max_steps)
        seconds = time.perf_counter() - t0
        aucs = {}
        for features in ("h", "z"):
            embed_bags(ckpt, bags, run / f"emb_{features}", features=features)
            aucs[features] = probe(run / f"emb_{features}", bags)
        done[name] = {
            "setting": name,
            "probe_auc_h": f"{aucs['h']:.3f}",
            "probe_auc_z": f"{aucs['z']:.3f}",
            "pretrain_s": f"{seconds:.0f}",
        }
        with open(table, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(done[n] for n in ROWS if n in done)
        print(" | ".join(done[name].values()), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/pretrain-recipe"))
