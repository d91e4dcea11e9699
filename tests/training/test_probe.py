import numpy as np

from slamctl.training.probe import probe_auc


def bags(signal, seed=0, n_bags=12, n=50, dim=8):
    rng = np.random.default_rng(seed)
    feats, truth = [], []
    for b in range(n_bags):
        y = np.zeros(n, dtype=int)
        if b % 2:
            y[:5] = 1
        x = rng.normal(size=(n, dim))
        x[:, 0] += signal * y
        feats.append(x.astype(np.float32))
        truth.append(y)
    return feats, truth


def test_probe_finds_a_separable_direction():
    assert probe_auc(*bags(signal=3.0)) > 0.95


def test_probe_finds_nothing_without_signal():
    assert abs(probe_auc(*bags(signal=0.0)) - 0.5) < 0.15


def test_probe_needs_both_classes():
    feats, truth = bags(signal=1.0)
    assert probe_auc(feats, [np.zeros_like(t) for t in truth]) is None
