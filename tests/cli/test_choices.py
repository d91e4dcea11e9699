"""Choice options are typed: Typer refuses a wrong value at parse time, before any work."""

import pytest

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


def test_every_name_of_the_config_tables_is_accepted(tmp_path, monkeypatch):
    """The choices come from the configuration modules' own tables (no copy to keep in step):
    each name parses, and the command gets as far as its missing inputs."""
    from slamctl.training.mil_config import AGGREGATORS, INSTANCE_LOSSES
    from slamctl.training.pretrain_config import METHODS

    monkeypatch.chdir(tmp_path)
    mil = ("train", "mil", "--embeddings", "none", "--labels", "none.csv", "--out", "o")
    runs = [(*mil, "--aggregator", a) for a in AGGREGATORS] + [
        (*mil, "--instance-loss", i) for i in INSTANCE_LOSSES
    ]
    runs += [("train", "pretrain", "--bags", "none", "--out", "o", "--method", m) for m in METHODS]
    for args in runs:
        r = run_cli(*args)
        assert r.code == 1 and "none" in r.err and "Invalid value" not in r.out + r.err, (args, r.err)
