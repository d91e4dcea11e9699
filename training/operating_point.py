"""The decision threshold on P(abnormal), chosen on validation bags (never on test bags).

Default: the threshold that maximises F1 (positive class = abnormal). With a target
sensitivity S: the highest threshold whose sensitivity on the validation bags is >= S.
Either way the threshold is placed halfway between the validation score it admits and
the next lower one, so that scores equal to a validation score do not sit on the edge.
"""

from __future__ import annotations

import numpy as np

from slamctl.errors import SlamError


def check_target_sensitivity(value: float | None) -> None:
    if value is not None and not 0 < value <= 1:
        raise SlamError(f"--target-sensitivity: expected 0 < S <= 1, got {value}")


def _below(score: float, prob: np.ndarray) -> float:
    """Halfway from `score` to the next lower score in `prob` (to 0 if there is none)."""
    lower = prob[prob < score]
    return float((score + (lower.max() if len(lower) else 0.0)) / 2)


def choose_threshold(y: np.ndarray, prob: np.ndarray, target_sensitivity: float | None = None) -> float:
    """Threshold on P(abnormal) from validation labels `y` (0/1) and probabilities `prob`."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    check_target_sensitivity(target_sensitivity)
    y, prob = np.asarray(y).astype(int), np.asarray(prob, dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise SlamError(
            f"choosing a threshold needs validation bags of both labels, got labels {sorted(set(y))}"
        )
    if target_sensitivity is None:
        precision, recall, thresholds = precision_recall_curve(y, prob)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = np.flatnonzero(f1 == f1.max())[-1]  # ties: the highest threshold
        return _below(float(thresholds[best]), prob)
    _, tpr, thresholds = roc_curve(y, prob, drop_intermediate=False)
    reach = np.flatnonzero(tpr >= target_sensitivity - 1e-12)[0]  # thresholds fall as tpr rises
    return _below(float(min(thresholds[reach], 1.0)), prob)
