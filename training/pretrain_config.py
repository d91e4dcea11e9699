"""The pretraining configuration and its presets: torch-free, so the command line reads its
defaults here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slamctl.errors import SlamError

if TYPE_CHECKING:
    from slamctl.training.encoder import EncoderConfig

# method -> how the two task gradients are combined (None: a single-task method)
METHODS = {
    "slam-ags": "ags",
    "weaksupcon": "plain_sum",
    "pcgrad": "pcgrad",
    "simclr": None,
    "supervised": None,
    "cell-supervised": None,  # the same loss on the cells' true labels (a reference, not a method)
}
CLASSIFIERS = ("supervised", "cell-supervised")  # trained with the classification head


@dataclass(frozen=True)
class PretrainConfig:
    method: str = "slam-ags"
    epochs: int = 150
    batch_size: int = 256  # cells per step, split between the pools by their sizes
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 10  # linear warm-up, then cosine decay to 0
    temperature: float = 0.07
    image_size: int = 250  # cells are decoded at this size (the Bone Marrow set: 250)
    crop_size: int = 224  # random crop for strong views, center crop for the weak view
    width: int = 64  # ResNet18 first-stage channels (64 = the real ResNet18)
    proj_dim: int = 512
    seed: int = 0
    num_workers: int = 4  # image-decoding processes
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    max_cells: int = 0  # > 0: pretrain on a seeded subset of this many training cells (0: all)

    def check(self) -> None:
        if self.method not in METHODS:
            raise SlamError(f"--method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if self.crop_size > self.image_size:
            raise SlamError(f"--crop-size {self.crop_size} exceeds --image-size {self.image_size}")
        if self.max_cells < 0:
            raise SlamError(f"--max-cells: expected 0 (all) or a positive count, got {self.max_cells}")
        if self.batch_size < 2 or self.epochs < 1:
            raise SlamError(
                f"--batch-size >= 2 and --epochs >= 1 expected, got {self.batch_size}, {self.epochs}"
            )

    def encoder_config(self) -> EncoderConfig:
        from slamctl.training.encoder import EncoderConfig

        return EncoderConfig(
            width=self.width,
            proj_dim=self.proj_dim,
            num_classes=2 if self.method in CLASSIFIERS else 0,
        )


PRESETS = {
    "paper": PretrainConfig(),
    # A CPU run on small synthetic cells (72 px, crop 64) that finishes in minutes.
    "tiny": PretrainConfig(
        epochs=3,
        batch_size=64,
        warmup_epochs=1,
        image_size=72,
        crop_size=64,
        width=16,
        proj_dim=128,
        num_workers=2,
    ),
}
