"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded without
pickle (`torch.load(weights_only=True)`), each tagged with its kind so that a checkpoint
of the wrong kind is refused with a one-line error."""

from __future__ import annotations

from pathlib import Path

import torch

from slamctl.errors import SlamError
from slamctl.files import atomic_path

ENCODER_KIND = "slamctl-encoder"
MIL_KIND = "slamctl-mil"
# what every reader of a checkpoint of each kind relies on, checked at load
REQUIRED_KEYS = {
    ENCODER_KIND: ("model", "config", "encoder_config"),
    MIL_KIND: ("model", "config", "in_dim", "embedding"),  # a threshold has its default (stored_threshold)
}


def save_checkpoint(obj: dict, path: Path) -> None:
    """torch.save to a temporary file, then an atomic rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, kind: str, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise SlamError(f"{path}: checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise SlamError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    found = ckpt.get("kind") if isinstance(ckpt, dict) else None
    if found != kind:
        raise SlamError(f"{path}: expected a {kind} checkpoint, found {found or 'an unknown kind'}")
    missing = [k for k in REQUIRED_KEYS[kind] if k not in ckpt]
    if missing:
        raise SlamError(
            f"{path}: a {kind} checkpoint without {', '.join(missing)} (damaged, or not made by slamctl)"
        )
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["config"], dict):
        raise SlamError(f"{path}: a {kind} checkpoint whose model or config is not a table")
    return ckpt
