import math

import pytest
import torch

from slamctl.training.losses import nt_xent, similarity_loss


def reference_nt_xent(z1, z2, t):
    """NT-Xent written out anchor by anchor (Chen et al. 2020, eq. 1)."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    n2, n = len(z), len(z1)
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / t) / den)
    return total / n2


def reference_similarity(z1, z2, t):
    """The SupCon form of the reference code: all labels equal, no softmax denominator,
    logits minus each row's maximum (the self-similarity), mean over the positives."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    logits = z @ z.T / t
    logits = logits - logits.max(dim=1, keepdim=True).values
    m = len(z)
    off = ~torch.eye(m, dtype=torch.bool)
    mean_pos = (logits * off).sum(dim=1) / (m - 1)
    return float(-mean_pos.mean())


@pytest.mark.parametrize("n,d,t", [(1, 8, 0.07), (4, 16, 0.07), (6, 5, 0.5), (3, 32, 1.0)])
def test_nt_xent_matches_reference(n, d, t):
    g = torch.Generator().manual_seed(n * 100 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(reference_nt_xent(z1, z2, t), rel=1e-5, abs=1e-6)


def test_nt_xent_single_pair_is_zero():
    z1, z2 = torch.randn(1, 4), torch.randn(1, 4)
    assert float(nt_xent(z1, z2, 0.07)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("n,d,t", [(1, 8, 0.07), (4, 16, 0.07), (6, 5, 0.5), (3, 32, 2.0)])
def test_similarity_matches_reference_and_closed_form(n, d, t):
    g = torch.Generator().manual_seed(n * 7 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = float(similarity_loss(z1, z2, t))
    assert got == pytest.approx(reference_similarity(z1, z2, t), rel=1e-5, abs=1e-6)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    m = len(z)
    cos = [float(z[i] @ z[j]) for i in range(m) for j in range(m) if i != j]
    assert got == pytest.approx((1 - sum(cos) / len(cos)) / t, rel=1e-5, abs=1e-6)


def test_similarity_is_zero_when_cells_coincide_and_pulls_together():
    z = torch.randn(1, 8).repeat(5, 1)
    assert float(similarity_loss(z, z * 3.0, 0.07)) == pytest.approx(0.0, abs=1e-5)
    z1 = torch.randn(5, 8, requires_grad=True)
    loss = similarity_loss(z1, z1.detach() + 0.1, 0.07)
    loss.backward()
    moved = (z1 - 0.1 * z1.grad).detach()
    assert float(similarity_loss(moved, z1.detach() + 0.1, 0.07)) < float(loss.detach())


def test_losses_reject_mismatched_views():
    with pytest.raises(ValueError, match="views"):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="views"):
        similarity_loss(torch.randn(0, 4), torch.randn(0, 4))
