import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from slamctl.training.ceiling import WITNESS_RATE, bag_score, ceiling_scores
from slamctl.training.maxmil import MaxMIL


@pytest.mark.parametrize("n", [1, 40, 200, 300, 350, 1250])
def test_the_ceiling_pools_a_bag_as_the_top_fraction_model_does(n):
    """One definition of k (round half to even, at least one) for the model and its ceiling."""
    torch.manual_seed(n)
    model = MaxMIL(4, standardise=False, top_fraction=WITNESS_RATE).eval()
    with torch.no_grad():
        out = model(torch.randn(n, 4))
    assert bag_score(out.scores.numpy()) == pytest.approx(float(out.logits[1]), abs=1e-6)


def test_the_ceiling_finds_the_abnormal_bags_from_cell_truth():
    rng = np.random.default_rng(0)

    def bag(abnormal: bool) -> tuple[np.ndarray, np.ndarray]:
        truth = np.zeros(200, bool)
        truth[:2] = abnormal
        x = rng.normal(size=(200, 8)).astype(np.float32) + rng.normal(size=8).astype(
            np.float32
        )  # slide offset
        x[truth, 0] += 6.0
        return x, truth

    train = [bag(i % 2 == 1) for i in range(40)]
    test_y = [i % 2 for i in range(20)]
    test = [bag(y == 1)[0] for y in test_y]
    bags, cells = ceiling_scores([x for x, _ in train], [t for _, t in train], test)
    assert roc_auc_score(test_y, bags) == 1.0
    assert [len(c) for c in cells] == [200] * 20
