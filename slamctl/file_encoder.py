"""The server's side of the encoded wire path (`slamctl infer --wire encoded`): cell files'
bytes in, embeddings and a reason per undecodable file out.

The files are decoded by the client's own code (slamctl.images.cell_or_reason, from bytes), so
the embeddings are those of the pixel path, and a bad file is the same per-cell skip with the
same reason. Used by the embedded server and by the production repository's Python-backend
model (export/triton_models/file_encoder_model.py), which runs the encoder through Triton (BLS). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from slamctl.images import cell_or_reason


def decode_files(files: list[bytes], image_size: int, size: int) -> tuple[list[np.ndarray], list[str]]:
    """The decodable files' images, and per file "" or the reason it was not decoded."""
    images, errors = [], []
    for i, data in enumerate(files):
        image, reason = cell_or_reason(Path(f"cell {i}"), image_size, size, data)
        if image is not None:
            images.append(image)
        errors.append(reason)
    return images, errors


def encode_files(
    files: list[bytes],
    encode: Callable[[np.ndarray], np.ndarray],
    dim: int,
    image_size: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(EMBEDDINGS (n, dim) float32, zero for an undecodable file; CELL_ERRORS (n, 1) bytes)."""
    images, errors = decode_files(files, image_size, size)
    embeddings = np.zeros((len(files), dim), dtype=np.float32)
    decoded = [i for i, e in enumerate(errors) if not e]
    if decoded:
        embeddings[decoded] = encode(np.stack(images))
    return embeddings, np.array([[e.encode()] for e in errors], dtype=np.object_).reshape(len(files), 1)
