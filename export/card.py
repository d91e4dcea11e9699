"""The model card model: the facts the client needs, served by either server.

    slam_model_card/config.pbtxt          backend "python", no batching, KIND_CPU
    slam_model_card/<version>/model.py    Triton's Python backend: answers with card.json
                                          (export/triton_models/card_model.py)
    slam_model_card/<version>/card.json   threshold, sizes, checksums, health, provenance

The decision threshold, the training image size, the largest bag and the ONNX checksums
must reach `slamctl infer` from the production server and from the embedded one alike.
Config parameters cannot do that (PyTriton writes its own configs), so both serve this
third model: stock Triton with its Python backend, `slamctl serve` with PyTriton. One
request (CARD_REQUEST, ignored) returns the card as one JSON BYTES element (CARD).
"""

from __future__ import annotations

from pathlib import Path

from slamctl import contract
from slamctl.card import ServedCard

CARD_FILE = "card.json"


def card_path(repository: Path, version: int) -> Path:
    return Path(repository) / contract.MODEL_CARD / str(version) / CARD_FILE


def newest_card_path(repository: Path) -> Path:
    """card.json of the newest version, the one served (the repository must have one)."""
    from slamctl.export.layout import existing_versions

    return card_path(repository, existing_versions(Path(repository) / contract.MODEL_CARD)[-1])


def newest_card(repository: Path) -> ServedCard:
    """The served card: card.json of the newest version."""
    path = newest_card_path(repository)
    return ServedCard.from_json(path.read_bytes(), str(path))
