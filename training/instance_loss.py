"""Instance-level losses of MIL training: what the bag label says about single cells.

- `reference` (the reference PAMIL.py's --inst_pred, CLAM's instance evaluation): one
  Linear(H, 2) instance classifier per class. For the bag's own class the k most-attended
  cells are positive instances and the k least-attended negative; for the other class the
  k most-attended are negative. The loss is the mean of the classes' cross-entropies.
- `negatives` (slide-label aware, the standard MIL assumption): every cell of a negative
  bag is a known-normal cell, the same insight as the similarity loss of SLAM-AGS
  pretraining. The attention logits themselves are the instance scores: in a negative bag
  every cell's score is pushed below 0 (binary cross-entropy, target 0), in a positive bag
  the highest score above 0 (target 1). The softmax attention is blind to a constant shift
  of its logits, so this fixes their level, and it trains the served ranking directly.

Both are pure functions of one bag's MilOutput and label; `train mil` weighs them 0.5 (the
reference's lambda_inst).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slamctl.training.mil_output import MilOutput

WEIGHT = 0.5  # the reference's lambda_inst
K_SAMPLE = 8  # the reference's k_sample


class InstanceClassifiers(nn.Module):
    """The reference loss's classifiers: one Linear(H, 2) per class (training only)."""

    def __init__(self, hidden: int, n_classes: int = 2) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(n_classes))


def reference_loss(
    out: MilOutput, label: int, classifiers: InstanceClassifiers, k: int = K_SAMPLE
) -> torch.Tensor:
    """CLAM-style instance loss of the reference PAMIL.py (inst_eval / inst_eval_out)."""
    k = min(k, out.attention.shape[0])
    top = torch.topk(out.attention, k).indices
    bottom = torch.topk(-out.attention, k).indices
    losses = []
    for c, head in enumerate(classifiers.heads):
        if c == label:
            cells = out.hidden[torch.cat([top, bottom])]  # (2k, H)
            targets = torch.cat([torch.ones(k), torch.zeros(k)]).long()
        else:
            cells, targets = out.hidden[top], torch.zeros(k, dtype=torch.long)
        losses.append(F.cross_entropy(head(cells), targets))
    return torch.stack(losses).mean()


def negatives_loss(out: MilOutput, label: int) -> torch.Tensor:
    """Slide-label-aware instance loss on the attention logits (see the module's docstring)."""
    if label == 0:
        return F.binary_cross_entropy_with_logits(out.scores, torch.zeros_like(out.scores))
    top = out.scores.max()
    return F.binary_cross_entropy_with_logits(top, torch.ones_like(top))
