"""Randomly initialised checkpoints of a given size, and their model repository, for the
benchmarks: speed does not depend on the weights, and nothing has to be trained first."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from slamctl.training.checkpoint import ENCODER_KIND, MIL_KIND, save_checkpoint
from slamctl.training.encoder import Encoder
from slamctl.training.mil import MilConfig, build_aggregator
from slamctl.training.pretrain_config import PretrainConfig


def make_checkpoints(folder: Path, cfg: PretrainConfig | None = None) -> tuple[Path, Path]:
    """encoder.pt and mil.pt (the default aggregator on z) under `folder`; the paper's sizes by default."""
    cfg = cfg or PretrainConfig()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    enc = Encoder(cfg.encoder_config())
    save_checkpoint(
        {
            "kind": ENCODER_KIND,
            "model": enc.state_dict(),
            "config": asdict(cfg),
            "encoder_config": asdict(cfg.encoder_config()),
        },
        folder / "encoder.pt",
    )
    mil = MilConfig()
    agg = build_aggregator(mil, cfg.proj_dim)
    save_checkpoint(
        {
            "kind": MIL_KIND,
            "model": agg.state_dict(),
            "config": asdict(mil),
            "in_dim": cfg.proj_dim,
            "embedding": {"features": "z", "dim": cfg.proj_dim},
        },
        folder / "mil.pt",
    )
    return folder / "encoder.pt", folder / "mil.pt"


def make_repository(folder: Path, cfg: PretrainConfig | None = None):
    """Both models exported to ONNX under `folder` and written to `folder/repo`: (pair, repo)."""
    from slamctl.export.onnx_export import export_pair
    from slamctl.export.repository import write_repository

    pair = export_pair(*make_checkpoints(folder, cfg), folder)
    write_repository(pair, folder / "repo")
    return pair, folder / "repo"
