"""Bags from a class-folder cell data set (`ROOT/<CLASS>/<image>`), as the reference
`bags_gen.py` makes them, without its defects.

n bags, half normal: a normal bag holds x cells of the negative class, an abnormal bag y
cells of the positive class and x - y of the negative class, y = round(wr * x) >= 1. No cell
is in two bags. Cells are linked (symlinks), not copied, where the filesystem allows.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.tables import write_csv
from slamctl.training.bagset import (
    CELLS_FILE,
    LABELS_FILE,
    SPLIT_FILE,
    assign_splits,
    list_images,
)
from slamctl.training.synthetic import positives_in_bag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagSpec:
    negative_class: str = "LYT"
    positive_class: str = "BLA"
    witness_rate: float = 0.01
    bags: int = 100
    cells_per_bag: int = 1000
    seed: int = 0
    test_fraction: float = 0.25


def _class_pool(root: Path, name: str) -> list[Path]:
    folder = root / name
    if not folder.is_dir():
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else ""
        raise SlamError(f"{folder}: class folder does not exist" + (f" (found: {found})" if found else ""))
    return list_images(folder)[0]


def _link(src: Path, dst: Path) -> bool:
    """Symlink dst -> src; copy where links are not allowed. True if linked."""
    try:
        os.symlink(src.resolve(), dst)
        return True
    except OSError:
        shutil.copyfile(src, dst)
        return False


def make_bags(cells_root: Path, spec: BagSpec, out: Path, *, force: bool = False) -> dict[str, int]:
    """Write the bags; returns counts {bags, cells, positives, copied}."""
    cells_root, out = Path(cells_root), Path(out)
    if not 0 < spec.witness_rate <= 1:
        raise SlamError(f"--witness-rate: expected 0 < rate <= 1, got {spec.witness_rate}")
    if spec.bags < 2 or spec.cells_per_bag < 1:
        raise SlamError(
            f"--bags >= 2 and --cells-per-bag >= 1 expected, got {spec.bags}, {spec.cells_per_bag}"
        )
    if (out / LABELS_FILE).exists() and not force:
        raise SlamError(f"{out}: already holds bags (use --force to overwrite)")
    neg_pool = _class_pool(cells_root, spec.negative_class)
    pos_pool = _class_pool(cells_root, spec.positive_class)

    n_abnormal = spec.bags // 2
    n_normal = spec.bags - n_abnormal
    y = positives_in_bag(spec.cells_per_bag, spec.witness_rate)
    need_neg = n_normal * spec.cells_per_bag + n_abnormal * (spec.cells_per_bag - y)
    need_pos = n_abnormal * y
    for name, need, pool in (
        (spec.negative_class, need_neg, neg_pool),
        (spec.positive_class, need_pos, pos_pool),
    ):
        if need > len(pool):
            raise SlamError(
                f"{cells_root / name}: pool too small, {spec.bags} bags of {spec.cells_per_bag} cells "
                f"need {need} cells of class {name}, found {len(pool)}"
            )

    rng = np.random.default_rng([spec.seed, 3])
    neg_iter = iter(rng.permutation(len(neg_pool)).tolist())
    pos_iter = iter(rng.permutation(len(pos_pool)).tolist())
    labels = [1] * n_abnormal + [0] * n_normal
    splits = assign_splits(labels, spec.test_fraction, spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / LABELS_FILE).unlink(missing_ok=True)
    cell_rows, copied = [], 0
    for i, label in enumerate(labels):
        bag_id = f"bag_{i:04d}"
        folder = out / bag_id
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        n_pos = y if label else 0
        cells = [(pos_pool[next(pos_iter)], 1) for _ in range(n_pos)]
        cells += [(neg_pool[next(neg_iter)], 0) for _ in range(spec.cells_per_bag - n_pos)]
        # shuffled, and named by position only: neither order nor name reveals the class
        for j, k in enumerate(rng.permutation(len(cells)).tolist()):
            src, positive = cells[k]
            name = f"cell_{j:05d}{src.suffix.lower()}"
            copied += not _link(src, folder / name)
            cell_rows.append((bag_id, name, positive, str(src)))
    if copied:
        log.warning("%d cells copied: the filesystem refused symbolic links", copied)
    write_csv(out / CELLS_FILE, ["bag_id", "file", "positive", "source"], cell_rows)
    write_csv(out / SPLIT_FILE, ["bag_id", "split"], [(f"bag_{i:04d}", s) for i, s in enumerate(splits)])
    write_csv(
        out / LABELS_FILE,
        ["bag_id", "label"],
        [(f"bag_{i:04d}", lab) for i, lab in enumerate(labels)],
    )
    return {
        "bags": spec.bags,
        "cells": len(cell_rows),
        "positives": n_abnormal * y,
        "copied": copied,
    }
