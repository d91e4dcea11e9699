"""Decoding cell images into uint8 RGB arrays; torch-free, shared by training and client."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from slamctl.errors import SlamError

# cell image files, for training and inference alike
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
# The largest cell image decoded, in pixels: a single-cell crop is 250 x 250 in the Bone
# Marrow set; 2048 x 2048 leaves room for scans at other resolutions. A file declaring more
# (a decompression bomb of 4 KB can declare 30000 x 30000) is refused from its header,
# before any pixel is decoded.
MAX_CELL_PIXELS = 2048 * 2048
# A cell is a crop about as wide as it is high; fitting the short side of a 1 x 4,194,304 px
# strip (16 KB, under the pixel cap) to the model's size would ask for an 87 GB resize. Files
# more elongated than this are refused from the header, so fit_square's output stays under
# MAX_ASPECT_RATIO x size^2 pixels.
MAX_ASPECT_RATIO = 4
# The largest cell image file read: 2048 x 2048 RGBA at 16 bits, uncompressed, is 32 MiB; a
# larger (or sparse) file is refused from its size, before a byte is read.
MAX_CELL_FILE_BYTES = 32 * 1024 * 1024
# Pillow's warnings on a damaged file (corrupt EXIF, above 89 Mpx) would reach the user's
# terminal; such a file is decoded or skipped with a reason instead. Set once at import, not
# per call: catch_warnings is not thread-safe and cells are decoded in a thread pool.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode PIL opens: gray, RGBA/LA/P (alpha over white), CMYK, 16-bit."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _too_large(path: Path, size: int) -> SlamError:
    return SlamError(
        f"{path}: file of {size:,} bytes exceeds the {MAX_CELL_FILE_BYTES:,} a cell image may have"
    )


def read_cell_file(path: Path) -> bytes:
    """A cell image file's bytes; SlamError naming it if it is larger than MAX_CELL_FILE_BYTES
    (checked before reading, and again while reading: a file that grows is cut off)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CELL_FILE_BYTES:
                raise _too_large(path, size)
            data = f.read(MAX_CELL_FILE_BYTES + 1)
    except OSError as e:
        raise SlamError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_CELL_FILE_BYTES:
        raise _too_large(path, len(data))
    return data


def check_header(path: Path, width: int, height: int) -> None:
    """Refuse, from the declared size alone, images too large or too elongated to be a cell."""
    if width * height > MAX_CELL_PIXELS:
        raise SlamError(
            f"{path}: image of {width} x {height} px exceeds the {MAX_CELL_PIXELS:,} pixels a cell image may have"
        )
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        raise SlamError(
            f"{path}: image of {width} x {height} px is more elongated than the {MAX_ASPECT_RATIO}:1 "
            "a cell image may be"
        )


def load_rgb(path: Path, data: bytes | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB of an image file, or of its bytes `data` when given (the server's
    side of the encoded wire path); SlamError naming `path` if it cannot be read."""
    if data is None:
        data = read_cell_file(path)
    elif len(data) > MAX_CELL_FILE_BYTES:
        raise _too_large(path, len(data))
    source = io.BytesIO(data)
    try:
        with Image.open(source) as img:
            check_header(path, *img.size)  # from the header: nothing decoded yet
            img = ImageOps.exif_transpose(img)
            return np.asarray(to_rgb(img), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # Pillow names the file, or the bytes object, in some messages: the error names it once
        detail = str(e).replace(f" {str(path)!r}", "").replace(f" {source!r}", "")
        raise SlamError(f"{path}: not a readable image ({type(e).__name__}: {detail})") from None


def fit_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is `size`, then center-crop to (size, size, 3).

    The crop offsets round down, as in the training eval transform; an image already
    size x size is returned unchanged.
    """
    h, w = rgb.shape[:2]
    if min(h, w) != size:
        scale = size / min(h, w)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new, Image.BILINEAR))
        h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Center crop (H, W, 3) -> (size, size, 3), offsets rounded down (the eval transform)."""
    h, w = rgb.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image of {w}x{h} px is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


def prepare_cell(path: Path, image_size: int, crop: int, data: bytes | None = None) -> np.ndarray:
    """A cell image as the encoder sees it, uint8 (crop, crop, 3): RGB, the shorter side
    resized to the training image size (the served card's `image_size`) and center-cropped
    square, as training decodes cells, then center-cropped to the model's input size. With
    `data`, the file's bytes are decoded instead of reading `path` (named in errors only).
    Used alike by `train embed`, the client and the server's file encoder.
    """
    return np.ascontiguousarray(center_crop(fit_square(load_rgb(path, data), image_size), crop))


def cell_or_reason(
    path: Path, image_size: int, crop: int, data: bytes | None = None
) -> tuple[np.ndarray | None, str]:
    """prepare_cell, or (None, why) for a file that is not a readable cell image: the one
    per-cell skip of the client and of the server's file encoder, with the same reasons."""
    try:
        return prepare_cell(path, image_size, crop, data), ""
    except SlamError as e:
        return None, str(e).split(": ", 1)[-1]
    except ValueError as e:
        return None, str(e)
