import shutil

import pytest

from slamctl.errors import SlamError
from slamctl.training.bagset import load_bags, read_labels


def copy_bags(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_loads_splits(tiny_bags):
    train, test = load_bags(tiny_bags, "train"), load_bags(tiny_bags, "test")
    assert {b.bag_id for b in train}.isdisjoint({b.bag_id for b in test})
    assert len(train) + len(test) == 6


def test_missing_folder(tmp_path):
    with pytest.raises(SlamError, match=f"{tmp_path / 'nope'}: bag folder does not exist"):
        load_bags(tmp_path / "nope")


def test_labels_naming_absent_bag(tiny_bags, tmp_path):
    bags = copy_bags(tiny_bags, tmp_path / "b")
    shutil.rmtree(bags / "bag_0001")
    with pytest.raises(SlamError, match="bag_0001: bag named in labels.csv has no folder"):
        load_bags(bags)


def test_empty_bag_and_zero_byte_images(tiny_bags, tmp_path):
    bags = copy_bags(tiny_bags, tmp_path / "b")
    for f in (bags / "bag_0002").iterdir():
        f.write_bytes(b"")
    with pytest.raises(SlamError, match=r"bag_0002: bag holds no readable image \(\d+ zero-byte\)"):
        load_bags(bags)


def test_zero_byte_images_are_skipped_and_counted(tiny_bags, tmp_path):
    bags = copy_bags(tiny_bags, tmp_path / "b")
    (bags / "bag_0000" / "cell_00000.png").write_bytes(b"")
    bag = next(b for b in load_bags(bags) if b.bag_id == "bag_0000")
    assert bag.skipped == 1 and all(f.name != "cell_00000.png" for f in bag.files)


def test_bad_label_value_names_line(tiny_bags, tmp_path):
    bags = copy_bags(tiny_bags, tmp_path / "b")
    (bags / "labels.csv").write_text("bag_id,label\nbag_0000,yes\n")
    with pytest.raises(SlamError, match=r"labels.csv:2: label must be 0 or 1, got 'yes'"):
        read_labels(bags)


def test_reference_naming_without_labels_csv(tmp_path):
    for name in ("normal_1", "abnormal_1"):
        (tmp_path / name).mkdir()
    assert read_labels(tmp_path) == {"abnormal_1": 1, "normal_1": 0}


@pytest.mark.parametrize("bag_id", ["../x", "/abs/x", "a/b", "..", ".", "a\\b"])
def test_bag_ids_that_lead_outside_the_folder_are_refused(tiny_bags, tmp_path, bag_id):
    """A bag id names a folder: `train embed` would write EMB/<bag_id>.npz outside --out."""
    bags = copy_bags(tiny_bags, tmp_path / "b")
    (bags / "labels.csv").write_text(f"bag_id,label\nbag_0000,0\n{bag_id},1\n")
    with pytest.raises(SlamError, match=r"labels.csv:3: bag_id must be a folder name"):
        read_labels(bags)


def test_labels_with_a_bom_read_and_a_bag_named_twice_is_refused(tiny_bags, tmp_path):
    bags = copy_bags(tiny_bags, tmp_path / "b")
    text = (bags / "labels.csv").read_text()
    (bags / "labels.csv").write_text("\ufeff" + text)  # as a spreadsheet saves UTF-8 CSV
    assert len(read_labels(bags)) == 6
    (bags / "labels.csv").write_text(text + "bag_0000,1\n")
    with pytest.raises(SlamError, match=r"labels.csv:8: bag 'bag_0000' is named again \(first on line 2\)"):
        read_labels(bags)


def test_a_bag_missing_from_split_csv_is_refused_by_train_mil(tmp_path):
    from tests.training.test_mil import fake_embeddings, train_cli

    emb = fake_embeddings(tmp_path / "emb")
    (emb / "split.csv").write_text("bag_id,split\n" + "".join(f"bag_{i:02d},train\n" for i in range(15)))
    r = train_cli(emb, tmp_path / "run")
    assert r.code == 1 and "split.csv: bag 'bag_15' has no split" in r.err
