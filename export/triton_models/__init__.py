"""The Python-backend models of the production repository, as real modules: stock Triton runs
them as <model>/<version>/model.py (export/repository.py copies them there); slamctl never
imports them (they import Triton's `triton_python_backend_utils`).

    card_model.py          slam_model_card: answers every request with card.json
    file_encoder_model.py  slam_encoder_files: cell files in, embeddings out (BLS to slam_encoder)

Each is named by its row of the contract's table (slamctl/contract.py SERVED, `source`).

They name the contract's models and tensors as literals, each beside its name in
slamctl/contract.py (tests/export hold them equal): the card model runs where slamctl is not
importable.
"""

from __future__ import annotations

from pathlib import Path


def source(name: str) -> bytes:
    """The model file `name` (a row's `source`), as the repository gets it."""
    return (Path(__file__).parent / name).read_bytes()
