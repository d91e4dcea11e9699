"""A folder of bags: `BAGS/<bag_id>/<image>`, `labels.csv`, and the optional `split.csv`
and `cells.csv`.

Everything here is checked where it enters, and every error names the file at fault.
`cells.csv` (per-cell truth) is read by evaluation only; nothing in this module that
training uses touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slamctl.errors import SlamError
from slamctl.images import IMAGE_SUFFIXES
from slamctl.tables import parse_label, read_csv, read_truth_file

LABELS_FILE = "labels.csv"
SPLIT_FILE = "split.csv"
CELLS_FILE = "cells.csv"


@dataclass(frozen=True)
class Bag:
    bag_id: str
    label: int  # 0 = normal, 1 = abnormal
    files: tuple[Path, ...]  # readable-looking cell images, sorted by name
    skipped: int = 0  # zero-byte files left out


def check_bag_id(bag_id: str, path: Path, line: int) -> str:
    """A bag id is a folder's name: never a path that leads elsewhere (../x, /abs/x, a/b)."""
    if bag_id in ("", ".", "..") or any(c in bag_id for c in "/\\\0"):
        raise SlamError(f"{path}:{line}: bag_id must be a folder name, got {bag_id!r}")
    return bag_id


def unique_rows(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a table keyed by bag_id; a bag id named twice is an error naming both lines."""
    seen: dict[str, int] = {}
    rows = []
    for i, r in enumerate(read_csv(path, columns)):
        line = i + 2
        bag_id = check_bag_id(r["bag_id"], path, line)
        if bag_id in seen:
            raise SlamError(f"{path}:{line}: bag {bag_id!r} is named again (first on line {seen[bag_id]})")
        seen[bag_id] = line
        rows.append((line, r))
    return rows


def read_labels_csv(path: Path) -> dict[str, int]:
    """{bag_id: label} of a labels.csv (bag_id,label with label 0 or 1)."""
    return {
        r["bag_id"]: parse_label(r["label"], path, line) for line, r in unique_rows(path, ["bag_id", "label"])
    }


def read_labels(bags_dir: Path) -> dict[str, int]:
    """Bag labels from `labels.csv`, or from the reference naming normal_* / abnormal_*."""
    bags_dir = Path(bags_dir)
    if not bags_dir.is_dir():
        raise SlamError(f"{bags_dir}: bag folder does not exist")
    path = bags_dir / LABELS_FILE
    if path.exists():
        labels = read_labels_csv(path)
    else:
        labels = {}
        for d in sorted(p for p in bags_dir.iterdir() if p.is_dir()):
            if d.name.startswith("abnormal_"):
                labels[d.name] = 1
            elif d.name.startswith("normal_"):
                labels[d.name] = 0
    if not labels:
        raise SlamError(
            f"{path}: no labels (write labels.csv with bag_id,label or name the bag folders "
            "normal_* / abnormal_*)"
        )
    return labels


def read_split(bags_dir: Path) -> dict[str, str] | None:
    """`split.csv` (bag_id,split with split train or test), or None if there is none."""
    path = Path(bags_dir) / SPLIT_FILE
    if not path.exists():
        return None
    split = {}
    for line, r in unique_rows(path, ["bag_id", "split"]):
        if r["split"] not in ("train", "test"):
            raise SlamError(f"{path}:{line}: split must be train or test, got {r['split']!r}")
        split[r["bag_id"]] = r["split"]
    return split


def list_images(folder: Path) -> tuple[list[Path], int]:
    """Image files of a folder sorted by name, and how many zero-byte ones were left out."""
    files, skipped = [], 0
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        if p.stat().st_size == 0:
            skipped += 1
            continue
        files.append(p)
    return files, skipped


def load_bags(bags_dir: Path, split: str | None = None) -> list[Bag]:
    """The labelled bags of `bags_dir`, optionally only those of one split (train/test).

    With `split` given and no split.csv, every bag is taken. Raises SlamError naming the
    path for a missing or empty bag folder and for labels that name absent bags.
    """
    bags_dir = Path(bags_dir)
    labels = read_labels(bags_dir)
    splits = read_split(bags_dir)
    bags = []
    for bag_id, label in sorted(labels.items()):
        if split is not None and splits is not None:
            if bag_id not in splits:
                raise SlamError(f"{bags_dir / SPLIT_FILE}: bag {bag_id!r} has no split")
            if splits[bag_id] != split:
                continue
        folder = bags_dir / bag_id
        if not folder.is_dir():
            raise SlamError(f"{folder}: bag named in {LABELS_FILE} has no folder")
        files, skipped = list_images(folder)
        if not files:
            raise SlamError(f"{folder}: bag holds no readable image ({skipped} zero-byte)")
        bags.append(Bag(bag_id, label, tuple(files), skipped))
    if not bags:
        raise SlamError(f"{bags_dir}: no bags in split {split!r}")
    return bags


def read_cell_truth(bags_dir: Path) -> dict[tuple[str, str], int]:
    """Per-cell truth {(bag_id, file name): 0/1} from BAGS/cells.csv, for evaluation only."""
    path = Path(bags_dir) / CELLS_FILE
    if not path.exists():
        raise SlamError(f"{path}: missing (per-cell truth is needed for retrieval metrics)")
    return read_truth_file(path)


def assign_splits(
    labels: list[int], test_fraction: float, seed: int, *, at_least_one: bool = False
) -> list[str]:
    """'train' or 'test' per bag: a seeded split by bag, stratified by label.

    With at_least_one, every label with two or more bags puts at least one in 'test'.
    """
    import numpy as np  # local: the rest of this module is pure standard library

    rng = np.random.default_rng([seed, 7])
    splits = ["train"] * len(labels)
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        n_test = int(round(len(idx) * test_fraction))
        if at_least_one and len(idx) >= 2:
            n_test = min(max(1, n_test), len(idx) - 1)
        for i in rng.permutation(idx)[:n_test]:
            splits[int(i)] = "test"
    return splits
