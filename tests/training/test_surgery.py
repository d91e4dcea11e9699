import pytest
import torch

from slamctl.training.surgery import (
    ags_weights,
    combine,
    gram,
    pcgrad_weights,
    plain_sum_weights,
    projection_matrix,
)


# The three methods on whole gradients, composed as pretraining composes them (surgery.WEIGHTS
# on the Gram matrix, then combine), and PCGrad's projected gradients themselves.
def project_conflicts(grads, order=None):
    a = projection_matrix(gram(grads), order)
    return [combine(grads, a[i]) for i in range(len(grads))]


def plain_sum(grads, order=None):
    return combine(grads, plain_sum_weights(gram(grads), order))


def pcgrad(grads, order=None):
    return combine(grads, pcgrad_weights(gram(grads), order))


def ags(grads, order=None):
    return combine(grads, ags_weights(gram(grads), order))


def random_grads(seed, n_tasks=2, dim=50):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(n_tasks)]


def conflicting(seed, n_tasks=2):
    for s in range(seed, seed + 1000):
        grads = random_grads(s, n_tasks)
        if any(torch.dot(a, b) < 0 for i, a in enumerate(grads) for b in grads[i + 1 :]):
            return grads
    raise AssertionError("no conflicting draw")


def test_hand_computed_two_task_case():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1.g2 = -1: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    p1, p2 = project_conflicts([g1, g2])
    assert torch.allclose(p1, torch.tensor([0.5, 0.5]))
    assert torch.allclose(p2, torch.tensor([0.0, 1.0]))
    assert torch.allclose(pcgrad([g1, g2]), torch.tensor([0.5, 1.5]))
    # AGS: the same direction, with the plain sum's norm |(0, 1)| = 1
    expected = torch.tensor([0.5, 1.5]) / torch.tensor([0.5, 1.5]).norm()
    assert torch.allclose(ags([g1, g2]), expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_tasks", [2, 3])
def test_pcgrad_removes_conflicts(seed, n_tasks):
    grads = conflicting(seed * 31, n_tasks)
    order = list(range(n_tasks))[::-1]
    projected = project_conflicts(grads, order)
    for i in range(n_tasks):
        # the last task g_i was projected against no longer conflicts with it; with two
        # tasks that is the only other task
        last = [j for j in order if j != i][-1]
        assert torch.dot(projected[i], grads[last]) >= -1e-9


@pytest.mark.parametrize("seed", range(5))
def test_ags_has_plain_sum_norm_and_pcgrad_direction(seed):
    grads = conflicting(seed * 17)
    out = ags(grads)
    assert float(out.norm()) == pytest.approx(float(plain_sum(grads).norm()), rel=1e-9)
    assert torch.nn.functional.cosine_similarity(out, pcgrad(grads), dim=0) == pytest.approx(1.0)


def test_no_conflict_passes_through():
    g1, g2 = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.5, 0.1, 3.0])
    assert torch.dot(g1, g2) > 0
    for method in (pcgrad, ags):
        assert torch.allclose(method([g1, g2]), g1 + g2)


def test_zero_gradients_give_no_nan():
    zero, g = torch.zeros(4), torch.tensor([1.0, -2.0, 0.0, 3.0])
    for grads in ([zero, g], [g, zero], [zero, zero], [g, -g]):
        for method in (plain_sum, pcgrad, ags):
            assert torch.isfinite(method(grads)).all()
    assert torch.equal(ags([g, -g]), torch.zeros(4))  # plain sum is zero, so is AGS


def test_order_must_be_a_permutation_and_shapes_must_match():
    grads = random_grads(0)
    with pytest.raises(ValueError, match="permutation"):
        pcgrad(grads, order=[0, 0])
    with pytest.raises(ValueError, match="one shape"):
        ags([torch.zeros(3), torch.zeros(4)])
