"""Slide-positive and slide-negative cell pools for pretraining, and their batches.

Slide-positive cells are every cell of every positive training bag, slide-negative cells
every cell of every negative training bag; files are read in place, never
copied. An epoch is a fresh permutation of each pool cut into consecutive, disjoint
batches: every cell is seen once per epoch, and each batch takes from both pools in
proportion to their sizes (unlike the reference code, whose consecutive batches overlap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from slamctl.errors import SlamError
from slamctl.images import fit_square, load_rgb
from slamctl.training.bagset import Bag


@dataclass(frozen=True)
class CellPools:
    positive: tuple[Path, ...]  # cells of slide-positive bags
    negative: tuple[Path, ...]  # cells of slide-negative bags

    @classmethod
    def from_bags(cls, bags: list[Bag], where: Path) -> CellPools:
        pos = tuple(f for b in bags if b.label == 1 for f in b.files)
        neg = tuple(f for b in bags if b.label == 0 for f in b.files)
        if not pos:
            raise SlamError(f"{where}: no positive (label 1) training bag")
        if not neg:
            raise SlamError(f"{where}: no negative (label 0) training bag")
        return cls(pos, neg)

    @classmethod
    def from_cell_truth(cls, bags: list[Bag], truth: dict[tuple[str, str], int], where: Path) -> CellPools:
        """Truly abnormal cells against all others (cells.csv): the cell classifier's pools."""
        cells = [(f, truth.get((b.bag_id, f.name), 0)) for b in bags for f in b.files]
        pos = tuple(f for f, t in cells if t)
        neg = tuple(f for f, t in cells if not t)
        if not pos or not neg:
            raise SlamError(
                f"{where}: cells.csv needs abnormal and normal training cells for cell-supervised"
            )
        return cls(pos, neg)

    def subset(self, max_cells: int, seed: int) -> CellPools:
        """At most `max_cells` cells, drawn without replacement, seeded: the smaller pool whole
        (up to half of them: the cell classifier's rare abnormal cells are all kept), the
        larger pool cut to the rest; the pools themselves when they fit."""
        if max_cells <= 0 or len(self.positive) + len(self.negative) <= max_cells:
            return self
        rng = np.random.default_rng([seed, max_cells])
        small = min(len(self.positive), len(self.negative), max(1, max_cells // 2))
        large = max(1, max_cells - small)
        n_pos, n_neg = (small, large) if len(self.positive) <= len(self.negative) else (large, small)

        def draw(pool: tuple[Path, ...], n: int) -> tuple[Path, ...]:
            return tuple(pool[i] for i in np.sort(rng.choice(len(pool), n, replace=False)))

        return CellPools(draw(self.positive, n_pos), draw(self.negative, n_neg))


def epoch_batches(
    n_pos: int, n_neg: int, batch_size: int, *, seed: int, epoch: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index batches (positive indices, negative indices) for one epoch.

    Both pools are permuted (seeded by seed and epoch, so a resumed run draws the same
    batches) and split into the same number of near-equal chunks: disjoint, covering
    every index once, each batch's split proportional to the pool sizes.
    """
    if n_pos < 1 or n_neg < 1 or batch_size < 2:
        raise ValueError(f"need both pools non-empty and batch >= 2, got {n_pos}, {n_neg}, {batch_size}")
    rng = np.random.default_rng([seed, epoch])
    # at least one cell of each pool per batch, so both losses are defined in every step
    n_batches = min(math.ceil((n_pos + n_neg) / batch_size), n_pos, n_neg)
    pos = np.array_split(rng.permutation(n_pos), n_batches)
    neg = np.array_split(rng.permutation(n_neg), n_batches)
    return list(zip(pos, neg))


class BatchImages(Dataset):
    """Loads the images of pre-drawn index batches: item k -> (pos uint8, neg uint8, skipped).

    Images are decoded with PIL to (image_size, image_size, 3) uint8; augmentation happens
    later, batched on the training device. Unreadable files are skipped and counted.
    """

    def __init__(self, pools: CellPools, batches: list[tuple[np.ndarray, np.ndarray]], image_size: int):
        self.pools, self.batches, self.image_size = pools, batches, image_size

    def __len__(self) -> int:
        return len(self.batches)

    def _load(self, files: tuple[Path, ...], idx: np.ndarray) -> tuple[torch.Tensor, int]:
        images, skipped = [], 0
        for i in idx:
            try:
                images.append(fit_square(load_rgb(files[i]), self.image_size))
            except SlamError:
                skipped += 1
        if not images:
            return torch.empty(0, self.image_size, self.image_size, 3, dtype=torch.uint8), skipped
        return torch.from_numpy(np.stack(images)), skipped

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        pos_idx, neg_idx = self.batches[k]
        pos, s1 = self._load(self.pools.positive, pos_idx)
        neg, s2 = self._load(self.pools.negative, neg_idx)
        return pos, neg, s1 + s2
