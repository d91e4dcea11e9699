"""The embedding step's defaults: torch-free, so the command line reads them here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbedConfig:
    features: str = "h"  # backbone h (8 x width) or projection head z (slamctl.training.choices.FEATURES)
    batch_size: int = 256  # cells per forward pass
    num_workers: int = 2  # image-decoding processes
