import numpy as np
from PIL import Image

from slamctl.training.bagset import load_bags
from tests.conftest import run_cli


def test_synth_writes_bags_and_rerun_reuses(tmp_path):
    args = ["data", "synth", "--out", tmp_path, "--bags", 4, "--cells-per-bag", 5, "--image-size", 24]
    r = run_cli(*args)
    assert r.code == 0, r.err
    assert "wrote 4 bags" in r.err
    assert len(load_bags(tmp_path)) == 4
    r = run_cli(*args)
    assert r.code == 0 and "already there" in r.err


def test_synth_bad_value_is_one_line(tmp_path):
    r = run_cli("data", "synth", "--out", tmp_path, "--witness-rate", "0")
    assert r.code == 1
    assert r.err.strip().count("\n") == 0 and "--witness-rate" in r.err and "Traceback" not in r.err


def test_bags_from_class_folders(tmp_path):
    for cls, n in (("LYT", 12), ("BLA", 2)):
        (tmp_path / "cells" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cells" / cls / f"{i}.png")
    r = run_cli(
        "data",
        "bags",
        "--cells",
        tmp_path / "cells",
        "--out",
        tmp_path / "bags",
        "--witness-rate",
        "0.2",
        "--bags",
        2,
        "--cells-per-bag",
        5,
        "--test-fraction",
        0,
    )
    assert r.code == 0, r.err
    assert "wrote 2 bags (10 cells, 1 positive, 0 copied)" in r.err


def test_bags_missing_root_is_one_line(tmp_path):
    r = run_cli("data", "bags", "--cells", tmp_path / "none", "--out", tmp_path / "bags")
    assert r.code == 1 and "class folder does not exist" in r.err and r.err.strip().count("\n") == 0
