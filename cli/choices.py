"""The choice options as enums: Typer checks them at parse time (exit 2 with the valid
choices listed) before any work starts. Built from torch-free name lists."""

from __future__ import annotations

from enum import Enum

from slamctl.client.results import FORMATS
from slamctl.client.settings import WIRES
from slamctl.training import experiment_config, pretrain_config
from slamctl.training.embed_config import FEATURES, FOUNDATION_ENCODERS
from slamctl.training.mil_config import AGGREGATORS, INSTANCE_LOSSES


def _choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Method = _choice("Method", tuple(pretrain_config.METHODS))
PretrainPreset = _choice("PretrainPreset", tuple(pretrain_config.PRESETS))
Aggregator = _choice("Aggregator", AGGREGATORS)
Features = _choice("Features", FEATURES)
InstanceLoss = _choice("InstanceLoss", INSTANCE_LOSSES)
Format = _choice("Format", FORMATS)
Split = _choice("Split", ("test", "train", "all"))
SweepPreset = _choice("SweepPreset", tuple(experiment_config.PRESETS))
Wire = _choice("Wire", WIRES)
Foundation = _choice("Foundation", FOUNDATION_ENCODERS)
