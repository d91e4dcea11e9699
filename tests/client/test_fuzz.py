"""Seeded fuzzing of cell files: whatever a file holds, decoding it is a cell or a per-cell
skip with a reason, never an exception of another kind (and never a decompression bomb)."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from slamctl.errors import SlamError
from slamctl.images import prepare_cell

CASES = 300


def valid_cells() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = {}
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("BMP", ".bmp")):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        out[suffix] = buf.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncation, bit flips, or a header's size fields set huge, as a seeded choice."""
    b = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # truncated anywhere
        return bytes(b[: rng.integers(0, len(b))])
    if kind == 1:  # a few flipped bits, header included
        for i in rng.integers(0, min(len(b), 64 if rng.random() < 0.5 else len(b)), size=rng.integers(1, 8)):
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:  # a 32-bit field of the first 32 bytes set huge (PNG IHDR width/height, BMP sizes, ...)
        at = int(rng.integers(0, 28))
        b[at : at + 4] = struct.pack(">I", int(rng.integers(2**15, 2**31)))
        return bytes(b)
    return bytes(rng.integers(0, 256, size=int(rng.integers(0, 2048)), dtype=np.uint8))  # noise


def test_mutated_cells_decode_or_are_skipped_with_a_reason(tmp_path):
    rng = np.random.default_rng(1)
    cells = valid_cells()
    decoded = skipped = 0
    for i in range(CASES):
        suffix = list(cells)[i % len(cells)]
        path = tmp_path / f"cell_{i:03d}{suffix}"
        path.write_bytes(mutate(cells[suffix], rng))
        try:
            out = prepare_cell(path, 48, 40)
        except SlamError as e:
            assert str(e).startswith(str(path)) and len(str(e)) > len(str(path)) + 2, (
                e
            )  # names the file, says why
            skipped += 1
        except ValueError as e:  # an image too small to crop: the client lists it as skipped with this reason
            assert str(e), e
            skipped += 1
        else:
            assert out.shape == (40, 40, 3) and out.dtype == np.uint8
            decoded += 1
    assert decoded + skipped == CASES and skipped > CASES // 3  # the mutations do break most files


@pytest.mark.slow
def test_a_bag_of_mutated_cells_completes(server, tmp_path):
    """The same mutations in one bag through `slamctl infer` and the real server: the bag
    completes, every broken file is listed with a reason."""
    import json

    from tests.conftest import run_cli

    rng = np.random.default_rng(2)
    bag = tmp_path / "bag"
    bag.mkdir()
    for i, (suffix, data) in enumerate(list(valid_cells().items()) * 10):
        (bag / f"cell_{i:03d}{suffix}").write_bytes(data if i % 4 == 0 else mutate(data, rng))
    r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path / "out")
    assert r.code == 0, r.err
    result = json.loads((tmp_path / "out" / "bag.json").read_text())
    assert result["cells"] + len(result["skipped"]) == 40 and result["cells"] >= 10
    assert all(s["reason"] for s in result["skipped"])
