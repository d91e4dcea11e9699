import csv

import numpy as np
import pytest
from PIL import Image

from slamctl.errors import SlamError
from slamctl.training.bagset import load_bags, read_cell_truth
from slamctl.training.synthetic import SynthConfig, generate, positives_in_bag


def test_positives_rule():
    assert positives_in_bag(1000, 0.005) == 5
    assert positives_in_bag(100, 0.005) == 1  # at least one
    assert positives_in_bag(3, 1.0) == 3


def test_witness_rate_and_at_least_one_positive(tmp_path):
    cfg = SynthConfig(bags=8, cells_per_bag=30, witness_rate=0.01, image_size=24, seed=3)
    assert generate(cfg, tmp_path)
    truth = read_cell_truth(tmp_path)
    bags = load_bags(tmp_path)
    assert sum(b.label for b in bags) == 4
    for bag in bags:
        pos = sum(truth[(bag.bag_id, f.name)] for f in bag.files)
        if bag.label:
            assert pos == positives_in_bag(len(bag.files), 0.01) >= 1
        else:
            assert pos == 0
        lo, hi = 30 * 0.8, 30 * 1.2
        assert lo - 1 <= len(bag.files) <= hi + 1
    img = np.asarray(Image.open(bags[0].files[0]))
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8


def test_split_is_stratified_and_generation_is_reproducible(tmp_path):
    cfg = SynthConfig(bags=8, cells_per_bag=5, image_size=24, test_fraction=0.25)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    rows = list(csv.DictReader(open(tmp_path / "a" / "split.csv")))
    labels = {r["bag_id"]: r["label"] for r in csv.DictReader(open(tmp_path / "a" / "labels.csv"))}
    test = [labels[r["bag_id"]] for r in rows if r["split"] == "test"]
    assert sorted(test) == ["0", "1"]
    a = (tmp_path / "a" / "bag_0000" / "cell_00000.png").read_bytes()
    assert a == (tmp_path / "b" / "bag_0000" / "cell_00000.png").read_bytes()


def test_rerun_is_a_no_op_and_a_different_config_needs_force(tmp_path):
    cfg = SynthConfig(bags=2, cells_per_bag=3, image_size=24)
    assert generate(cfg, tmp_path)
    assert not generate(cfg, tmp_path)
    with pytest.raises(SlamError, match="--force"):
        generate(SynthConfig(bags=2, cells_per_bag=4, image_size=24), tmp_path)
    assert generate(SynthConfig(bags=2, cells_per_bag=4, image_size=24), tmp_path, force=True)


def test_null_setting_draws_abnormal_like_normal(tmp_path):
    from slamctl.training.synthetic import abnormal_type

    assert abnormal_type(SynthConfig(null=True)) is None
    assert abnormal_type(SynthConfig(null=False)) is not None


@pytest.mark.parametrize(
    "field,value", [("bags", 1), ("witness_rate", 0.0), ("image_size", 8), ("difficulty", 2.0)]
)
def test_bad_config_is_refused(tmp_path, field, value):
    with pytest.raises(SlamError, match=field.replace("_", "-")):
        generate(SynthConfig(**{field: value}), tmp_path)
