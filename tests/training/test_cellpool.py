import numpy as np
import pytest

from slamctl.errors import SlamError
from slamctl.training.bagset import Bag
from slamctl.training.cellpool import CellPools, epoch_batches


@pytest.mark.parametrize("n_pos,n_neg,batch", [(10, 90, 16), (50, 50, 32), (7, 3, 4), (1000, 10, 64)])
def test_batches_are_disjoint_cover_and_proportional(n_pos, n_neg, batch):
    batches = epoch_batches(n_pos, n_neg, batch, seed=0, epoch=0)
    pos = np.concatenate([p for p, _ in batches])
    neg = np.concatenate([n for _, n in batches])
    assert sorted(pos) == list(range(n_pos)) and sorted(neg) == list(range(n_neg))
    for p, n in batches:
        assert len(p) >= 1 and len(n) >= 1
        assert abs(len(p) - n_pos / len(batches)) <= 1 and abs(len(n) - n_neg / len(batches)) <= 1


def test_epochs_differ_and_are_reproducible():
    a = epoch_batches(20, 20, 8, seed=1, epoch=0)
    b = epoch_batches(20, 20, 8, seed=1, epoch=0)
    c = epoch_batches(20, 20, 8, seed=1, epoch=1)
    assert all((x[0] == y[0]).all() for x, y in zip(a, b))
    assert any((x[0] != y[0]).any() for x, y in zip(a, c))


def test_pools_need_both_labels(tmp_path):
    pos = Bag("a", 1, (tmp_path / "x.png",))
    with pytest.raises(SlamError, match="no negative"):
        CellPools.from_bags([pos], tmp_path)
    with pytest.raises(SlamError, match="no positive"):
        CellPools.from_bags([Bag("b", 0, (tmp_path / "y.png",))], tmp_path)


def test_a_subset_keeps_the_smaller_pool_and_is_seeded(tmp_path):
    pools = CellPools(
        tuple(tmp_path / f"p{i}" for i in range(100)), tuple(tmp_path / f"n{i}" for i in range(900))
    )
    small = pools.subset(200, seed=3)
    assert (len(small.positive), len(small.negative)) == (100, 100)  # the rare pool whole
    assert set(small.negative) <= set(pools.negative) and len(set(small.negative)) == 100
    assert small == pools.subset(200, seed=3) and small != pools.subset(200, seed=4)
    assert [len(p) for p in pools.subset(120, seed=0).__dict__.values()] == [60, 60]  # up to half
    balanced = CellPools(pools.negative[:500], pools.negative[500:])
    assert [len(p) for p in balanced.subset(300, seed=0).__dict__.values()] == [150, 150]
    assert [len(p) for p in pools.subset(1, seed=0).__dict__.values()] == [1, 1]  # never an empty pool
    assert pools.subset(0, seed=0) is pools and pools.subset(5000, seed=0) is pools
