"""What every MIL aggregator returns, and the check of its input."""

from __future__ import annotations

from typing import NamedTuple

import torch


class MilOutput(NamedTuple):
    logits: torch.Tensor  # (C,) bag logits
    attention: torch.Tensor  # (N,) softmax of `scores` over the bag's cells: the served per-cell score
    aux_loss: torch.Tensor  # () the model's own weighted auxiliary losses (PAMIL's clustering, ER), or 0
    scores: torch.Tensor  # (N,) attention logits: higher = more abnormal
    hidden: torch.Tensor  # (N, H) the cell features the attention pools (instance losses read them)


def check_bag(features: torch.Tensor, in_dim: int) -> None:
    if features.ndim != 2 or features.shape[1] != in_dim or features.shape[0] < 1:
        raise ValueError(f"expected bag features (N >= 1, {in_dim}), got {tuple(features.shape)}")
