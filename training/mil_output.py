"""What every MIL aggregator returns, and the check of its input."""

from __future__ import annotations

from typing import NamedTuple

import torch


class MilOutput(NamedTuple):
    logits: torch.Tensor  # (C,) bag logits
    attention: torch.Tensor  # (N,) softmax over the bag's cells: the per-cell score, higher = more abnormal
    aux_loss: torch.Tensor  # () weighted auxiliary loss (PAMIL's clustering), 0 otherwise


def check_bag(features: torch.Tensor, in_dim: int) -> None:
    if features.ndim != 2 or features.shape[1] != in_dim or features.shape[0] < 1:
        raise ValueError(f"expected bag features (N >= 1, {in_dim}), got {tuple(features.shape)}")
