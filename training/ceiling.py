"""The encoder's ceiling: what no aggregator can beat on the same embeddings.

An instance classifier trained on the true cell labels of the training bags (logistic
regression on the features as the aggregator sees them: per-bag robustly standardised, or
not, as `train mil --standardise/--no-standardise`); a bag's score is the mean of its k
highest cell scores, k = 1% of its cells (at least one): the abnormal cells a bag holds at
the witness rate the method is for. It is `maxmil.top_mean`, the pooling of `train mil
--top-fraction 0.01`, on float32 scores as the model's: one rule for k. A MIL aggregator
learns from bag labels only, so on the same bags it should come close to this row and never
clearly above it. Evaluation only: cell truth never reaches `train mil`.
"""

from __future__ import annotations

import numpy as np
import torch

from slamctl.training.bag_norm import robust_standardise
from slamctl.training.maxmil import top_mean

WITNESS_RATE = 0.01  # k = this fraction of a bag's cells: 3 of 300, 2 of 200


def bag_score(cells: np.ndarray) -> float:
    """The ceiling's bag score: the mean of its top 1% cell scores, as the model pools them."""
    return float(top_mean(torch.from_numpy(np.asarray(cells, dtype=np.float32)), WITNESS_RATE))


def standardise(x: np.ndarray) -> np.ndarray:
    """The aggregators' first layer (training/bag_norm.py), on one bag's (N, D) features."""
    return robust_standardise(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def ceiling_scores(
    train: list[np.ndarray],
    train_truth: list[np.ndarray],
    test: list[np.ndarray],
    *,
    standardised: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(bag score per test bag, cell scores per test bag) of the instance-truth classifier."""
    from sklearn.linear_model import LogisticRegression

    seen = standardise if standardised else (lambda f: np.asarray(f, dtype=np.float32))
    x = np.concatenate([seen(f) for f in train])
    y = np.concatenate(train_truth).astype(int)
    model = LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, y)
    cells = [model.decision_function(seen(f)) for f in test]
    bags = np.array([bag_score(c) for c in cells])
    return bags, cells
