import torch

from slamctl.training.bag_norm import BagStandardise, lower_median, robust_standardise


def test_a_bag_offset_and_scale_vanish():
    torch.manual_seed(0)
    x = torch.randn(301, 16)
    offset, scale = torch.randn(16) * 5, 3.0
    assert torch.allclose(robust_standardise(scale * x + offset), robust_standardise(x), atol=1e-4)


def test_a_few_outliers_move_neither_statistic():
    torch.manual_seed(1)
    x = torch.randn(300, 8)
    y = x.clone()
    y[:3] += 50.0  # three abnormal cells far away
    assert (robust_standardise(y)[3:] - robust_standardise(x)[3:]).abs().max() < 0.1  # 1% of cells: ~1% moved
    assert (robust_standardise(y)[:3, 0] > 20).all()


def test_median_and_scale_of_a_normal_bag():
    torch.manual_seed(2)
    z = robust_standardise(torch.randn(20_000, 4) * 7 + 2)
    assert lower_median(z).abs().max() < 0.02
    assert ((z.abs().median(dim=0).values * 1.4826) - 1).abs().max() < 0.03


def test_degenerate_bags_stay_finite():
    assert torch.equal(robust_standardise(torch.tensor([[3.0, -1.0]])), torch.zeros(1, 2))  # one cell
    sparse = torch.zeros(10, 3)
    sparse[0, 0] = 5.0  # a ReLU feature zero in most cells: MAD 0
    sparse[:, 1] = torch.arange(10.0)
    out = BagStandardise()(sparse)
    assert torch.isfinite(out).all() and out[0, 0] > 0 and out[1:, 0].abs().max() == 0
