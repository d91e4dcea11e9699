"""Preprocessing and bag discovery of the client (no server needed)."""

import numpy as np
import pytest
import torch
from PIL import Image

from slamctl.client.bags import find_bags
from slamctl.errors import SlamError
from slamctl.images import fit_square, load_rgb, prepare_cell
from slamctl.training.encoder import center_crop, uint8_to_input


def test_client_pixels_equal_the_training_pipeline(tiny_bags):
    """The client's uint8 crop (and `train embed`'s, which calls the same prepare_cell) is exactly
    what pretraining's eval view feeds the encoder: decoded at the image size, center-cropped."""
    for path in sorted((tiny_bags / "bag_0000").iterdir())[:3]:
        client = prepare_cell(path, image_size=40, crop=32)
        batch = torch.from_numpy(fit_square(load_rgb(path), 40)[None].copy())
        training = center_crop(uint8_to_input(batch), 32)[0]  # (3, 32, 32) float in [0, 1]
        assert client.shape == (32, 32, 3) and client.dtype == np.uint8
        assert torch.equal(torch.from_numpy(client).permute(2, 0, 1).float() / 255.0, training)


def test_other_sizes_follow_the_documented_rule(tmp_path):
    big = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    out = prepare_cell(tmp_path / "big.png", image_size=40, crop=32)
    assert out.shape == (32, 32, 3)
    # already square at the training size: only center-cropped
    square = big[:40, :40]
    Image.fromarray(square).save(tmp_path / "square.png")
    assert np.array_equal(prepare_cell(tmp_path / "square.png", image_size=40, crop=32), square[4:36, 4:36])
    small = big[:10, :10]
    Image.fromarray(small).save(tmp_path / "small.png")
    assert prepare_cell(tmp_path / "small.png", image_size=40, crop=32).shape == (32, 32, 3)


@pytest.mark.parametrize(
    "mode,suffix",
    [
        ("L", ".png"),
        ("RGBA", ".png"),
        ("CMYK", ".jpg"),
        ("P", ".png"),
        ("I;16", ".tif"),
        ("LA", ".png"),
        ("RGB", ".tiff"),
    ],
)
def test_every_image_mode_becomes_rgb(tmp_path, mode, suffix):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # mode I;16
    else:
        img = rgb.convert(mode)
    img.save(tmp_path / f"cell{suffix}")
    out = prepare_cell(tmp_path / f"cell{suffix}", image_size=40, crop=32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit scaled to 8 bits, not clipped
        assert out.max() > 200


def test_find_bags(tmp_path, tiny_bags):
    assert find_bags(tiny_bags / "bag_0000") == [tiny_bags / "bag_0000"]
    assert len(find_bags(tiny_bags)) == 6
    with pytest.raises(SlamError, match="no such file or folder"):
        find_bags(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlamError, match="holds neither cell images"):
        find_bags(tmp_path / "empty")


def test_bmp_cells_make_a_bag_as_in_training(tmp_path):
    """One list of image suffixes: a folder of .bmp cells is a bag for inference as for training."""
    from slamctl.training.bagset import list_images

    bag = tmp_path / "bag"
    bag.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bag / "c.bmp")
    assert find_bags(bag) == [bag]
    assert [p.name for p in list_images(bag)[0]] == ["c.bmp"]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height in its header and holds no pixel data (a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10_000, 30_000])
def test_huge_declared_images_are_refused_from_the_header(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with pytest.raises(
        SlamError, match=r"bomb.png: (image of .* exceeds the 4,194,304 pixels|not a readable image)"
    ):
        prepare_cell(path, 40, 32)


def test_a_stray_image_beside_bag_folders_is_refused(tiny_bags, tmp_path):
    import shutil

    for bag in ("bag_0000", "bag_0001"):
        shutil.copytree(tiny_bags / bag, tmp_path / bag)
    assert find_bags(tmp_path) == [tmp_path / "bag_0000", tmp_path / "bag_0001"]
    shutil.copy(next((tiny_bags / "bag_0000").iterdir()), tmp_path / "stray.png")
    with pytest.raises(
        SlamError, match=r"holds both cell images \(stray.png\) and bag folders \(bag_0000, ...\)"
    ):
        find_bags(tmp_path)


def test_every_entry_of_a_bag_is_a_cell_or_a_listed_skip(tmp_path):
    """A link loop, a dangling link, a FIFO, a folder and a GIF never fail the bag: they are
    listed as skipped with a reason; the cells are the files with a training image suffix."""
    import os

    from slamctl.client.bags import list_cells

    bag = tmp_path / "bag"
    bag.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bag / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bag / "b.gif")
    os.symlink(bag / "loop", bag / "loop")  # a link to itself: ELOOP
    os.symlink(bag / "gone.png", bag / "dangling.png")
    os.mkfifo(bag / "pipe.png")
    (bag / "sub").mkdir()
    (bag / ".hidden.png").write_bytes(b"")
    cells, skipped = list_cells(bag)
    assert cells == ["a.png"]
    assert [name for name, _ in skipped] == ["b.gif", "dangling.png", "loop", "pipe.png", "sub"]
    assert all(reason for _, reason in skipped)


@pytest.mark.parametrize("width, height", [(1, 4_194_304), (4_194_304, 1), (1000, 200)])
def test_elongated_images_are_refused_from_the_header(tmp_path, width, height):
    """A 1 x 4,194,304 px strip is under the pixel cap, but fitting its short side to the
    model's size would ask for an 87 GB resize: refused before any pixel is decoded."""
    path = tmp_path / "strip.png"
    path.write_bytes(png_header(width, height))
    with pytest.raises(
        SlamError, match=rf"strip.png: image of {width} x {height} px is more elongated than the 4:1"
    ):
        prepare_cell(path, 40, 32)


def test_an_elongated_but_allowed_image_is_fitted_within_bounds(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((10, 40, 3), 90, np.uint8)).save(path)  # 4:1, the limit
    assert prepare_cell(path, 40, 32).shape == (32, 32, 3)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path):
    from slamctl.images import MAX_CELL_FILE_BYTES, read_cell_file

    path = tmp_path / "sparse.png"
    with open(path, "wb") as f:  # sparse: 300 MB declared, nothing on disk
        f.truncate(300 * 1024 * 1024)
    with pytest.raises(
        SlamError, match=r"sparse.png: file of 314,572,800 bytes exceeds the 33,554,432 a cell"
    ):
        prepare_cell(path, 40, 32)
    with pytest.raises(SlamError, match="exceeds the"):
        load_rgb(path, b"\0" * (MAX_CELL_FILE_BYTES + 1))  # the server's side: bytes sent by a client
    with pytest.raises(SlamError, match=r"missing.png: cannot read \(No such file or directory\)"):
        read_cell_file(tmp_path / "missing.png")
