"""The cell feature extractor behind `train embed`, `export` and `export validate`: either
slamctl's own pretrained encoder (a RUN/checkpoint.pt) or a foundation encoder named on the
command line with its weights file (`--encoder dinobloom-s --weights FILE`).

Both become one `Extractor`: a module from float images in [0, 1], NCHW at the crop size, to
features (B, D), with the transform that feeds it (decode size, center crop) and the facts
the embeddings, the ONNX graph's metadata and the model card record about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slamctl.checksum import sha256_of
from slamctl.errors import SlamError
from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint
from slamctl.training.embed_config import FEATURES, FOUNDATION_ENCODERS, FOUNDATION_FEATURES
from slamctl.training.encoder import MEAN, STD, Encoder, encoder_of


class _Features(nn.Module):
    """slamctl's encoder, returning h or z only."""

    def __init__(self, encoder: Encoder, features: str) -> None:
        super().__init__()
        self.encoder, self.use_h = encoder, features == "h"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, z = self.encoder(images)
        return h if self.use_h else z


@dataclass(frozen=True)
class Extractor:
    module: nn.Module  # float (B, 3, S, S) in [0, 1] -> (B, D); normalises itself
    encoder: str  # "slamctl" (a pretraining checkpoint) or a foundation encoder's name
    path: Path  # the checkpoint or weights file
    sha256: str  # of that file
    features: str  # h or z (slamctl), cls (the class token of a foundation encoder)
    dim: int
    image_size: int  # cells are decoded at this size ...
    crop_size: int  # ... and center-cropped to this, the model's input S
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pretraining: dict  # the model card's "pretraining": method, step, epoch, config, checksum
    data_dir: Path | None  # the pretraining data folder a slamctl checkpoint names


def is_foundation(encoder: str | Path) -> bool:
    return str(encoder) in FOUNDATION_ENCODERS


def open_extractor(
    encoder: str | Path,
    *,
    weights: Path | None = None,
    features: str = "h",
    device: torch.device | str = "cpu",
    interpolate: bool = False,
) -> Extractor:
    """`encoder`: a pretraining checkpoint's path, or a foundation encoder's name with `weights`."""
    if is_foundation(encoder):
        return _foundation(str(encoder), weights, features, device, interpolate)
    if weights is not None:
        raise SlamError(
            f"--weights: only for a foundation encoder (--encoder {' or '.join(FOUNDATION_ENCODERS)}); "
            f"{encoder} is a slamctl checkpoint"
        )
    if features not in FEATURES:
        raise SlamError(f"--features: expected h or z for a slamctl encoder, got {features!r}")
    path = Path(encoder)
    ckpt = load_checkpoint(path, ENCODER_KIND, map_location=device)
    model, cfg = encoder_of(ckpt, device), ckpt["config"]
    sha = sha256_of(path)
    return Extractor(
        module=_Features(model, features).eval(),
        encoder="slamctl",
        path=path,
        sha256=sha,
        features=features,
        dim=model.config.feature_dim if features == "h" else model.config.proj_dim,
        image_size=int(cfg["image_size"]),
        crop_size=int(cfg["crop_size"]),
        mean=MEAN,
        std=STD,
        pretraining={
            "method": cfg["method"],
            "step": ckpt.get("step"),
            "epoch": ckpt.get("epoch"),
            "config": cfg,
            "checkpoint_sha256": sha,
        },
        data_dir=Path(ckpt["bags"]) if ckpt.get("bags") else None,
    )


def _foundation(name: str, weights: Path | None, features: str, device, interpolate: bool) -> Extractor:
    from slamctl.training.foundation import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, describe, load_foundation

    if weights is None:
        raise SlamError(f"--encoder {name}: pass its weights file with --weights (see the README)")
    if features not in (*FOUNDATION_FEATURES, "h"):  # h, the default, is the backbone's output
        raise SlamError(f"--features {features}: {name} has one feature set, its class token")
    weights = Path(weights)
    model = load_foundation(name, weights, interpolate=interpolate).to(device)
    sha = sha256_of(weights)
    config = {**describe(name), "weights": str(weights), "interpolated_pos_embed": interpolate}
    return Extractor(
        module=model,
        encoder=name,
        path=weights,
        sha256=sha,
        features=FOUNDATION_FEATURES[0],
        dim=model.dim,
        image_size=IMAGE_SIZE,
        crop_size=IMAGE_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretraining={
            "method": f"{name} (frozen)",
            "step": None,
            "epoch": None,
            "config": config,
            "checkpoint_sha256": sha,
        },
        data_dir=None,
    )
