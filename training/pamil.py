"""PAMIL: prototype-based gated attention MIL (Liu et al. 2024), as SLAM-AGS uses it.

features -> Linear(D, 512)-ReLU -> L2-normalise; learned prototypes (P x D) pass the same
projection; attention_a(prototypes) (tanh) times attention_b(cells) (sigmoid) gives a
cell-by-prototype map; Linear(P, 1) turns it into one attention logit per cell; softmax
over cells; the pooled feature, L2-normalised; one weight-normalised Linear(512, 1) per
class gives the bag logits. Two clustering losses (weight 0.005 each in training).

Deviations from the reference code, each measured on the oracle controls (README, "MIL
aggregators"):
- One attention branch for the binary task instead of one per class. With a branch per
  class the abnormal cells can be captured by the *normal* class's branch, and the
  abnormal-class attention then ranks them last (bag AUC 1.00, top-K 0.00). One branch
  must put the abnormal cells first to detect the bag, so its attention is the served
  per-cell score (higher = more abnormal).
- Attention logits are multiplied by ATTENTION_SCALE = 10. The gated scores of
  L2-normalised features span about 0.01 at initialisation, so the softmax over 200 cells
  is uniform to four digits (the 0.501 / 1/N model) and the attention's gradient vanishes;
  at 1% witness rate the reference model never left that point.
- Dropout 0.25 on the projected cell features in training: without it the model
  memorises the few dozen training bags by their noise before it finds 2 abnormal cells
  in 200 (training loss 0.01, validation loss rising from epoch 2).
- Per-bag robust standardisation of the embeddings first (training/bag_norm.py), on by
  default: a slide-level offset defeats the model otherwise.

Prototype prediction (`proto_pred`, the reference's --proto_pred, off by default): each
prototype's largest gated score over the cells, divided by the largest of them, softmax
over prototypes, pools the projected prototypes; a Linear(512, C) gives prototype logits,
mixed `proto_weight` = 0.5 into the bag logits, with the ER loss (KL from the bag's to the
prototypes' probabilities, the latter detached) of weight 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slamctl.training.bag_norm import BagStandardise
from slamctl.training.mil_output import MilOutput, check_bag

ATTENTION_SCALE = 10.0
CLUSTER_WEIGHT = 0.005  # each of the two clustering losses, as the reference
ER_WEIGHT = 0.1  # the reference's lambda_er


class PAMIL(nn.Module):
    def __init__(
        self,
        in_dim: int,
        *,
        n_proto: int = 10,
        standardise: bool = True,
        proto_pred: bool = False,
        proto_weight: float = 0.5,
        hidden: int = 512,
        attn_dim: int = 256,
        n_classes: int = 2,
        dropout: float = 0.25,
    ):
        super().__init__()
        self.in_dim, self.hidden_dim = in_dim, hidden
        self.norm = BagStandardise() if standardise else nn.Identity()
        self.proto = nn.Parameter(torch.randn(n_proto, in_dim))
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.attention_a = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Tanh())
        self.attention_b = nn.Sequential(nn.Linear(hidden, attn_dim), nn.Sigmoid())
        self.attention_c = nn.Linear(n_proto, 1)
        self.classifiers = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(nn.Linear(hidden, 1)) for _ in range(n_classes)
        )
        self.proto_weight = proto_weight
        self.proto_classifier = nn.Linear(hidden, n_classes) if proto_pred else None

    def forward(self, features: torch.Tensor) -> MilOutput:
        """features: (N, D) cells of one bag -> logits (C,), attention (N,) summing to 1."""
        check_bag(features, self.in_dim)
        h = F.normalize(self.dropout(self.fc(self.norm(features))), dim=1)  # (N, H)
        proto = F.normalize(self.fc(self.proto), dim=1)  # (P, H)
        proto_a = self.attention_b(h) @ self.attention_a(proto).T  # (N, P)
        scores = ATTENTION_SCALE * self.attention_c(proto_a)[:, 0]  # (N,)
        attention = torch.softmax(scores, dim=0)  # (N,)
        pooled = F.normalize(attention @ h, dim=0)  # (H,)
        logits = torch.cat([clf(pooled) for clf in self.classifiers])  # (C,)
        assign = torch.softmax(proto_a, dim=1)  # (N, P)
        aux = CLUSTER_WEIGHT * ((1 - assign.max(dim=1).values.mean()) + (1 - assign.max(dim=0).values.mean()))
        if self.proto_classifier is not None:
            proto_score = proto_a.max(dim=0).values  # (P,)
            proto_score = torch.softmax(proto_score / proto_score.max(), dim=0)
            proto_logits = self.proto_classifier(proto_score @ proto)  # (C,)
            aux = aux + ER_WEIGHT * er_loss(logits, proto_logits)
            logits = (1 - self.proto_weight) * logits + self.proto_weight * proto_logits
        return MilOutput(logits, attention, aux, scores, h)


def er_loss(bag_logits: torch.Tensor, proto_logits: torch.Tensor) -> torch.Tensor:
    """The reference's ER loss: KL(prototype probabilities, detached || bag probabilities)."""
    target = torch.softmax(proto_logits, dim=0).detach()
    return F.kl_div(torch.log(torch.softmax(bag_logits, dim=0) + 1e-8), target, reduction="sum")
