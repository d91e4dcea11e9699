"""Bag-level classification metrics and Top-K positive-cell retrieval.

Pure functions of numpy arrays; the positive class is abnormal (label 1).
"""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve, ties counting one half; nan with one class. The
    Mann-Whitney U over midranks: scikit-learn's roc_auc_score to rounding (a test checks it),
    without its input validation, which the bootstrap's 100,000s of calls cannot afford."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def decision_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """F1, precision, recall and accuracy of 0/1 decisions against the labels."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
    }


def binary_metrics(y: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall, accuracy at `threshold`, and AUC, of P(abnormal) per bag."""
    return {**decision_metrics(y, np.asarray(prob) >= threshold), "auc": roc_auc(y, prob)}


def default_top_k(n_cells: int) -> int:
    """The paper's K = 400 for bags of 1000 cells, scaled to the bag size (at least 1)."""
    return max(1, round(0.4 * n_cells))


def top_k_retrieval(attention: np.ndarray, positive: np.ndarray, k: int) -> tuple[int, float]:
    """(positives among the k cells of highest attention, that count / positives in the bag)."""
    positive = np.asarray(positive).astype(bool)
    k = min(k, len(attention))
    top = np.argsort(-np.asarray(attention), kind="stable")[:k]
    found = int(positive[top].sum())
    total = int(positive.sum())
    return found, (found / total if total else float("nan"))
