import csv
import shutil

import pytest
import torch

from slamctl.errors import SlamError
from slamctl.training.bagset import load_bags
from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint
from slamctl.training.encoder import Encoder, EncoderConfig
from slamctl.training.pretrain import learning_rate, pretrain
from slamctl.training.pretrain_config import METHODS, PretrainConfig

TINY = PretrainConfig(
    epochs=2, batch_size=8, warmup_epochs=1, image_size=40, crop_size=32, width=4, proj_dim=8, num_workers=0
)


def read_telemetry(run):
    with open(run / "telemetry.csv", newline="") as f:
        return list(csv.DictReader(f))


def initial_state(cfg):
    torch.manual_seed(cfg.seed)
    return Encoder(cfg.encoder_config()).state_dict()


@pytest.mark.parametrize("method", list(METHODS))
def test_two_steps_change_weights_and_write_telemetry(tiny_bags, tmp_path, method):
    cfg = PretrainConfig(**{**TINY.__dict__, "method": method})
    ckpt_path = pretrain(cfg, tiny_bags, tmp_path, max_steps=2)
    ckpt = load_checkpoint(ckpt_path, ENCODER_KIND)
    assert ckpt["step"] == 2 and ckpt["config"]["method"] == method
    before = initial_state(cfg)
    changed = [k for k, v in ckpt["model"].items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    rows = read_telemetry(tmp_path)
    assert [int(r["step"]) for r in rows] == [0, 1]
    for r in rows:
        assert float(r["loss_a"]) > 0 and float(r["grad_norm"]) > 0 and int(r["cells"]) > 0
        if METHODS[method] is None:
            assert r["loss_b"] == "" and r["grad_cos"] == ""
        else:
            cos = float(r["grad_cos"])
            assert -1 <= cos <= 1 and r["conflict"] == str(int(cos < 0))


def test_resume_continues_the_same_schedule(tiny_bags, tmp_path):
    cfg = TINY
    straight = load_checkpoint(pretrain(cfg, tiny_bags, tmp_path / "a"), ENCODER_KIND)
    pretrain(cfg, tiny_bags, tmp_path / "b", max_steps=3)  # stops mid-epoch 2
    resumed = load_checkpoint(pretrain(cfg, tiny_bags, tmp_path / "b", resume=True), ENCODER_KIND)
    assert resumed["step"] == straight["step"] > 3
    for k, v in straight["model"].items():
        assert torch.allclose(v.float(), resumed["model"][k].float(), atol=1e-5), k
    a, b = read_telemetry(tmp_path / "a"), read_telemetry(tmp_path / "b")
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert [r["step"] for r in b] == [str(i) for i in range(len(a))]


def test_resume_with_another_config_is_refused(tiny_bags, tmp_path):
    pretrain(TINY, tiny_bags, tmp_path, max_steps=1)
    with pytest.raises(SlamError, match="configuration differs in lr"):
        pretrain(PretrainConfig(**{**TINY.__dict__, "lr": 0.1}), tiny_bags, tmp_path, resume=True)


def test_unreadable_images_are_skipped_and_counted(tiny_bags, tmp_path):
    bags = tmp_path / "bags"
    shutil.copytree(tiny_bags, bags)
    train = load_bags(bags, "train")
    pos, neg = next(b for b in train if b.label), next(b for b in train if not b.label)
    pos.files[1].write_bytes(b"not a png")
    neg.files[2].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    pretrain(TINY, bags, tmp_path / "run", max_steps=100)
    rows = read_telemetry(tmp_path / "run")
    per_epoch = len(rows) // TINY.epochs
    assert sum(int(r["skipped"]) for r in rows[:per_epoch]) == 2


def test_no_negative_training_bag_is_refused(tiny_bags, tmp_path):
    bags = tmp_path / "bags"
    shutil.copytree(tiny_bags, bags)
    labels = (bags / "labels.csv").read_text().replace(",0\n", ",1\n")
    (bags / "labels.csv").write_text(labels)
    with pytest.raises(SlamError, match="no negative"):
        pretrain(TINY, bags, tmp_path / "run", max_steps=1)


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert learning_rate(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert learning_rate(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_encoder_config_of_supervised_has_classifier():
    assert PretrainConfig(method="supervised").encoder_config() == EncoderConfig(num_classes=2)


def test_max_cells_pretrains_on_a_subset(tiny_bags, tmp_path):
    every = pretrain(TINY, tiny_bags, tmp_path / "all", max_steps=100)
    few = pretrain(
        PretrainConfig(**{**TINY.__dict__, "max_cells": 16}), tiny_bags, tmp_path / "few", max_steps=100
    )
    cells = lambda run: sum(int(r["cells"]) for r in read_telemetry(run) if r["epoch"] == "0")  # noqa: E731
    assert abs(cells(tmp_path / "few") - 16) <= 1 and cells(tmp_path / "all") > 30
    assert load_checkpoint(few, ENCODER_KIND)["config"]["max_cells"] == 16
    assert load_checkpoint(every, ENCODER_KIND)["config"]["max_cells"] == 0
