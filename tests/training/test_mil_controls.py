"""The MIL aggregators' controls, through the real commands.

Positive control: oracle embeddings built from the cell truth (training/oracle.py), 64 bags
of 200 cells, 48 train / 16 test. With `train mil`'s defaults each aggregator must reach
held-out bag AUC >= 0.95 and mean top-K retrieval >= 0.8 at witness rates 10% and 1% (2
abnormal cells in 200). Negative control: the same bags with abnormal cells drawn like
normal ones: bag AUC about 0.5, and a model that learned nothing is flagged degenerate.
"""

import json

import numpy as np
import pytest

from slamctl.training.oracle import OracleConfig, write_oracle
from tests.conftest import run_cli


def train_and_evaluate(folder, aggregator="pamil", seed=0):
    run = folder / "run"
    r = run_cli(
        "train",
        "mil",
        "--embeddings",
        folder,
        "--labels",
        folder / "labels.csv",
        "--out",
        run,
        "--aggregator",
        aggregator,
        "--seed",
        seed,
    )
    assert r.code == 0, r.err
    r = run_cli("evaluate", "--run", run, "--embeddings", folder, "--bags", folder)
    assert r.code == 0, r.err
    return json.loads((run / "eval" / "summary.json").read_text()), r.err


@pytest.mark.slow
@pytest.mark.parametrize("aggregator", ["pamil", "abmil"])
@pytest.mark.parametrize("witness_rate", [0.1, 0.01])
def test_positive_control(tmp_path, aggregator, witness_rate):
    folder = write_oracle(OracleConfig(witness_rate=witness_rate), tmp_path / "oracle")
    summary, _ = train_and_evaluate(folder, aggregator)
    assert summary["bags"] == 16
    assert summary["auc"] >= 0.95, summary
    assert summary["top_k_fraction_mean"] >= 0.8, summary
    assert summary["f1"] >= 0.8, summary  # at the threshold chosen on validation bags
    assert not summary["degenerate"] and summary["probe_auc"] > 0.99


@pytest.mark.slow
def test_negative_control_gives_chance_and_a_degenerate_flag(tmp_path):
    aucs, flagged = [], []
    for seed in range(3):
        folder = write_oracle(OracleConfig(witness_rate=0.1, null=True, seed=seed), tmp_path / str(seed))
        summary, err = train_and_evaluate(folder, seed=seed)
        aucs.append(summary["auc"])
        flagged.append(summary["degenerate"])
        if flagged[-1]:
            assert "warning: degenerate model on the test bags" in err
        assert summary["probe_auc"] < 0.6  # the oracle without signal: nothing for an encoder to find
    assert abs(np.mean(aucs) - 0.5) <= 0.2, aucs
    assert any(flagged), "a null model that learned nothing must be flagged degenerate"
