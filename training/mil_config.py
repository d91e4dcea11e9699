"""The MIL training configuration: torch-free, so the command line reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass

from slamctl.errors import SlamError
from slamctl.training.operating_point import check_target_sensitivity

AGGREGATORS = ("pamil", "abmil", "maxmil")  # training/mil.py keys its classes by these names
INSTANCE_LOSSES = ("none", "reference", "negatives")  # training/instance_loss.py


@dataclass(frozen=True)
class MilConfig:
    aggregator: str = (
        "maxmil"  # the one that passes the controls with slide effects (docs/results/mil-controls)
    )
    epochs: int = 50
    lr: float = 1e-3  # Adam, as the reference
    weight_decay: float = 1e-4
    n_proto: int = 10  # PAMIL prototypes
    standardise: bool = True  # per-bag robust standardisation as the aggregator's first layer
    top_fraction: float = 0.0  # maxmil: bag logit = mean of the top round(f x N) cell scores (0: the max)
    instance_loss: str = "none"  # or reference (PAMIL.py's --inst_pred), negatives (slide-label aware)
    proto_pred: bool = False  # PAMIL's prototype prediction and ER loss (PAMIL.py's --proto_pred)
    restarts: int = 5  # models trained from different seeds on the same split; lowest validation loss kept
    subsample: float = 1.0  # bag augmentation: < 1 trains each step on this fraction of a bag's cells
    val_fraction: float = 0.25  # of the train bags, for model selection (ignored with folds > 1)
    init_from: str | None = None  # curriculum: start from this mil.pt, trained at a higher witness rate
    freeze_epochs: int = 5  # curriculum: epochs with PAMIL's prototypes and the projections frozen
    folds: int = 1  # > 1: one model per stratified fold, selected on it, served as their ensemble
    patience: int = 10  # epochs without a better validation loss before stopping
    target_sensitivity: float | None = None  # None: the threshold of best validation F1
    seed: int = 0

    def check(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise SlamError(
                f"--aggregator: expected one of {', '.join(AGGREGATORS)}, got {self.aggregator!r}"
            )
        if self.instance_loss not in INSTANCE_LOSSES:
            raise SlamError(
                f"--instance-loss: expected one of {', '.join(INSTANCE_LOSSES)}, got {self.instance_loss!r}"
            )
        if self.proto_pred and self.aggregator != "pamil":
            raise SlamError(
                f"--proto-pred: PAMIL's prototype prediction, not for --aggregator {self.aggregator}"
            )
        if self.freeze_epochs < 0:
            raise SlamError(f"--freeze-epochs: expected >= 0, got {self.freeze_epochs}")
        if not 0 <= self.top_fraction < 1:
            raise SlamError(f"--top-fraction: expected a fraction 0 <= f < 1, got {self.top_fraction}")
        if self.top_fraction and self.aggregator != "maxmil":
            raise SlamError(f"--top-fraction: maxmil's pooling, not for --aggregator {self.aggregator}")
        if self.folds < 1:
            raise SlamError(f"--folds: expected >= 1, got {self.folds}")
        if self.restarts < 1:
            raise SlamError(f"--restarts: expected >= 1, got {self.restarts}")
        if not 0 < self.subsample <= 1:
            raise SlamError(f"--subsample: expected a fraction 0 < f <= 1, got {self.subsample}")
        if not 0 < self.val_fraction < 1:
            raise SlamError(f"--val-fraction: expected 0 < f < 1, got {self.val_fraction}")
        check_target_sensitivity(self.target_sensitivity)
