"""Embedding every cell of every bag with a pretrained encoder, one `.npz` per bag.

`EMB/<bag_id>.npz` holds `features` float32 (N, D) and `names` (the cell file names, in
the same order), plus `skipped` (unreadable files). Files are written atomically; a bag
already embedded by the same encoder with the same features is skipped, so an
interrupted run resumes. `EMB/embedding.json` records the encoder (slamctl's checkpoint or a
foundation encoder's weights: name, path and sha256), the features (h, z or cls), D and the
eval transform. Everything loads without pickle.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from slamctl.errors import SlamError
from slamctl.files import atomic_path, write_atomic
from slamctl.images import cell_or_reason
from slamctl.training.bagset import Bag, load_bags
from slamctl.training.embed_config import EmbedConfig
from slamctl.training.encoder import uint8_to_input
from slamctl.training.extractor import open_extractor

META_FILE = "embedding.json"


class _CellImages(Dataset):
    """A bag's cells as the served encoder gets them: slamctl/images.py's prepare_cell, the
    client's own decoding (decoded at the image size, center-cropped to the input size)."""

    def __init__(self, files: tuple[Path, ...], image_size: int, crop_size: int) -> None:
        self.files, self.image_size, self.crop_size = files, image_size, crop_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int]:
        return cell_or_reason(self.files[i], self.image_size, self.crop_size)[0], i


def _collate(items):
    ok = [(img, i) for img, i in items if img is not None]
    bad = [i for img, i in items if img is None]
    images = torch.from_numpy(np.stack([img for img, _ in ok])) if ok else None
    return images, [i for _, i in ok], bad


@dataclass(frozen=True)
class EmbeddedBag:
    bag_id: str
    features: np.ndarray  # float32 (N, D)
    names: list[str]


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, **arrays)


MAX_EMBEDDING_BYTES = 1 << 30  # one bag's features: 500,000 cells of 512 float32 values


def _declared(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an .npy member from its header, before any of its data is inflated."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (
            np.lib.format.read_array_header_1_0(f)
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0(f)
        )
    return shape, dtype


def load_embedded(path: Path, dim: int | None = None) -> EmbeddedBag:
    """One bag's embeddings (no pickle); one-line errors for a bad file or dimension, checked
    from the arrays' headers before their data is inflated, and for non-finite values."""
    try:
        with zipfile.ZipFile(path) as zf:
            shape, dtype = _declared(zf, "features.npy")
            names_shape, _ = _declared(zf, "names.npy")
        if len(shape) != 2 or dtype.kind != "f" or len(names_shape) != 1 or shape[0] != names_shape[0]:
            raise SlamError(
                f"{path}: expected float features (N, D) for the {names_shape} names, got {dtype} {shape}"
            )
        if dim is not None and shape[1] != dim:
            raise SlamError(f"{path}: expected embeddings of dimension {dim}, got {shape[1]}")
        if shape[0] * shape[1] * 4 > MAX_EMBEDDING_BYTES:
            raise SlamError(
                f"{path}: features {shape} exceed the {MAX_EMBEDDING_BYTES:,} bytes one bag's embeddings may have"
            )
        with np.load(path, allow_pickle=False) as z:
            features, names = z["features"], [str(n) for n in z["names"]]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise SlamError(f"{path}: not a slamctl embedding file ({type(e).__name__}: {e})") from None
    if features.shape[0] == 0:
        raise SlamError(f"{path}: bag has zero cells")
    if not np.isfinite(features).all():
        raise SlamError(f"{path}: {int((~np.isfinite(features)).sum())} embedding values are NaN or infinite")
    return EmbeddedBag(path.stem, features.astype(np.float32, copy=False), names)


def read_meta(emb_dir: Path) -> dict:
    path = Path(emb_dir) / META_FILE
    if not path.is_file():
        raise SlamError(f"{path}: missing (embed the bags first: slamctl train embed)")
    return json.loads(path.read_text())


@torch.no_grad()
def embed_bags(
    encoder: str | Path,
    bags_dir: Path,
    out: Path,
    *,
    weights: Path | None = None,
    interpolate: bool = False,
    features: str = EmbedConfig.features,
    batch_size: int = EmbedConfig.batch_size,
    num_workers: int = EmbedConfig.num_workers,
    device: str | None = None,
    on_bag: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Embed all bags of `bags_dir` with `encoder` (a pretraining checkpoint, or a foundation
    encoder's name with its `weights`); returns the metadata written to EMB/embedding.json."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    ex = open_extractor(encoder, weights=weights, features=features, device=dev, interpolate=interpolate)
    bags: list[Bag] = load_bags(bags_dir)
    meta = {
        "encoder": str(ex.path),  # the checkpoint, or the foundation encoder's weights file
        "encoder_name": ex.encoder,  # slamctl, or the foundation encoder's name
        "encoder_sha256": ex.sha256,
        "features": ex.features,
        "dim": ex.dim,
        "image_size": ex.image_size,
        "crop_size": ex.crop_size,
        "method": ex.pretraining["method"],
        "interpolated": interpolate,  # a foundation encoder's position embedding resized at load
    }
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META_FILE
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if (old["encoder_sha256"], old["features"]) != (meta["encoder_sha256"], ex.features):
            raise SlamError(f"{out}: holds embeddings of another encoder or features; use a new folder")
    write_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    for k, bag in enumerate(bags):
        path = out / f"{bag.bag_id}.npz"
        if not path.exists():
            loader = DataLoader(
                _CellImages(bag.files, ex.image_size, ex.crop_size),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=_collate,
            )
            chunks, kept, skipped = [], [], []
            for images, ok, bad in loader:
                skipped += [bag.files[i].name for i in bad]
                if images is None:
                    continue
                chunks.append(ex.module(uint8_to_input(images.to(dev))).float().cpu().numpy())
                kept += [bag.files[i].name for i in ok]
            if not kept:
                raise SlamError(f"{bags_dir}/{bag.bag_id}: no readable cell image")
            save_npz(
                path,
                features=np.concatenate(chunks),
                names=np.array(kept),
                skipped=np.array(skipped, dtype=str),
            )
        if on_bag:
            on_bag(k + 1, len(bags), bag.bag_id)
    return meta
