"""Gated attention MIL (Ilse et al. 2018).

[per-bag robust standardisation] -> Linear(D, 512)-ReLU (dropout 0.25 in training); gated
attention tanh(V h) * sigmoid(U h) -> Linear(., 1) gives one attention logit per cell;
softmax over cells; the pooled feature -> Linear(512, C) gives the bag logits. One attention
branch, as in Ilse et al.: its attention is the served per-cell score (higher = more abnormal).
"""

from __future__ import annotations

import torch
from torch import nn

from slamctl.training.bag_norm import BagStandardise
from slamctl.training.mil_output import MilOutput, check_bag


class ABMIL(nn.Module):
    def __init__(
        self,
        in_dim: int,
        *,
        standardise: bool = True,
        hidden: int = 512,
        attn_dim: int = 256,
        n_classes: int = 2,
        dropout: float = 0.25,
    ):
        super().__init__()
        self.in_dim, self.hidden_dim = in_dim, hidden
        self.norm = BagStandardise() if standardise else nn.Identity()
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Tanh())
        self.attention_u = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Sigmoid())
        self.attention_w = nn.Linear(attn_dim, 1)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor) -> MilOutput:
        """features: (N, D) cells of one bag -> logits (C,), attention (N,) summing to 1."""
        check_bag(features, self.in_dim)
        h = self.fc(self.norm(features))  # (N, H)
        scores = self.attention_w(self.attention_v(h) * self.attention_u(h))[:, 0]  # (N,)
        attention = torch.softmax(scores, dim=0)  # (N,)
        logits = self.classifier(attention @ h)  # (C,)
        return MilOutput(logits, attention, logits.new_zeros(()), scores, h)
