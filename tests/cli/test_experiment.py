import csv
import json
from dataclasses import replace

import pytest

from slamctl.training.experiment import run_sweep
from slamctl.training.experiment_config import PRESETS
from tests.conftest import run_cli
from tests.foundation_weights import write_dinobloom


@pytest.mark.slow
def test_wr_sweep_smoke_writes_tables_and_plot(tmp_path):
    args = ("experiment", "wr-sweep", "--preset", "smoke", "--out", tmp_path, "--methods", "slam-ags,simclr")
    args += ("--witness-rates", "0.2", "--seeds", 2)
    r = run_cli(*args)
    assert r.code == 0, r.err
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(runs) == 4 * 2  # two methods and two reference rows (oracle, cell-supervised), two seeds
    assert all(r["conflict_fraction"] != "nan" for r in runs if r["method"] == "slam-ags")
    assert all(r["conflict_fraction"] == "nan" for r in runs if r["method"] == "simclr")
    results = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["method"], r["witness_rate"], r["runs"]) for r in results] == [
        ("slam-ags", "0.2", "2"),
        ("simclr", "0.2", "2"),
        ("oracle", "0.2", "2"),
        ("cell-supervised", "0.2", "2"),
    ]
    md = (tmp_path / "results.md").read_text()
    assert "| slam-ags | 20.0% |" in md and "±" in md and "instance-truth ceiling bag AUC" in md
    assert all(0 <= float(r["ceiling_auc_mean"]) <= 1 for r in results)  # the ceiling beside every row
    intervals = list(csv.DictReader(open(tmp_path / "intervals.csv")))  # 95% bootstrap over the test bags
    assert [(r["method"], r["test_bags"]) for r in intervals] == [
        ("slam-ags", "4"),
        ("simclr", "4"),
        ("oracle", "4"),
        ("cell-supervised", "4"),
    ]
    for r in intervals:
        assert float(r["f1_low"]) <= float(r["f1_mean"]) <= float(r["f1_high"])
    paired = (tmp_path / "paired.md").read_text()  # slam-ags minus simclr, per seed and paired interval
    assert paired.splitlines()[2].startswith("| simclr | 20.0% | ") and paired.count(", ") >= 1
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    # a second run reuses every finished run
    stamp = (tmp_path / "runs" / "simclr" / "wr0.2_seed0" / "eval" / "summary.json").stat().st_mtime_ns
    assert run_cli(*args).code == 0
    assert (
        tmp_path / "runs" / "simclr" / "wr0.2_seed0" / "eval" / "summary.json"
    ).stat().st_mtime_ns == stamp
    # resumed with other MIL settings: MIL and evaluation are redone, pretraining and embeddings kept
    run = tmp_path / "runs" / "simclr" / "wr0.2_seed0"
    kept = {
        p: p.stat().st_mtime_ns for p in (run / "checkpoint.pt", *sorted((run / "embeddings").glob("*.npz")))
    }
    smoke = PRESETS["smoke"]
    cfg = replace(smoke, methods=("slam-ags", "simclr"), witness_rates=(0.2,), seeds=(0, 1))
    run_sweep(replace(cfg, mil=replace(smoke.mil, epochs=2)), tmp_path)
    assert (run / "eval" / "summary.json").stat().st_mtime_ns != stamp
    assert json.loads((run / "eval" / "mil_config.json").read_text())["epochs"] == 2
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


@pytest.mark.slow
def test_wr_sweep_adds_a_frozen_foundation_row_on_the_same_bags(tmp_path):
    """DinoBloom-S in its released layout (random weights): its row beside the methods, and in
    the paired comparison with SLAM-AGS on the same test bags."""
    weights = write_dinobloom(tmp_path / "DinoBloom-S.pth", "dinobloom-s")
    out = tmp_path / "sweep"
    args = ("experiment", "wr-sweep", "--preset", "smoke", "--out", out, "--methods", "slam-ags")
    r = run_cli(
        *args, "--witness-rates", "0.2", "--seeds", 1, "--foundation", "dinobloom-s", "--weights", weights
    )
    assert r.code == 0, r.err
    results = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in results] == ["slam-ags", "oracle", "cell-supervised", "dinobloom-s"]
    meta = json.loads(
        (out / "runs" / "dinobloom-s" / "wr0.2_seed0" / "embeddings" / "embedding.json").read_text()
    )
    assert (meta["encoder_name"], meta["dim"], meta["features"]) == ("dinobloom-s", 384, "cls")
    assert not (
        out / "runs" / "dinobloom-s" / "wr0.2_seed0" / "checkpoint.pt"
    ).exists()  # frozen: no pretraining
    assert (out / "paired.md").read_text().splitlines()[2].startswith("| dinobloom-s | 20.0% | ")


def test_wr_sweep_foundation_needs_its_weights_and_checks_them_first(tmp_path):
    r = run_cli(
        "experiment", "wr-sweep", "--preset", "smoke", "--out", tmp_path / "a", "--foundation", "dinobloom-s"
    )
    assert r.code == 2 and "--foundation and --weights go together" in r.out + r.err
    bad = tmp_path / "DinoBloom-S.pth"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli(
        "experiment",
        "wr-sweep",
        "--preset",
        "smoke",
        "--out",
        tmp_path / "b",
        "--foundation",
        "dinobloom-s",
        "--weights",
        bad,
    )
    assert r.code == 1 and str(bad) in r.err and "Traceback" not in r.err
    assert not (tmp_path / "b" / "data").exists()  # refused before any data or pretraining


def test_wr_sweep_bad_rates(tmp_path):
    r = run_cli("experiment", "wr-sweep", "--out", tmp_path, "--witness-rates", "ten")
    assert r.code == 2 and "expected numbers" in r.out + r.err


def cell_auc(tmp_path, *extra) -> float:
    args = ("--bags", 12, "--cells-per-bag", 40, "--image-size", 32, "--epochs", 6, "--difficulty", 0)
    r = run_cli("experiment", "cell-auc", "--out", tmp_path, *args, *extra)
    assert r.code == 0, r.err
    assert (tmp_path / "encoder" / "checkpoint.pt").exists()  # the cell-supervised pretraining's
    return float(r.out.strip().rsplit(" ", 1)[1])


@pytest.mark.slow
def test_cell_auc_finds_clearly_distinct_cells(tmp_path):
    """Positive control of the difficulty check: at difficulty 0 (blasts clearly unlike
    lymphocytes) the cell-supervised encoder of 6 short epochs separates them well above chance."""
    auc = cell_auc(tmp_path)
    assert auc >= 0.8, auc  # measured 0.972


@pytest.mark.slow
def test_cell_auc_finds_nothing_without_signal(tmp_path):
    """Negative control: abnormal cells drawn exactly like normal ones leave the classifier at chance."""
    auc = cell_auc(tmp_path, "--null")
    assert abs(auc - 0.5) <= 0.25, auc  # measured 0.543
