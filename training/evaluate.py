"""Evaluating a trained MIL run on held-out bags: bag metrics and Top-K cell retrieval.

Writes, under OUT: `bags.csv` (bag, label, probability, prediction, cells, positives,
top-K found, fraction), `cells.csv` (bag, cell, attention, rank, truth) and
`summary.json` (bag F1, AUC, precision, recall, accuracy at the threshold chosen on
validation bags in `train mil`, mean Top-K retrieval, the model's health and, where
`cells.csv` gives cell truth, the encoder probe's cell AUC over every embedded bag and the
instance-truth ceiling: the bag AUC and top-K of a cell classifier trained on the train bags'
true cell labels, which no aggregator trained on bag labels should clearly beat).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.files import write_atomic
from slamctl.tables import write_csv
from slamctl.training.bagset import LABELS_FILE, read_cell_truth, read_split
from slamctl.training.ceiling import ceiling_scores
from slamctl.training.embed import EmbeddedBag
from slamctl.training.health import model_health
from slamctl.training.metrics import binary_metrics, default_top_k, roc_auc, top_k_retrieval
from slamctl.training.mil import load_mil, load_split_bags, predict, stored_threshold
from slamctl.training.probe import probe_auc


def _cell_probe(bags: list[EmbeddedBag], truth: dict[tuple[str, str], int]) -> float | None:
    labels = [np.array([truth.get((b.bag_id, n), 0) for n in b.names]) for b in bags]
    return probe_auc([b.features for b in bags], labels)


def _ceiling(
    emb_dir: Path,
    bags_dir: Path,
    truth: dict,
    test: list[EmbeddedBag],
    ys: list[int],
    top_k: int | None,
    standardised: bool,
) -> dict:
    """The instance-truth ceiling on the same embeddings (training/ceiling.py): its bag AUC and
    top-K retrieval on the test bags, trained on the train bags' cell truth; empty without a
    train split or without cell truth of both kinds among its cells."""
    if not truth or read_split(bags_dir) is None:
        return {}
    train, _, _ = load_split_bags(emb_dir, Path(bags_dir) / LABELS_FILE, "train")
    train_truth = [np.array([truth.get((b.bag_id, n), 0) for n in b.names]) for b in train]
    if len({int(t) for cells in train_truth for t in cells}) < 2:
        return {}
    scores, cells = ceiling_scores(
        [b.features for b in train], train_truth, [b.features for b in test], standardised=standardised
    )
    fracs = [
        top_k_retrieval(
            c, np.array([truth.get((b.bag_id, n), 0) for n in b.names], bool), top_k or default_top_k(len(c))
        )[1]
        for b, y, c in zip(test, ys, cells)
        if y == 1
    ]
    return {
        "ceiling_auc": roc_auc(np.array(ys), scores),
        "ceiling_top_k_fraction_mean": float(np.mean(fracs)),
    }


def score_bags(bags, ys, probs, attention, truth: dict, top_k: int | None, threshold: float):
    """Per bag its row of bags.csv and its cells' rows of cells.csv (attention, rank, truth),
    and the top-K retrieval over the abnormal bags (found, fraction, a random ranking's)."""
    bag_rows, cell_rows, found_fracs, found_counts, chance = [], [], [], [], []
    for bag, y, p, att in zip(bags, ys, probs, attention):
        positive = np.array([truth.get((bag.bag_id, n), 0) for n in bag.names], dtype=bool)
        k = top_k or default_top_k(len(bag.names))
        found, frac = top_k_retrieval(att, positive, k) if y == 1 else (0, float("nan"))
        if y == 1:
            found_counts.append(found)
            found_fracs.append(frac)
            chance.append(min(k, len(bag.names)) / len(bag.names))  # a random ranking's expected fraction
        bag_rows.append(
            (
                bag.bag_id,
                y,
                f"{p:.6f}",
                int(p >= threshold),
                len(bag.names),
                int(positive.sum()),
                k,
                found if y else "",
                f"{frac:.4f}" if y else "",
            )
        )
        ranks = np.empty(len(att), dtype=int)
        ranks[np.argsort(-att, kind="stable")] = np.arange(1, len(att) + 1)
        cell_rows += [
            (bag.bag_id, n, f"{a:.6g}", r, int(t)) for n, a, r, t in zip(bag.names, att, ranks, positive)
        ]
    retrieval = {
        "top_k_found_mean": float(np.mean(found_counts)) if found_counts else None,
        "top_k_fraction_mean": float(np.nanmean(found_fracs)) if found_fracs else None,
        "top_k_chance_mean": float(np.mean(chance)) if chance else None,
    }
    return bag_rows, cell_rows, retrieval


def evaluate(
    mil_path: Path,
    emb_dir: Path,
    bags_dir: Path,
    out: Path,
    *,
    split: str | None = "test",
    top_k: int | None = None,
    threshold: float | None = None,
) -> dict:
    """Evaluate on the `split` bags (all bags if there is no split.csv); returns the summary.

    threshold: None uses the one `train mil` chose on validation bags."""
    model, ckpt = load_mil(mil_path)
    if split is not None and read_split(bags_dir) is None:
        raise SlamError(
            f"{Path(bags_dir) / 'split.csv'}: missing, so no bag is known to be held out ({split} asked); "
            "pass --split all to evaluate every bag (the figures then include the training bags)"
        )
    if threshold is None:
        threshold, rule = stored_threshold(ckpt)
    else:
        rule = "given (--threshold)"
    bags, ys, meta = load_split_bags(emb_dir, Path(bags_dir) / LABELS_FILE, split)
    if meta["dim"] != ckpt["in_dim"]:
        raise SlamError(
            f"{emb_dir}: embeddings of dimension {meta['dim']}, the MIL model expects {ckpt['in_dim']}"
        )
    truth = read_cell_truth(bags_dir)
    probs, attention = predict(model, bags)

    bag_rows, cell_rows, retrieval = score_bags(bags, ys, probs, attention, truth, top_k, threshold)

    metrics = binary_metrics(np.array(ys), probs, threshold)
    health = model_health(probs, attention)
    probe = (
        _cell_probe(load_split_bags(emb_dir, Path(bags_dir) / LABELS_FILE, None)[0], truth) if truth else None
    )
    summary = {
        "bags": len(bags),
        "abnormal_bags": int(sum(ys)),
        "threshold": threshold,
        "threshold_rule": rule,
        **metrics,
        "top_k": top_k or "0.4 x bag size",
        **retrieval,
        "aggregator": ckpt["config"]["aggregator"],
        "features": meta["features"],
        "encoder_method": meta["method"],
        "split": split,
        "probe_auc": probe,
        **_ceiling(emb_dir, Path(bags_dir), truth, bags, ys, top_k, ckpt["config"]["standardise"]),
        "degenerate": health.degenerate,
        "health": health.as_dict(),
        "training_health": ckpt.get("health"),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "bags.csv",
        [
            "bag_id",
            "label",
            "prob_abnormal",
            "prediction",
            "cells",
            "positives",
            "k",
            "top_k_found",
            "top_k_fraction",
        ],
        bag_rows,
    )
    write_csv(out / "cells.csv", ["bag_id", "cell", "attention", "rank", "truth"], cell_rows)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
