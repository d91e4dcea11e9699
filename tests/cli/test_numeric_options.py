"""Every numeric option of every command, given a value out of any range (-1, NaN): a
non-zero exit and a short message naming the problem, never a traceback or a hang. The
options are found by walking the Typer app, so a new one is covered the day it is added."""

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from slamctl.cli.main import app
from tests.conftest import run_cli

BAD = ("-1", "nan")


def commands(group=None, path=()):
    """(path, command) of every command, and of every group with options of its own (export)."""
    group = group or typer.main.get_command(app)
    for name, sub in group.commands.items():
        yield (*path, name), sub
        if hasattr(sub, "commands"):
            yield from commands(sub, (*path, name))


def numeric_options():
    for path, command in commands():
        for p in command.params:
            annotation = getattr(p, "type_descriptor", None) and p.type_descriptor.annotation
            if annotation in (int, float, int | None, float | None) and p.opts[0].startswith("--"):
                yield path, p.opts[0]


NUMERIC = sorted(set(numeric_options()))


def base_args(path, tiny_bags, tiny_models, tiny_repository, tmp_path):
    """Arguments under which each command would do real work on the tiny fixtures."""
    emb = tiny_models.embeddings
    return {
        ("evaluate",): [
            "--run",
            tiny_models.aggregator,
            "--embeddings",
            emb,
            "--bags",
            tiny_bags,
            "--out",
            tmp_path / "e",
        ],
        ("serve",): ["--repository", tiny_repository],
        ("infer",): [tiny_bags, "--url", "127.0.0.1:1", "--out", tmp_path / "o"],
        ("health",): ["--url", "127.0.0.1:1"],
        ("data", "synth"): ["--out", tmp_path / "s", "--bags", 4, "--cells-per-bag", 4, "--image-size", 16],
        ("data", "bags"): ["--cells", tmp_path / "nocells", "--out", tmp_path / "b"],
        ("train", "pretrain"): [
            "--bags",
            tiny_bags,
            "--out",
            tmp_path / "p",
            "--preset",
            "tiny",
            "--max-steps",
            1,
        ],
        ("train", "embed"): ["--encoder", tiny_models.encoder, "--bags", tiny_bags, "--out", tmp_path / "m"],
        ("train", "mil"): [
            "--embeddings",
            emb,
            "--labels",
            tiny_bags / "labels.csv",
            "--out",
            tmp_path / "r",
            "--epochs",
            1,
        ],
        ("experiment", "wr-sweep"): ["--out", tmp_path / "w", "--preset", "smoke"],
        ("experiment", "cell-auc"): [
            "--out",
            tmp_path / "c",
            "--bags",
            4,
            "--cells-per-bag",
            4,
            "--epochs",
            1,
        ],
        ("export",): [
            "--encoder",
            tiny_models.encoder,
            "--aggregator",
            tiny_models.aggregator,
            "--repository",
            tmp_path / "x",
        ],
        ("export", "validate"): [tiny_repository],
        ("audit", "verify"): [tmp_path / "log", tmp_path],
    }[path]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("path, option", NUMERIC, ids=[" ".join(p) + " " + o for p, o in NUMERIC])
def test_an_out_of_range_value_is_refused_in_a_few_lines(
    path, option, value, tiny_bags, tiny_models, tiny_repository, tmp_path
):
    args = [*path, *base_args(path, tiny_bags, tiny_models, tiny_repository, tmp_path), option, value]
    if path == ("serve",):  # a value accepted by mistake would serve for good: a real process, a timeout
        slamctl = Path(sys.executable).parent / "slamctl"
        p = subprocess.run([slamctl, *map(str, args)], capture_output=True, text=True, timeout=60)
        code, text = p.returncode, p.stdout + p.stderr
    else:
        r = run_cli(*args)
        code, text = r.code, r.out + r.err
    assert code != 0 and "Traceback" not in text, text[-2000:]
    assert len(text.strip().splitlines()) <= 8, text[-2000:]  # one line, or Typer's usage box
