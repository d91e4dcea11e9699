"""The model card as the client reads it: the facts every served model carries.

Written by the export (export/card.py), served by the `slam_model_card` model of either
server, read by `slamctl infer`: the decision threshold chosen on validation bags, the
encoder's input size S and training image size, the largest bag, the checksums of the
served ONNX files and configs, and whether the aggregator was flagged degenerate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from slamctl.errors import SlamError

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


@dataclass(frozen=True)
class ServedCard:
    """card.json: written once by the export, served as is, read by the client and validation."""

    version: int
    threshold: float  # on P(abnormal), chosen on validation bags by `train mil`
    threshold_rule: str
    input_size: int  # S, the encoder's input
    image_size: int  # cells are decoded at this size, then center-cropped to S
    dim: int  # D
    features: str
    aggregator: str
    max_bag_cells: int
    degenerate: bool  # `train mil` flagged the aggregator (uniform attention, constant output)
    health: dict  # training/health.py on the validation bags: entropy, spread, reasons
    sha256: dict  # ONNX model -> sha256 of its model.onnx
    config_sha256: dict  # served model -> sha256 of its config.pbtxt
    precision: dict  # ONNX model -> fp32 or int8
    device: str  # gpu (TensorRT) or cpu
    exported_at: str  # UTC, ISO 8601

    # what a decision, or the server's resource use, depends on: the model id covers all of it
    DECIDING: ClassVar = (
        "sha256",
        "config_sha256",
        "threshold",
        "input_size",
        "image_size",
        "dim",
        "features",
        "max_bag_cells",
    )

    @property
    def model_id(self) -> str:
        """The served model's identity: the sha256 of what decides, in canonical JSON: both ONNX
        files' sha256, every served config.pbtxt's sha256 (batch sizes, bag limit, TensorRT
        settings), the decision threshold, the input and image sizes, D, the features and the
        largest bag. A repository resealed with another threshold or config has another id.
        `slamctl infer --expect-model` pins it; export and health print it."""
        text = json.dumps({k: getattr(self, k) for k in self.DECIDING}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: bytes | str, source: str) -> ServedCard:
        """A card from its JSON; one-line error naming `source` and the field if it is not one."""
        try:
            card = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise SlamError(f"{source}: the model card is not JSON ({e})") from None
        if not isinstance(card, dict):
            raise SlamError(f"{source}: the model card is not a JSON object")
        missing = [f.name for f in fields(cls) if f.name not in card]
        if missing:
            raise SlamError(f"{source}: the model card lacks {', '.join(missing)}")
        for f in fields(cls):
            value, types = card[f.name], _TYPES[f.type]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise SlamError(f"{source}: model card field {f.name}: expected {f.type}, got {value!r}")
        return cls(**{f.name: card[f.name] for f in fields(cls)})


def client_version() -> str:
    """The installed slamctl's version (recorded with every result)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slamctl")
    except PackageNotFoundError:
        return "unknown"
