import pytest
import torch

from slamctl.training.abmil import ABMIL
from slamctl.training.maxmil import MaxMIL, top_mean
from slamctl.training.pamil import PAMIL


@pytest.mark.parametrize("cls", [PAMIL, ABMIL, MaxMIL])
@pytest.mark.parametrize("n", [1, 5000])
def test_shapes_and_attention_sums(cls, n):
    torch.manual_seed(0)
    model = cls(32).eval()
    out = model(torch.randn(n, 32))
    assert out.logits.shape == (2,)
    assert out.attention.shape == (n,)  # one attention: the per-cell score, higher = more abnormal
    assert torch.allclose(out.attention.sum(), torch.tensor(1.0), atol=1e-5)
    assert (out.attention >= 0).all() and out.aux_loss.shape == ()


def test_pamil_clustering_loss_is_weighted_and_bounded():
    out = PAMIL(16, n_proto=4)(torch.randn(50, 16))
    # each clustering term lies in [0, 1): the weighted sum in [0, 0.01)
    assert 0 <= float(out.aux_loss.detach()) < 0.01


@pytest.mark.parametrize("cls", [PAMIL, ABMIL, MaxMIL])
def test_wrong_input_is_refused(cls):
    with pytest.raises(ValueError, match=r"expected bag features \(N >= 1, 32\), got \(3, 16\)"):
        cls(32)(torch.randn(3, 16))
    with pytest.raises(ValueError, match="got \\(0, 32\\)"):
        cls(32)(torch.randn(0, 32))


def test_attention_is_permutation_equivariant():
    torch.manual_seed(1)
    model = PAMIL(8).eval()
    x = torch.randn(20, 8)
    perm = torch.randperm(20)
    a, b = model(x), model(x[perm])
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.allclose(a.attention[perm], b.attention, atol=1e-6)


def test_maxmil_decides_on_its_most_abnormal_cell():
    torch.manual_seed(2)
    model = MaxMIL(4, standardise=False).eval()
    x = torch.randn(30, 4)
    out = model(x)
    assert torch.equal(out.logits, torch.stack([torch.zeros(()), out.scores.max()]))
    assert out.attention.argmax() == out.scores.argmax()  # the served ranking is the decision's evidence


@pytest.mark.parametrize(
    "n,fraction,k", [(200, 0.01, 2), (300, 0.01, 3), (40, 0.01, 1), (7, 0.3, 2), (1, 0.5, 1)]
)
def test_top_fraction_pooling_is_the_mean_of_the_k_highest_scores(n, fraction, k):
    torch.manual_seed(n)
    model = MaxMIL(4, standardise=False, top_fraction=fraction).eval()
    out = model(torch.randn(n, 4))
    assert torch.allclose(out.logits[1], torch.sort(out.scores, descending=True).values[:k].mean())
    assert top_mean(out.scores, 0.0) == out.scores.max()


def test_pamil_prototype_prediction_mixes_logits_and_adds_the_er_loss():
    torch.manual_seed(3)
    x = torch.randn(40, 16)
    plain, mixed = PAMIL(16, proto_pred=False).eval(), PAMIL(16, proto_pred=True).eval()
    mixed.load_state_dict(plain.state_dict(), strict=False)  # same shared weights, plus the proto head
    a, b = plain(x), mixed(x)
    assert torch.allclose(a.attention, b.attention)  # the attention does not change
    assert not torch.allclose(a.logits, b.logits) and b.aux_loss > a.aux_loss  # ER loss >= 0 added
