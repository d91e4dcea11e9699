"""Shared fixtures: tiny synthetic bag folders and an in-process `slamctl` runner."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.synthetic import SynthConfig, generate

TINY = SynthConfig(bags=6, cells_per_bag=12, witness_rate=0.2, image_size=40, seed=0, test_fraction=0.34)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Invoke `slamctl ARGS` in-process through the real entry point; capture its output."""
    from client import console
    from client.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = console.err.file
    console.err.file = err
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        console.err.file = saved
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_bags(tmp_path_factory) -> Path:
    """6 synthetic bags of ~12 cells of 40 px (4 train, 2 test); read-only for tests."""
    out = tmp_path_factory.mktemp("bags")
    generate(TINY, out)
    return out
