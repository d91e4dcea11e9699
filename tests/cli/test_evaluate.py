"""The whole training side through the CLI: synth -> pretrain -> embed -> mil -> evaluate."""

import csv
import json

import numpy as np
import pytest

from tests.conftest import run_cli

TINY = ["--preset", "tiny", "--image-size", 40, "--crop-size", 32, "--width", 4, "--workers", 0]


def pipeline(tmp_path, *synth_args, seed=0, epochs=1):
    bags, run, emb = tmp_path / "bags", tmp_path / "run", tmp_path / "emb"
    steps = [
        ("data", "synth", "--out", bags, "--image-size", 40, "--seed", seed, *synth_args),
        ("train", "pretrain", "--bags", bags, "--out", run, *TINY, "--epochs", epochs, "--seed", seed),
        ("train", "embed", "--encoder", run / "checkpoint.pt", "--bags", bags, "--out", emb, "--workers", 0),
        (
            "train",
            "mil",
            "--embeddings",
            emb,
            "--labels",
            bags / "labels.csv",
            "--out",
            run,
            "--epochs",
            8,
            "--seed",
            seed,
        ),
        ("evaluate", "--run", run, "--embeddings", emb, "--bags", bags),
    ]
    for args in steps:
        r = run_cli(*args)
        assert r.code == 0, (args[:2], r.err)
    return run / "eval"


@pytest.mark.slow
def test_end_to_end_writes_metrics_and_csvs(tmp_path):
    out = pipeline(
        tmp_path, "--bags", 8, "--cells-per-bag", 20, "--witness-rate", 0.1, "--test-fraction", 0.5
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bags"] == 4 and summary["abnormal_bags"] == 2
    for key in (
        "f1",
        "auc",
        "precision",
        "recall",
        "top_k_fraction_mean",
        "top_k_chance_mean",
        "probe_auc",
        "ceiling_auc",
        "ceiling_top_k_fraction_mean",
        "threshold",
        "threshold_rule",
        "degenerate",
        "health",
    ):
        assert key in summary
    bags = list(csv.DictReader(open(out / "bags.csv")))
    cells = list(csv.DictReader(open(out / "cells.csv")))
    assert len(bags) == 4 and len(cells) == sum(int(b["cells"]) for b in bags)
    for b in bags:
        ranks = sorted(int(c["rank"]) for c in cells if c["bag_id"] == b["bag_id"])
        assert ranks == list(range(1, int(b["cells"]) + 1))
        if b["label"] == "1":
            assert 0 <= float(b["top_k_fraction"]) <= 1 and int(b["k"]) == round(0.4 * int(b["cells"]))


@pytest.mark.slow
def test_null_data_gives_chance_auc(tmp_path):
    """Abnormal drawn exactly like normal: whatever the pipeline learns, bag AUC ~ 0.5."""
    aucs = []
    for seed in range(3):
        out = pipeline(
            tmp_path / str(seed),
            "--null",
            "--bags",
            40,
            "--cells-per-bag",
            16,
            "--test-fraction",
            0.5,
            seed=seed,
        )
        aucs.append(json.loads((out / "summary.json").read_text())["auc"])
    assert abs(np.mean(aucs) - 0.5) <= 0.2, aucs


def test_evaluate_errors_are_one_line(tmp_path):
    r = run_cli("evaluate", "--run", tmp_path / "mil.pt", "--embeddings", tmp_path, "--bags", tmp_path)
    assert r.code == 1 and "checkpoint does not exist" in r.err and r.err.strip().count("\n") == 0


def test_without_split_csv_held_out_figures_are_refused_and_all_is_labelled(tmp_path):
    """Without split.csv no bag is known to be held out: `evaluate` refuses to call the
    training bags a test set; `--split all` evaluates them, and the model card says so."""
    from slamctl.export.model_card import limitations
    from tests.training.test_mil import fake_embeddings, train_cli

    emb = fake_embeddings(tmp_path / "emb")
    with open(emb / "cells.csv", "w") as f:  # cell truth: the first 3 cells of an abnormal bag
        f.write("bag_id,file,positive\n")
        f.writelines(
            f"bag_{i:02d},c{j}.png,{int(i % 2 == 1 and j < 3)}\n" for i in range(16) for j in range(20)
        )
    assert train_cli(emb, tmp_path / "run", "--epochs", 2, "--restarts", 1).code == 0
    args = ("evaluate", "--run", tmp_path / "run", "--embeddings", emb, "--bags", emb)
    r = run_cli(*args)
    assert r.code == 1 and "split.csv: missing, so no bag is known to be held out (test asked)" in r.err
    r = run_cli(*args, "--split", "all")
    assert r.code == 0, r.err
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert summary["split"] is None and summary["bags"] == 16
    card = {
        "aggregator": {},
        "training_data": {"available": True},
        "evaluation": summary,
        "threshold_rule": "x",
    }
    assert any("not on held-out ones" in line for line in limitations(card))
