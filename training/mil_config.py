"""The MIL training configuration: torch-free, so the command line reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass

from slamctl.errors import SlamError
from slamctl.training.choices import AGGREGATORS
from slamctl.training.operating_point import check_target_sensitivity


@dataclass(frozen=True)
class MilConfig:
    aggregator: str = "pamil"
    epochs: int = 50
    lr: float = 1e-3  # Adam, as the reference
    weight_decay: float = 1e-4
    n_proto: int = 10  # PAMIL prototypes
    val_fraction: float = 0.25  # of the train bags, for model selection
    patience: int = 10  # epochs without a better validation loss before stopping
    target_sensitivity: float | None = None  # None: the threshold of best validation F1
    seed: int = 0

    def check(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise SlamError(f"--aggregator: expected pamil or abmil, got {self.aggregator!r}")
        if not 0 < self.val_fraction < 1:
            raise SlamError(f"--val-fraction: expected 0 < f < 1, got {self.val_fraction}")
        check_target_sensitivity(self.target_sensitivity)
