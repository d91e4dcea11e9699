"""The sweep's bootstrap intervals and paired differences (training/statistics.py) on
hand-made cases whose answers are known."""

import numpy as np
import pytest

from slamctl.training.metrics import roc_auc
from slamctl.training.statistics import bootstrap, paired_differences


def mean(x):
    return float(np.mean(x))


def test_a_constant_has_no_uncertainty():
    assert bootstrap([[np.full(30, 0.7)]], mean) == pytest.approx((0.7, 0.7, 0.7))


def test_the_interval_of_a_proportion_matches_the_normal_approximation():
    """100 bags, half of them 1: mean 0.5, 95% interval about 0.5 +- 1.96 * 0.05."""
    est, low, high = bootstrap([[np.array([0, 1] * 50)]], mean, replicates=4000)
    assert est == 0.5 and low < 0.5 < high
    assert high - low == pytest.approx(2 * 1.96 * 0.05, abs=0.02)


def test_a_perfect_ranking_has_auc_one_in_every_replicate_with_both_classes():
    y = np.array([0] * 20 + [1] * 20)
    assert bootstrap([[y, y * 1.0]], roc_auc) == (1.0, 1.0, 1.0)


def test_groups_are_averaged_and_resampled_each_on_its_own_rows():
    est, low, high = bootstrap([[np.full(10, 0.2)], [np.full(50, 0.6)]], mean)
    assert (est, low, high) == pytest.approx((0.4, 0.4, 0.4))  # the mean of the two groups' means


def test_a_paired_difference_resamples_the_same_bags_for_both_methods():
    """B scores every bag 0.1 below A: the paired difference is exactly 0.1 however the bags
    are drawn, while each method's own figure varies from replicate to replicate."""
    rng = np.random.default_rng(0)
    a = rng.random(40)
    est, low, high = bootstrap([[a, a - 0.1]], lambda x, y: mean(x) - mean(y))
    assert (est, low, high) == pytest.approx((0.1, 0.1, 0.1))
    _, low_a, high_a = bootstrap([[a]], mean)
    assert high_a - low_a > 0.1


def test_replicates_without_both_classes_are_left_out():
    y = np.array([0] * 19 + [1])  # one positive bag: many replicates hold none
    score = np.arange(20.0)
    est, low, high = bootstrap([[y, score]], roc_auc, replicates=500)
    assert est == 1.0 and low == high == 1.0


def test_paired_differences_take_the_keys_both_have():
    a = {(0.1, 0): 0.9, (0.1, 1): 0.8, (0.05, 0): 0.7}
    b = {(0.1, 0): 0.6, (0.1, 1): 0.85}
    assert paired_differences(a, b) == pytest.approx({(0.1, 0): 0.3, (0.1, 1): -0.05})
    with pytest.raises(ValueError):
        bootstrap([[np.array([])]], mean)
