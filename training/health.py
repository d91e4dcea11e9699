"""A guard against degenerate aggregators: uniform attention or constant outputs.

A MIL model that attends to every cell equally (attention entropy ~ log N), or gives every
bag the same P(abnormal), decides nothing, whatever its metrics on a few bags say. Both
figures are measured on the bags a model is trained or evaluated on; a flagged model gets
a warning, a flag in its checkpoint and summary, and `slamctl export` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNIFORM_ATTENTION = 0.99  # mean attention entropy / log N above this: attention is uniform
CONSTANT_OUTPUT = 0.02  # P(abnormal) spread (max - min over bags) below this: outputs are constant


def relative_entropy(attention: np.ndarray) -> float | None:
    """Entropy of one bag's attention over log N: 1 = uniform, 0 = one cell; None for N = 1."""
    a = np.asarray(attention, dtype=np.float64)
    if len(a) < 2:
        return None
    a = a / a.sum()
    return float(-(a * np.log(np.clip(a, 1e-30, None))).sum() / np.log(len(a)))


@dataclass(frozen=True)
class ModelHealth:
    attention_entropy: float  # mean over bags of entropy / log N (bags of >= 2 cells); nan if none
    prob_spread: float  # max - min of P(abnormal) over bags
    prob_std: float

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.attention_entropy > UNIFORM_ATTENTION:
            out.append(f"uniform attention (entropy {self.attention_entropy:.3f} of log N)")
        if self.prob_spread < CONSTANT_OUTPUT:
            out.append(f"constant output (P(abnormal) spread {self.prob_spread:.4f} over bags)")
        return out

    @property
    def degenerate(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict:
        return {
            "attention_entropy": self.attention_entropy,
            "prob_spread": self.prob_spread,
            "prob_std": self.prob_std,
            "degenerate": self.degenerate,
            "reasons": self.reasons,
        }


def model_health(probs: np.ndarray, attention: list[np.ndarray]) -> ModelHealth:
    """Health of a model from its P(abnormal) and attention on a set of bags."""
    probs = np.asarray(probs, dtype=np.float64)
    entropies = [e for e in map(relative_entropy, attention) if e is not None]
    return ModelHealth(
        attention_entropy=float(np.mean(entropies)) if entropies else float("nan"),
        prob_spread=float(probs.max() - probs.min()) if len(probs) else 0.0,
        prob_std=float(probs.std()) if len(probs) else 0.0,
    )
