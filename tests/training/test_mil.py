import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from slamctl.errors import SlamError
from slamctl.training.checkpoint import ENCODER_KIND, MIL_KIND, load_checkpoint
from slamctl.training.embed import save_npz
from slamctl.training.mil import MilConfig, load_mil, train_mil
from tests.conftest import run_cli


def fake_embeddings(folder, n_bags=16, dim=6, seed=0, signal=3.0):
    """Bags whose abnormal ones hold a few cells shifted along one axis: learnable."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "embedding.json").write_text(
        f'{{"dim": {dim}, "features": "z", "method": "test", "encoder_sha256": "x"}}'
    )
    rows = []
    for i in range(n_bags):
        label = i % 2
        x = rng.normal(size=(20, dim)).astype(np.float32)
        if label:
            x[:3, 0] += signal
        save_npz(folder / f"bag_{i:02d}.npz", features=x, names=np.array([f"c{j}.png" for j in range(20)]))
        rows.append((f"bag_{i:02d}", label))
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("bag_id", "label"), *rows])
    return folder


def train_cli(emb, out, *options):
    """`slamctl train mil` on a fake embedding folder."""
    return run_cli(
        "train", "mil", "--embeddings", emb, "--labels", emb / "labels.csv", "--out", out, *options
    )


@pytest.mark.parametrize("aggregator", ["pamil", "abmil"])
def test_trains_and_selects_on_validation(tmp_path, aggregator):
    emb = fake_embeddings(tmp_path / "emb")
    cfg = MilConfig(aggregator=aggregator, epochs=15, patience=15)
    path = train_mil(cfg, emb, emb / "labels.csv", tmp_path / "run")
    model, ckpt = load_mil(path)
    assert ckpt["kind"] == MIL_KIND and ckpt["val_bags"] == 4 and ckpt["fit_bags"] == 12
    history = list(csv.DictReader(open(tmp_path / "run" / "mil_history.csv")))
    best = min(history, key=lambda r: float(r["val_loss"]))
    assert ckpt["best"]["epoch"] == int(best["epoch"])
    assert float(history[-1]["train_loss"]) < float(history[0]["train_loss"])
    out = model(torch.zeros(5, 6))
    assert out.attention.shape == (5,)
    assert 0 < ckpt["threshold"] < 1 and ckpt["threshold_rule"] == "best F1 on the validation bags"
    assert set(ckpt["health"]) >= {"attention_entropy", "prob_spread", "degenerate"}


def test_target_sensitivity_sets_the_rule(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    path = train_mil(MilConfig(epochs=2, target_sensitivity=1.0), emb, emb / "labels.csv", tmp_path / "run")
    _, ckpt = load_mil(path)
    assert ckpt["threshold_rule"] == "highest threshold with sensitivity >= 1 on the validation bags"


def test_bad_target_sensitivity_is_one_line(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    r = train_cli(
        emb,
        tmp_path / "run",
        "--target-sensitivity",
        1.5,
    )
    assert r.code == 1 and r.err.strip() == "error: --target-sensitivity: expected 0 < S <= 1, got 1.5"


def test_validation_split_needs_both_labels(tmp_path):
    emb = fake_embeddings(tmp_path / "emb", n_bags=3)  # one abnormal train bag: none left for validation
    with pytest.raises(
        SlamError, match=r"the validation split \(1 of 3 train bags\) needs a bag of each label"
    ):
        train_mil(MilConfig(epochs=1), emb, emb / "labels.csv", tmp_path / "run")


def test_early_stopping(tmp_path):
    emb = fake_embeddings(tmp_path / "emb", signal=0.0)
    train_mil(MilConfig(epochs=50, patience=2), emb, emb / "labels.csv", tmp_path / "run")
    history = list(csv.DictReader(open(tmp_path / "run" / "mil_history.csv")))
    for restart in range(MilConfig().restarts):
        assert 0 < sum(row["restart"] == str(restart) for row in history) < 50


def test_labels_naming_missing_bags(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    (emb / "bag_03.npz").unlink()
    with pytest.raises(SlamError, match=r"labels.csv: bag 'bag_03' has no embeddings"):
        train_mil(MilConfig(epochs=1), emb, emb / "labels.csv", tmp_path / "run")


def test_wrong_dimension_file(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    save_npz(emb / "bag_05.npz", features=np.zeros((4, 9), np.float32), names=np.array(["a", "b", "c", "d"]))
    with pytest.raises(SlamError, match="bag_05.npz: expected embeddings of dimension 6, got 9"):
        train_mil(MilConfig(epochs=1), emb, emb / "labels.csv", tmp_path / "run")


def test_checkpoint_of_wrong_kind(tmp_path):
    torch.save({"kind": ENCODER_KIND, "model": {}}, tmp_path / "enc.pt")
    with pytest.raises(SlamError, match="expected a slamctl-mil checkpoint, found slamctl-encoder"):
        load_mil(tmp_path / "enc.pt")
    with pytest.raises(
        SlamError, match="enc.pt: a slamctl-encoder checkpoint without config, encoder_config"
    ):
        load_checkpoint(tmp_path / "enc.pt", ENCODER_KIND)  # the right kind and nothing else


def test_a_checkpoint_of_the_right_kind_and_nothing_else_is_one_line(tmp_path):
    torch.save({"kind": MIL_KIND}, tmp_path / "mil.pt")
    torch.save({"kind": ENCODER_KIND}, tmp_path / "enc.pt")
    emb = fake_embeddings(tmp_path / "emb")
    for args, message in (
        (
            ("evaluate", "--run", tmp_path, "--embeddings", emb, "--bags", emb),
            "mil.pt: a slamctl-mil checkpoint without model",
        ),
        (
            ("train", "embed", "--encoder", tmp_path / "enc.pt", "--bags", emb, "--out", tmp_path / "e"),
            "enc.pt: a slamctl-encoder checkpoint without model",
        ),
    ):
        r = run_cli(*args)
        assert r.code == 1 and message in r.err and "Traceback" not in r.err, (args, r.err)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--proto-pred"], "--proto-pred: PAMIL's prototype prediction, not for --aggregator maxmil"),
        (["--restarts", "0"], "--restarts: expected >= 1, got 0"),
        (["--subsample", "0"], "--subsample: expected a fraction 0 < f <= 1, got 0.0"),
        (["--top-fraction", "1"], "--top-fraction: expected a fraction 0 <= f < 1, got 1.0"),
        (["--aggregator", "abmil", "--top-fraction", "0.01"], "--top-fraction: maxmil's pooling, not for"),
    ],
)
def test_mil_options_are_checked_in_one_line(tmp_path, options, message):
    emb = fake_embeddings(tmp_path / "emb")
    r = train_cli(emb, tmp_path / "r", *options)
    assert r.code == 1 and message in r.err and "Traceback" not in r.err


def test_restarts_keep_the_start_of_lowest_validation_loss(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    path = train_mil(MilConfig(epochs=8, patience=8, restarts=3), emb, emb / "labels.csv", tmp_path / "run")
    _, ckpt = load_mil(path)
    history = list(csv.DictReader(open(tmp_path / "run" / "mil_history.csv")))
    assert {row["restart"] for row in history} == {"0", "1", "2"}
    best = min(history, key=lambda row: float(row["val_loss"]))
    assert ckpt["best"]["restart"] == int(best["restart"]) and ckpt["best"]["epoch"] == int(best["epoch"])


def test_folds_give_every_train_bag_an_out_of_fold_prediction(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")  # 16 bags, no split.csv: all are train bags
    r = train_cli(emb, tmp_path / "run", "--folds", "4", "--restarts", "1", "--epochs", "5")
    assert r.code == 0 and "4 folds, best epochs" in " ".join(r.err.split()), r.err
    oof = list(csv.DictReader(open(tmp_path / "run" / "oof.csv")))
    assert sorted(row["bag_id"] for row in oof) == [f"bag_{i:02d}" for i in range(16)]
    model, ckpt = load_mil(tmp_path / "run" / "mil.pt")
    assert (
        ckpt["val_bags"] == 16 and "out-of-fold" in ckpt["threshold_rule"] and len(ckpt["best"]["folds"]) == 4
    )
    x = torch.randn(9, 6)
    members = [torch.softmax(m(x).logits, 0) for m in model.members]
    assert len(members) == 4
    assert torch.allclose(torch.softmax(model(x).logits, 0), torch.stack(members).mean(0), atol=1e-6)
    assert torch.allclose(model(x).attention, torch.stack([m(x).attention for m in model.members]).mean(0))


def test_folds_need_a_bag_of_each_label_per_fold(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")  # 8 bags of each label
    r = train_cli(
        emb,
        tmp_path / "r",
        "--folds",
        "9",
    )
    assert (
        r.code == 1
        and "--folds 9: every fold needs a bag of each label, the train bags have {0: 8, 1: 8}" in r.err
    )


def test_curriculum_starts_from_a_model_with_its_prototypes_and_projection_frozen(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    cfg = MilConfig(aggregator="pamil", epochs=2, patience=5, restarts=1)
    first = train_mil(cfg, emb, emb / "labels.csv", tmp_path / "a")
    then = replace(cfg, init_from=str(first), freeze_epochs=2)  # every epoch of this run frozen
    second = train_mil(then, emb, emb / "labels.csv", tmp_path / "b")
    a, b = load_checkpoint(first, MIL_KIND)["model"], load_checkpoint(second, MIL_KIND)["model"]
    frozen = [k for k in a if k.startswith(("proto", "fc."))]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    assert any(not torch.equal(a[k], b[k]) for k in a if k not in frozen)  # the rest trained on
    r = train_cli(emb, tmp_path / "c", "--aggregator", "abmil", "--init-from", first)
    assert r.code == 1 and f"--init-from {first}: a pamil of D=6" in " ".join(r.err.split())


def test_a_checkpoint_of_an_older_slamctl_is_refused_not_given_todays_defaults(tmp_path):
    emb = fake_embeddings(tmp_path / "emb")
    path = train_mil(MilConfig(epochs=1, restarts=1), emb, emb / "labels.csv", tmp_path / "run")
    ckpt = load_checkpoint(path, MIL_KIND)
    del ckpt["config"]["standardise"], ckpt["config"]["restarts"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(
        SlamError,
        match=r"old.pt: made by an older slamctl \(its configuration has no restarts, standardise\)",
    ):
        load_mil(tmp_path / "old.pt")


def test_subsample_trains_on_random_parts_of_each_bag_and_validates_on_whole_bags(tmp_path, monkeypatch):
    """Bag augmentation: every training step sees round(f x N) distinct cells of its bag, a
    different draw each epoch; validation always sees the whole bag."""
    import slamctl.training.mil as mil

    seen = []
    build = mil.build_aggregator

    def recording(cfg, in_dim):
        model = build(cfg, in_dim)
        forward = model.forward

        def record(x):
            seen.append((model.training, len(x), x.sum().item()))
            return forward(x)

        model.forward = record
        return model

    monkeypatch.setattr(mil, "build_aggregator", recording)
    emb = fake_embeddings(tmp_path / "emb")  # bags of 20 cells
    train_mil(
        MilConfig(epochs=3, patience=3, restarts=1, subsample=0.3), emb, emb / "labels.csv", tmp_path / "r"
    )
    training = [(n, total) for is_training, n, total in seen if is_training]
    assert {n for n, _ in training} == {6} and {n for t, n, _ in seen if not t} == {20}
    assert len({total for _, total in training}) > len(training) // 2  # other cells each time
