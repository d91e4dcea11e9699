"""The embedding step's choices and defaults: torch-free, so the command line reads them here."""

from __future__ import annotations

from dataclasses import dataclass

FEATURES = ("h", "z")  # a slamctl encoder's backbone h or projection head z
# foundation encoders `train embed --encoder NAME --weights FILE` loads (training/foundation.py
# keys its architectures by these names)
FOUNDATION_ENCODERS = ("dinobloom-s", "dinobloom-b", "dinobloom-l", "dinobloom-g")
FOUNDATION_FEATURES = ("cls",)  # their features: the class token after the final norm


@dataclass(frozen=True)
class EmbedConfig:
    features: str = "h"  # backbone h (8 x width) or projection head z (FEATURES)
    batch_size: int = 256  # cells per forward pass
    num_workers: int = 2  # image-decoding processes
