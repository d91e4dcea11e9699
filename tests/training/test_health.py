import numpy as np

from slamctl.training.health import model_health, relative_entropy


def test_relative_entropy_bounds():
    assert abs(relative_entropy(np.full(50, 0.02)) - 1.0) < 1e-12
    assert relative_entropy(np.array([1.0, 0.0, 0.0])) < 1e-6
    assert relative_entropy(np.array([1.0])) is None


def test_uniform_attention_and_constant_output_are_flagged():
    uniform = [np.full(100, 0.01), np.full(40, 0.025)]
    h = model_health(np.array([0.501, 0.501]), uniform)
    assert h.degenerate and len(h.reasons) == 2
    assert "uniform attention" in h.reasons[0] and "constant output" in h.reasons[1]


def test_a_deciding_model_is_not_flagged():
    focused = np.full(100, 1e-4)
    focused[:2] = (1 - 98e-4) / 2
    h = model_health(np.array([0.05, 0.93]), [focused, np.full(100, 0.01)])
    assert not h.degenerate and h.reasons == [] and h.prob_spread == 0.88
    assert h.as_dict()["degenerate"] is False
