"""Torch -> ONNX for the two served models, with the serving contract's names and shapes.

- slam_encoder: IMAGES uint8 (B, S, S, 3) RGB, already center-cropped -> EMBEDDINGS float32
  (B, D). The uint8 -> float, /255, NHWC -> NCHW and mean/std normalisation are inside the
  graph, so the wire carries one byte per channel and serving cannot drift from training.
- mil_aggregator: EMBEDDINGS float32 (N, D), one bag -> BAG_PROBS (2,), ATTENTION (N,),
  the aggregator's attention over the cells (higher = more abnormal).

Each graph's metadata records what produced it: features (h or z), D, S, the
normalisation constants, the training configuration and the checkpoint's sha256.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from slamctl import contract
from slamctl.checksum import sha256_of
from slamctl.errors import SlamError
from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint
from slamctl.training.encoder import MEAN, STD, Encoder, encoder_of, uint8_to_input
from slamctl.training.mil import load_mil, stored_threshold

OPSET = 17


class EncoderGraph(nn.Module):
    """uint8 NHWC images -> h or z, the exported encoder."""

    def __init__(self, encoder: Encoder, features: str) -> None:
        super().__init__()
        self.encoder, self.use_h = encoder, features == "h"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, z = self.encoder(uint8_to_input(images))
        return h if self.use_h else z


class AggregatorGraph(nn.Module):
    """(N, D) embeddings of one bag -> (bag probabilities (2,), attention (N,))."""

    def __init__(self, aggregator: nn.Module) -> None:
        super().__init__()
        self.aggregator = aggregator

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.aggregator(embeddings)
        return torch.softmax(out.logits, dim=0), out.attention


@dataclass(frozen=True)
class ExportedPair:
    encoder: onnx.ModelProto
    aggregator: onnx.ModelProto
    size: int  # S, the encoder's input size
    image_size: int  # the size cells were decoded at in training (S is cropped from it)
    dim: int  # D
    features: str
    aggregator_name: str  # pamil, abmil or maxmil (training/choices.py)
    threshold: float  # on P(abnormal), chosen on validation bags by `train mil`
    threshold_rule: str
    health: dict  # training/health.py, measured on the validation bags
    training: dict  # how both were made, from the checkpoints (export/model_card.py)
    data_dir: Path | None  # the pretraining data folder the encoder checkpoint names
    encoder_precision: str = "fp32"  # int8: quantised by export/quantize.py


def _to_onnx(
    module: nn.Module, example: torch.Tensor, inputs, outputs, dynamic_axes, path: Path
) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side input checks
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    return onnx.load(str(path))


def _set_metadata(model: onnx.ModelProto, meta: dict) -> None:
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)


def export_pair(
    encoder_ckpt: Path, aggregator_ckpt: Path, workdir: Path, *, allow_degenerate: bool = False
) -> ExportedPair:
    """Both models as checked ONNX protos (files under `workdir` are scratch).

    A MIL checkpoint flagged degenerate (uniform attention or constant outputs) is refused
    unless `allow_degenerate`."""
    enc_ckpt = load_checkpoint(encoder_ckpt, ENCODER_KIND)  # once: the weights, step and data folder
    encoder, cfg = encoder_of(enc_ckpt), enc_ckpt["config"]
    aggregator, mil_ckpt = load_mil(aggregator_ckpt)
    health = mil_ckpt.get("health", {})
    if health.get("degenerate") and not allow_degenerate:
        raise SlamError(
            f"{aggregator_ckpt}: degenerate model ({'; '.join(health['reasons'])}): it decides nothing; "
            "retrain it, or pass --allow-degenerate to export it anyway"
        )
    threshold, threshold_rule = stored_threshold(mil_ckpt)
    emb_meta = mil_ckpt["embedding"]
    features, dim, size = emb_meta["features"], int(mil_ckpt["in_dim"]), int(cfg["crop_size"])
    made_dim = encoder.config.feature_dim if features == "h" else encoder.config.proj_dim
    if made_dim != dim:
        raise SlamError(f"{aggregator_ckpt}: expects D={dim} but the encoder's {features} has D={made_dim}")
    workdir.mkdir(parents=True, exist_ok=True)
    enc_sha, agg_sha = sha256_of(encoder_ckpt), sha256_of(aggregator_ckpt)
    if emb_meta.get("encoder_sha256") not in (None, enc_sha):
        raise SlamError(
            f"{aggregator_ckpt}: was trained on embeddings of another encoder than {encoder_ckpt}"
        )

    enc = _to_onnx(
        EncoderGraph(encoder, features),
        torch.zeros(2, size, size, 3, dtype=torch.uint8),
        [contract.IMAGES],
        [contract.EMBEDDINGS],
        {contract.IMAGES: {0: "batch"}, contract.EMBEDDINGS: {0: "batch"}},
        workdir / "encoder.onnx",
    )
    agg = _to_onnx(
        AggregatorGraph(aggregator),
        torch.randn(3, dim),
        [contract.EMBEDDINGS],
        [contract.BAG_PROBS, contract.ATTENTION],
        {contract.EMBEDDINGS: {0: "cells"}, contract.ATTENTION: {0: "cells"}},
        workdir / "aggregator.onnx",
    )
    common = {"slamctl_features": features, "slamctl_dim": dim}
    _set_metadata(
        enc,
        {
            **common,
            "slamctl_model": contract.ENCODER,
            "slamctl_input_size": size,
            "slamctl_image_size": cfg["image_size"],
            "slamctl_mean": list(MEAN),
            "slamctl_std": list(STD),
            "slamctl_training_config": cfg,
            "slamctl_checkpoint_sha256": enc_sha,
        },
    )
    _set_metadata(
        agg,
        {
            **common,
            "slamctl_model": contract.AGGREGATOR,
            "slamctl_training_config": mil_ckpt["config"],
            "slamctl_checkpoint_sha256": agg_sha,
            "slamctl_encoder_sha256": enc_sha,
            "slamctl_threshold": threshold,
        },
    )
    for model in (enc, agg):
        onnx.checker.check_model(model)
    training = {
        "pretraining": {
            "method": cfg["method"],
            "step": enc_ckpt.get("step"),
            "epoch": enc_ckpt.get("epoch"),
            "config": cfg,
            "checkpoint_sha256": enc_sha,
        },
        "aggregator": {
            "name": mil_ckpt["config"]["aggregator"],
            "config": mil_ckpt["config"],
            "fit_bags": mil_ckpt.get("fit_bags"),
            "val_bags": mil_ckpt.get("val_bags"),
            "best": mil_ckpt.get("best"),
            "health": health,
            "checkpoint_sha256": agg_sha,
        },
    }
    return ExportedPair(
        enc,
        agg,
        size,
        int(cfg["image_size"]),
        dim,
        features,
        mil_ckpt["config"]["aggregator"],
        threshold,
        threshold_rule,
        health,
        training,
        Path(enc_ckpt["bags"]) if enc_ckpt.get("bags") else None,
    )
