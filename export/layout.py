"""The model repository's folders: which versions a model has, and which files a version holds.
Read by the writer, validation, the server and the card's lookup alike.
"""

from __future__ import annotations

from pathlib import Path


def version_files(repository: Path) -> list[str]:
    """Every file in a version folder (MODEL/<n>/...), relative: what the manifest must hash
    (weights moved into an ONNX external-data file beside model.onnx included); Python's
    bytecode caches, which a Python-backend server may write there, left out."""
    return sorted(
        str(p.relative_to(repository))
        for p in Path(repository).glob("*/[0-9]*/**/*")
        if p.is_file() and p.parts[len(Path(repository).parts) + 1].isdigit() and "__pycache__" not in p.parts
    )


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
