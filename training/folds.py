"""Cross-validation folds of the train bags and the ensemble of their models.

`train mil --folds K` (SCEMILA and STAMP practice): the train bags are split into K folds,
stratified by label and seeded; model k is trained on the other folds and selected on fold
k, so every train bag gets one out-of-fold prediction (80 bags give 80 evaluated predictions
instead of the 20 of one validation split), and the decision threshold is chosen on all of
them. The K models are served as one aggregator: the mean of their bag probabilities and the
mean of their attentions, so the served contract does not change.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slamctl.errors import SlamError
from slamctl.training.mil_output import MilOutput


def assign_folds(labels: list[int], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each bag: per label, a seeded permutation dealt round-robin, so
    every fold holds a bag of each label."""
    counts = {y: labels.count(y) for y in sorted(set(labels))}
    if len(counts) < 2 or min(counts.values()) < k:
        raise SlamError(f"--folds {k}: every fold needs a bag of each label, the train bags have {counts}")
    rng = np.random.default_rng([seed, 17])
    folds = [0] * len(labels)
    for y in counts:
        for rank, i in enumerate(rng.permutation([i for i, lab in enumerate(labels) if lab == y])):
            folds[int(i)] = rank % k
    return folds


class FoldEnsemble(nn.Module):
    """K aggregators as one: mean bag probabilities (logits = their log, so a softmax gives
    them back) and mean attention."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.in_dim = members[0].in_dim

    def forward(self, features: torch.Tensor) -> MilOutput:
        """features: (N, D) -> logits (2,), attention (N,) summing to 1."""
        outs = [member(features) for member in self.members]
        probs = torch.stack([torch.softmax(o.logits, dim=0) for o in outs]).mean(dim=0)  # (2,)
        attention = torch.stack([o.attention for o in outs]).mean(dim=0)  # (N,)
        return MilOutput(
            torch.log(probs), attention, probs.new_zeros(()), torch.log(attention), outs[0].hidden
        )
