"""Shared fixtures: tiny synthetic bag folders and an in-process `slamctl` runner."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from slamctl.training.synthetic import SynthConfig, generate

TINY = SynthConfig(bags=6, cells_per_bag=12, witness_rate=0.2, image_size=40, seed=0, test_fraction=0.34)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Invoke `slamctl ARGS` in-process through the real entry point; capture its output."""
    from slamctl.cli import console
    from slamctl.cli.main import main

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


@dataclass
class TinyModels:
    bags: Path
    encoder: Path  # pretraining checkpoint
    aggregator: Path  # MIL checkpoint
    embeddings: Path


@pytest.fixture(scope="session")
def tiny_models(tiny_bags, tmp_path_factory) -> TinyModels:
    """A really trained (a few steps) tiny encoder + PAMIL on the tiny bags; read-only for tests."""
    from slamctl.training.embed import embed_bags
    from slamctl.training.mil import MilConfig, train_mil
    from slamctl.training.pretrain import pretrain
    from slamctl.training.pretrain_config import PretrainConfig

    run = tmp_path_factory.mktemp("models")
    cfg = PretrainConfig(
        epochs=1,
        batch_size=8,
        warmup_epochs=0,
        image_size=40,
        crop_size=32,
        width=4,
        proj_dim=8,
        num_workers=0,
    )
    encoder = pretrain(cfg, tiny_bags, run)
    embed_bags(encoder, tiny_bags, run / "emb", num_workers=0)
    # PAMIL of 3 epochs, one start: a model that decides nothing, which export must refuse
    mil = MilConfig(aggregator="pamil", epochs=3, patience=3, restarts=1)
    aggregator = train_mil(mil, run / "emb", tiny_bags / "labels.csv", run)
    return TinyModels(tiny_bags, encoder, aggregator, run / "emb")


@pytest.fixture(scope="session")
def tiny_repository(tiny_models, tmp_path_factory) -> Path:
    """The tiny pair exported to a model repository by the project's own export; read-only."""
    from slamctl.export.onnx_export import export_pair
    from slamctl.export.repository import write_repository

    repo = tmp_path_factory.mktemp("repo")
    write_repository(
        export_pair(
            tiny_models.encoder,
            tiny_models.aggregator,
            tmp_path_factory.mktemp("onnx"),
            allow_degenerate=True,
        ),
        repo,
    )
    return repo


@pytest.fixture(scope="session")
def server(tiny_repository, tmp_path_factory):
    """The embedded Triton serving the tiny repository, for the whole session."""
    from slamctl.serving.launcher import start_server, stop_server

    running = start_server(tiny_repository, tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running.process)
