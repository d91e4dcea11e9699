"""Combining per-task gradients: plain sum, PCGrad and Adaptive Gradient Surgery.

- PCGrad: Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
- AGS: Acerbis et al., "SLAM-AGS", arXiv 2511.14639: PCGrad's projected direction,
  rescaled to the norm of the plain sum.

Every projection is against an *original* task gradient, so each projected gradient is a
linear combination of the originals, g_i' = sum_k A[i, k] g_k, and every dot product the
surgery needs is an entry of the Gram matrix G = [g_i . g_k]. The surgery is therefore
scalar work on the n x n Gram matrix, followed by one weighted sum over the gradients:
n(n+1)/2 dot products and one output pass, instead of a chain of full-size temporaries.
(For 11.7 M parameters on a CPU, each full-size temporary costs as much as ~5 dot
products, most of it page faults of fresh memory.)

The public functions take a list of flat per-task gradients (same shape, same device) and
return the combined flat gradient; they never touch a model or an optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check(grads: Sequence[torch.Tensor]) -> None:
    if len(grads) < 1:
        raise ValueError("need at least one task gradient")
    shape = grads[0].shape
    if any(g.shape != shape or g.ndim != 1 for g in grads):
        raise ValueError(f"expected flat gradients of one shape, got {[tuple(g.shape) for g in grads]}")


def _check_order(n: int, order: Sequence[int] | None) -> list[int]:
    order = list(range(n)) if order is None else list(order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {order}")
    return order


def gram(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """G[i, k] = g_i . g_k, float64 on the CPU, (n, n)."""
    _check(grads)
    n = len(grads)
    pairs = [(i, k) for i in range(n) for k in range(i, n)]
    dots = torch.stack([torch.dot(grads[i], grads[k]) for i, k in pairs]).double().cpu()  # one sync
    out = torch.empty(n, n, dtype=torch.float64)
    for (i, k), d in zip(pairs, dots):
        out[i, k] = out[k, i] = d
    return out


def projection_matrix(g: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
    """A with g_i' = sum_k A[i, k] g_k: PCGrad's projection, from the Gram matrix g.

    For each task i (in `order`) and each j != i (in `order`): if g_i' . g_j < 0, remove
    from g_i' its component along the original g_j. A zero g_j is skipped.
    """
    n = g.shape[0]
    order = _check_order(n, order)
    a = torch.eye(n, dtype=torch.float64)
    for i in order:
        for j in order:
            if i == j or g[j, j] <= 0:
                continue
            dot = a[i] @ g[:, j]  # g_i' . g_j
            if dot < 0:
                a[i, j] -= dot / g[j, j]
    return a


def plain_sum_weights(g: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
    """Weights of the plain sum: all ones (`order` accepted for a uniform signature)."""
    return torch.ones(g.shape[0], dtype=torch.float64)


def pcgrad_weights(g: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
    """Weights w with sum_k w_k g_k = sum_i g_i' (PCGrad, no rescaling)."""
    return projection_matrix(g, order).sum(dim=0)


def ags_weights(g: torch.Tensor, order: Sequence[int] | None = None) -> torch.Tensor:
    """PCGrad's weights rescaled so the result has the plain sum's norm; 0 if either is 0."""
    w = pcgrad_weights(g, order)
    ones = torch.ones_like(w)
    target2, norm2 = ones @ g @ ones, w @ g @ w  # |sum g_i|^2, |sum g_i'|^2
    if norm2 <= 0:
        return torch.zeros_like(w)
    return w * torch.sqrt(target2.clamp_min(0) / norm2)


def combine(
    grads: Sequence[torch.Tensor], weights: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_k weights[k] * grads[k], written into `out` if given (no other full-size temporary)."""
    _check(grads)
    out = torch.empty_like(grads[0]) if out is None else out
    torch.mul(grads[0], float(weights[0]), out=out)
    for g, w in zip(grads[1:], weights[1:].tolist()):
        out.add_(g, alpha=w)
    return out


# method name -> weights of the combined gradient, as a function of (Gram matrix, task order)
WEIGHTS = {"plain_sum": plain_sum_weights, "pcgrad": pcgrad_weights, "ags": ags_weights}
