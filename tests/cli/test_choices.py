"""Choice options are typed: Typer refuses a wrong value at parse time, before any work."""

import pytest

from slamctl.training import choices
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "args",
    [
        ("train", "pretrain", "--bags", "x", "--out", "y", "--method", "slamags"),
        ("train", "pretrain", "--bags", "x", "--out", "y", "--preset", "huge"),
        ("train", "mil", "--embeddings", "x", "--labels", "y", "--out", "z", "--aggregator", "clam"),
        ("train", "embed", "--encoder", "x", "--bags", "y", "--out", "z", "--features", "q"),
        ("evaluate", "--run", "x", "--embeddings", "y", "--bags", "z", "--split", "foo"),
        ("infer", "x", "--format", "xml"),
        ("experiment", "wr-sweep", "--out", "x", "--preset", "gpu"),
        ("experiment", "wr-sweep", "--out", "x", "--methods", "slam-ags,simclr,simclrr"),
    ],
)
def test_a_wrong_choice_is_a_usage_error_before_any_work(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli(*args)
    assert r.code == 2 and "Invalid value" in r.out + r.err, r.out + r.err
    assert list(tmp_path.iterdir()) == []  # nothing made: no output folder, no data


def test_the_name_lists_match_what_implements_them():
    from slamctl.training.experiment_config import PRESETS as SWEEP
    from slamctl.training.pretrain_config import METHODS, PRESETS

    assert tuple(METHODS) == choices.PRETRAIN_METHODS
    assert tuple(PRESETS) == choices.PRETRAIN_PRESETS
    assert tuple(SWEEP) == choices.SWEEP_PRESETS
