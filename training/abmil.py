"""Gated attention MIL (Ilse et al. 2018), one attention branch per class.

features -> Linear(D, 512)-ReLU; gated attention tanh(V h) * sigmoid(U h) -> Linear(., C)
gives per-class attention logits; softmax over cells; per-class pooled features; one
Linear(512, 1) per class gives the bag logits.
"""

from __future__ import annotations

import torch
from torch import nn

from training.mil_output import MilOutput, check_bag


class ABMIL(nn.Module):
    def __init__(self, in_dim: int, *, hidden: int = 512, attn_dim: int = 256, n_classes: int = 2):
        super().__init__()
        self.in_dim = in_dim
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.attention_v = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Tanh())
        self.attention_u = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Sigmoid())
        self.attention_w = nn.Linear(attn_dim, n_classes)
        self.classifiers = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(n_classes))

    def forward(self, features: torch.Tensor) -> MilOutput:
        """features: (N, D) cells of one bag -> logits (C,), attention (C, N) summing to 1 per class."""
        check_bag(features, self.in_dim)
        h = self.fc(features)  # (N, H)
        scores = self.attention_w(self.attention_v(h) * self.attention_u(h))  # (N, C)
        attention = torch.softmax(scores.T, dim=1)  # (C, N)
        pooled = attention @ h  # (C, H)
        logits = torch.cat([clf(pooled[c]) for c, clf in enumerate(self.classifiers)])  # (C,)
        return MilOutput(logits, attention, aux_loss=logits.new_zeros(()))
