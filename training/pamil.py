"""PAMIL: prototype-based gated attention MIL (Liu et al. 2024), as SLAM-AGS uses it.

features -> Linear(D, 512)-ReLU -> L2-normalise; learned prototypes (P x D) pass the same
projection; attention_a(prototypes) (tanh) times attention_b(cells) (sigmoid) gives a
cell-by-prototype map; Linear(P, C) turns it into per-class attention logits; softmax
over cells; per-class pooled features, L2-normalised; one weight-normalised Linear(512, 1)
per class gives the bag logits. Two clustering losses (weight 0.005 each in training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.mil_output import MilOutput, check_bag


class PAMIL(nn.Module):
    def __init__(
        self, in_dim: int, *, n_proto: int = 10, hidden: int = 512, attn_dim: int = 256, n_classes: int = 2
    ):
        super().__init__()
        self.in_dim = in_dim
        self.proto = nn.Parameter(torch.randn(n_proto, in_dim))
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.attention_a = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Tanh())
        self.attention_b = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Sigmoid())
        self.attention_c = nn.Linear(n_proto, n_classes)
        self.classifiers = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(nn.Linear(hidden, 1)) for _ in range(n_classes)
        )

    def forward(self, features: torch.Tensor) -> MilOutput:
        """features: (N, D) cells of one bag -> logits (C,), attention (C, N) summing to 1 per class."""
        check_bag(features, self.in_dim)
        h = F.normalize(self.fc(features), dim=1)  # (N, H)
        proto = F.normalize(self.fc(self.proto), dim=1)  # (P, H)
        proto_a = self.attention_b(h) @ self.attention_a(proto).T  # (N, P)
        attention = torch.softmax(self.attention_c(proto_a).T, dim=1)  # (C, N)
        pooled = F.normalize(attention @ h, dim=1)  # (C, H)
        logits = torch.cat([clf(pooled[c]) for c, clf in enumerate(self.classifiers)])  # (C,)
        assign = torch.softmax(proto_a, dim=1)  # (N, P)
        aux = (1 - assign.max(dim=1).values.mean()) + (1 - assign.max(dim=0).values.mean())
        return MilOutput(logits, attention, aux_loss=0.005 * aux)
