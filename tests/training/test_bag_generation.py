import csv

import numpy as np
import pytest
from PIL import Image

from slamctl.errors import SlamError
from slamctl.training.bag_generation import BagSpec, make_bags
from slamctl.training.bagset import load_bags


@pytest.fixture
def class_root(tmp_path):
    root = tmp_path / "cells"
    for cls, n in (("LYT", 40), ("BLA", 6), ("NGS", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / cls / f"{cls.lower()}_{i}.png")
    return root


def test_bags_from_class_folders(class_root, tmp_path):
    spec = BagSpec(witness_rate=0.2, bags=4, cells_per_bag=10, test_fraction=0.5)
    counts = make_bags(class_root, spec, tmp_path / "bags")
    assert counts == {"bags": 4, "cells": 40, "positives": 4, "copied": 0}
    rows = list(csv.DictReader(open(tmp_path / "bags" / "cells.csv")))
    sources = [r["source"] for r in rows]
    assert len(set(sources)) == len(sources)  # no cell in two bags
    bags = load_bags(tmp_path / "bags")
    for bag in bags:
        assert len(bag.files) == 10 and all(f.is_symlink() for f in bag.files)
        pos = sum(int(r["positive"]) for r in rows if r["bag_id"] == bag.bag_id)
        assert pos == (2 if bag.label else 0)
        assert all("BLA" in r["source"] for r in rows if r["bag_id"] == bag.bag_id and r["positive"] == "1")
    assert len(load_bags(tmp_path / "bags", "test")) == 2


def test_pool_too_small_is_refused(class_root, tmp_path):
    spec = BagSpec(witness_rate=0.5, bags=4, cells_per_bag=10)
    with pytest.raises(
        SlamError, match=r"BLA: pool too small, 4 bags of 10 cells need 10 cells of class BLA, found 6"
    ):
        make_bags(class_root, spec, tmp_path / "bags")


def test_missing_class_lists_what_exists(class_root, tmp_path):
    with pytest.raises(SlamError, match=r"EBO: class folder does not exist \(found: BLA, LYT, NGS\)"):
        make_bags(class_root, BagSpec(positive_class="EBO"), tmp_path / "bags")
