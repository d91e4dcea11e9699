import math

import numpy as np
import pytest

from slamctl.training.metrics import binary_metrics, default_top_k, roc_auc, top_k_retrieval


def test_f1_hand_made():
    y = np.array([1, 1, 1, 0, 0, 0])
    prob = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3])
    # predictions at 0.5: 1 1 0 1 0 0 -> tp 2, fp 1, fn 1
    m = binary_metrics(y, prob)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    assert binary_metrics(y, np.zeros(6))["f1"] == 0.0


def test_auc_hand_made_with_ties():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_auc_is_scikit_learns():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for n in (5, 41, 300):
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        score = rng.integers(0, 8, n) / 8  # many ties
        assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_top_k_retrieval_hand_made():
    attention = np.array([0.05, 0.40, 0.10, 0.30, 0.15])
    positive = np.array([0, 1, 0, 0, 1])
    # top-2: cells 1 (pos) and 3 (neg) -> 1 of 2 positives
    assert top_k_retrieval(attention, positive, 2) == (1, 0.5)
    # top-3 adds cell 4 (pos)
    assert top_k_retrieval(attention, positive, 3) == (2, 1.0)
    assert top_k_retrieval(attention, positive, 99) == (2, 1.0)


def test_default_k_scales_the_papers_400_of_1000():
    assert default_top_k(1000) == 400 and default_top_k(100) == 40 and default_top_k(1) == 1
