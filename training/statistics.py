"""How sure the witness-rate sweep's figures are: bootstrap intervals over bags, and paired
differences between methods on the same data. Pure functions of arrays.

A sweep point (method, witness rate) has one test set per seed, each scored by that seed's
model. Its figure is the mean over seeds of a per-seed statistic (bag AUC, say); its
interval comes from resampling the bags of every seed with replacement, recomputing the
mean, and taking percentiles. For a paired difference (SLAM-AGS minus a baseline) the same
resampled bags score both methods, so what the two share (the data set) cancels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

BOOTSTRAP_REPLICATES = 1000
LEVEL = 0.95


def bootstrap(
    groups: Sequence[Sequence[np.ndarray]],
    statistic: Callable[..., float],
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): the mean over `groups` of `statistic(*group)`, and its
    percentile bootstrap interval at `level`.

    Each group is a few arrays over the same rows (bags), e.g. (labels, scores) or (labels,
    scores of A, scores of B); a replicate draws the rows of every group with replacement,
    the same rows for all arrays of a group. Replicates whose statistic is undefined (NaN:
    an AUC on bags of one class) are left out."""
    groups = [[np.asarray(a) for a in g] for g in groups]
    if not groups or any(len(g[0]) == 0 for g in groups):
        raise ValueError("bootstrap: every group needs at least one row")
    known = [v for v in (statistic(*g) for g in groups) if not math.isnan(v)]
    estimate = float(np.mean(known)) if known else float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(replicates):
        per_group = []
        for g in groups:
            rows = rng.integers(0, len(g[0]), len(g[0]))
            per_group.append(statistic(*(a[rows] for a in g)))
        value = float(np.mean(per_group))
        if not math.isnan(value):
            values.append(value)
    if not values:
        return estimate, float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return estimate, float(low), float(high)


def paired_differences(a: dict, b: dict) -> dict:
    """a[k] - b[k] for every key both hold (a key is a data set: witness rate and seed)."""
    return {k: a[k] - b[k] for k in sorted(a.keys() & b.keys())}
