"""The model card as the client reads it: the facts every served model carries.

Written by the export (export/card.py), served by the `slam_model_card` model of either
server, read by `slamctl infer`: the decision threshold chosen on validation bags, the
encoder's input size S and training image size, the largest bag, the checksums of the
served ONNX files and configs, and whether the aggregator was flagged degenerate.
"""

from __future__ import annotations

import hashlib
import json

from slamctl.errors import SlamError

REQUIRED = (
    "version",
    "threshold",
    "threshold_rule",
    "input_size",
    "image_size",
    "dim",
    "features",
    "max_bag_cells",
    "degenerate",
    "sha256",
    "config_sha256",
)
# what a decision, or the server's resource use, depends on: the model id covers all of it
DECIDING = (
    "sha256",
    "config_sha256",
    "threshold",
    "input_size",
    "image_size",
    "dim",
    "features",
    "max_bag_cells",
)


def parse_card(data: bytes | str, source: str) -> dict:
    """A card from its JSON; one-line error naming `source` if it is not a card."""
    try:
        card = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SlamError(f"{source}: the model card is not JSON ({e})") from None
    missing = [k for k in REQUIRED if not isinstance(card, dict) or k not in card]
    if missing:
        raise SlamError(f"{source}: the model card lacks {', '.join(missing)}")
    return card


def model_id(card: dict) -> str:
    """The served model's identity: the sha256 of what decides, in canonical JSON: both ONNX
    files' sha256, every served config.pbtxt's sha256 (batch sizes, bag limit, TensorRT
    settings), the decision threshold, the input and image sizes, D, the features and the
    largest bag. A repository resealed with another threshold or config has another id.
    `slamctl infer --expect-model` pins it; export and health print it."""
    text = json.dumps({k: card[k] for k in DECIDING}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def client_version() -> str:
    """The installed slamctl's version (recorded with every result)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slamctl")
    except PackageNotFoundError:
        return "unknown"
