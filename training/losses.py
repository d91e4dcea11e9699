"""The two SLAM-AGS task losses as pure functions of projected embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 1:
        raise ValueError(
            f"expected two (N, D) views with N >= 1, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SimCLR's NT-Xent loss over the 2N views (Chen et al. 2020).

    z1, z2: (N, D) embeddings of two views of the same N cells; row i of z1 and of z2 are
    the positive pair, every other view is a negative. Mean over the 2N anchors.
    With N = 1 there is no negative, and the loss is 0.
    """
    _check_pair(z1, z2)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def similarity_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """The weakly supervised similarity loss on slide-negative cells.

    SupCon with every label equal and no softmax denominator: with c the mean cosine over
    all ordered pairs of distinct views among the 2N L2-normalised views,
    L = (1 - c) / temperature. It pulls all negative cells together; 0 when they coincide.
    """
    _check_pair(z1, z2)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    m = z.shape[0]
    # sum of all pairwise cosines = |sum z|^2; the diagonal contributes m (each self-cosine 1)
    total = z.sum(dim=0).pow(2).sum()
    mean_cos = (total - (z * z).sum()) / (m * (m - 1))
    return (1.0 - mean_cos) / temperature
