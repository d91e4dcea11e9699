import numpy as np
import pytest

from slamctl.errors import SlamError
from slamctl.training.operating_point import choose_threshold


def test_best_f1_threshold_sits_between_the_classes():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.60])  # separable, all below 0.5 for half the positives
    t = choose_threshold(y, p)
    assert t == pytest.approx(0.35)
    assert ((p >= t) == y.astype(bool)).all()


def test_best_f1_with_overlap_hand_computed():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    # p >= 0.4: TP 2, FP 0, FN 1 -> F1 0.8; p >= 0.2: TP 3, FP 1 -> F1 0.857 (best); p >= 0.9: F1 0.5
    assert choose_threshold(y, p) == pytest.approx(0.15)


def test_target_sensitivity_takes_the_highest_threshold_reaching_it():
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    assert choose_threshold(y, p, 0.5) == pytest.approx(0.6)  # 2 of 4 positives: p >= 0.7
    assert choose_threshold(y, p, 0.75) == pytest.approx(0.4)  # 3 of 4: p >= 0.5
    assert choose_threshold(y, p, 1.0) == pytest.approx(0.15)  # all: p >= 0.2


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_target_sensitivity_out_of_range(bad):
    with pytest.raises(SlamError, match=r"--target-sensitivity: expected 0 < S <= 1"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), bad)


def test_one_label_is_refused():
    with pytest.raises(SlamError, match="both labels"):
        choose_threshold(np.array([1, 1]), np.array([0.2, 0.8]))
