import math

import torch
import torch.nn.functional as F

from slamctl.training.instance_loss import InstanceClassifiers, negatives_loss, reference_loss
from slamctl.training.mil_output import MilOutput


def output(scores: torch.Tensor, hidden: torch.Tensor) -> MilOutput:
    return MilOutput(torch.zeros(2), torch.softmax(scores, 0), torch.zeros(()), scores, hidden)


def test_negatives_loss_pushes_every_cell_of_a_negative_bag_down():
    scores = torch.tensor([0.0, 2.0, -2.0])
    loss = negatives_loss(output(scores, torch.zeros(3, 4)), label=0)
    want = sum(math.log1p(math.exp(s)) for s in (0.0, 2.0, -2.0)) / 3  # BCE with target 0
    assert math.isclose(float(loss), want, rel_tol=1e-6)


def test_negatives_loss_pushes_the_top_cell_of_a_positive_bag_up():
    scores = torch.tensor([0.0, 2.0, -2.0], requires_grad=True)
    negatives_loss(output(scores, torch.zeros(3, 4)), label=1).backward()
    assert scores.grad[1] < 0 and scores.grad[0] == 0 and scores.grad[2] == 0  # only the max moves, upward
    assert math.isclose(
        float(negatives_loss(output(scores.detach(), torch.zeros(3, 4)), 1)),
        math.log1p(math.exp(-2.0)),
        rel_tol=1e-6,
    )


def test_reference_loss_labels_the_top_and_bottom_cells_as_pamil_py_does():
    torch.manual_seed(0)
    heads = InstanceClassifiers(4)
    hidden = torch.randn(10, 4)
    scores = torch.arange(10.0)  # cell 9 most attended, cell 0 least
    k = 2
    top, bottom = hidden[[9, 8]], hidden[[0, 1]]
    # positive bag: class 1's head sees top as 1 and bottom as 0; class 0's head sees top as 0
    in_class = F.cross_entropy(heads.heads[1](torch.cat([top, bottom])), torch.tensor([1, 1, 0, 0]))
    out_class = F.cross_entropy(heads.heads[0](top), torch.tensor([0, 0]))
    got = reference_loss(output(scores, hidden), 1, heads, k=k)
    assert torch.allclose(got, (in_class + out_class) / 2)
    # negative bag: the roles of the heads swap
    in_class = F.cross_entropy(heads.heads[0](torch.cat([top, bottom])), torch.tensor([1, 1, 0, 0]))
    out_class = F.cross_entropy(heads.heads[1](top), torch.tensor([0, 0]))
    assert torch.allclose(reference_loss(output(scores, hidden), 0, heads, k=k), (in_class + out_class) / 2)


def test_reference_loss_takes_every_cell_of_a_small_bag():
    heads = InstanceClassifiers(3)
    loss = reference_loss(output(torch.zeros(2), torch.randn(2, 3)), 1, heads)  # k = 8 > 2 cells
    assert torch.isfinite(loss)
