"""Torch -> ONNX for the two served models, with the serving contract's names and shapes.

- slam_encoder: IMAGES uint8 (B, S, S, 3) RGB, already center-cropped -> EMBEDDINGS float32
  (B, D). The uint8 -> float, /255, NHWC -> NCHW and mean/std normalisation are inside the
  graph, so the wire carries one byte per channel and serving cannot drift from training.
- mil_aggregator: EMBEDDINGS float32 (N, D), one bag -> BAG_PROBS (2,), ATTENTION (N,),
  the aggregator's attention over the cells (higher = more abnormal).

The encoder is slamctl's pretrained ResNet18 or a foundation encoder (DinoBloom's ViT), one
contract for both: only D (and S) differ, and both are read from the graph.

Each graph's metadata records what produced it: the encoder, features (h, z or cls), D, S, the
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
from slamctl.training.encoder import uint8_to_input
from slamctl.training.extractor import is_foundation, open_extractor
from slamctl.training.mil import load_mil, stored_threshold

OPSET = 17


class EncoderGraph(nn.Module):
    """uint8 NHWC images -> features, the exported encoder (`Extractor.module` after the cast)."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(uint8_to_input(images))


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
    aggregator_name: str  # pamil, abmil or maxmil (training/mil_config.py AGGREGATORS)
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
    model = onnx.load(str(path))
    # the tracer declares dims it computed from shapes as unknown (the ViT's D): ONNX's shape
    # inference proves them; only the declared outputs take its answer
    inferred = onnx.shape_inference.infer_shapes(model).graph.output
    for declared, proven in zip(model.graph.output, inferred, strict=True):
        declared.type.CopyFrom(proven.type)
    return model


def encoder_to_onnx(extractor: nn.Module, size: int, path: Path) -> onnx.ModelProto:
    """`Extractor.module` as the served encoder: uint8 (batch, S, S, 3) -> (batch, D), at `path`."""
    return _to_onnx(
        EncoderGraph(extractor),
        torch.zeros(2, size, size, 3, dtype=torch.uint8),
        [contract.IMAGES],
        [contract.EMBEDDINGS],
        {contract.IMAGES: {0: "batch"}, contract.EMBEDDINGS: {0: "batch"}},
        path,
    )


def _set_metadata(model: onnx.ModelProto, meta: dict) -> None:
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)


def open_pair(encoder: str | Path, aggregator_ckpt: Path, weights: Path | None, allow_degenerate: bool):
    """The encoder the aggregator was trained on, and the aggregator: (extractor, aggregator,
    its checkpoint); one-line errors for a pair that does not belong together."""
    aggregator, mil_ckpt = load_mil(aggregator_ckpt)
    emb_meta = mil_ckpt["embedding"]
    trained_on = emb_meta.get("encoder_name", "slamctl")
    given = str(encoder) if is_foundation(encoder) else "slamctl"
    if trained_on != given:
        hint = "a pretraining checkpoint" if trained_on == "slamctl" else f"{trained_on} --weights FILE"
        raise SlamError(
            f"{aggregator_ckpt}: was trained on embeddings of {trained_on}, not {given}: pass --encoder {hint}"
        )
    ex = open_extractor(  # resized position embeddings only if the embeddings were made so
        encoder,
        weights=weights,
        features=emb_meta["features"],
        interpolate=emb_meta.get("interpolated", False),
    )
    health = mil_ckpt.get("health", {})
    if health.get("degenerate") and not allow_degenerate:
        raise SlamError(
            f"{aggregator_ckpt}: degenerate model ({'; '.join(health['reasons'])}): it decides nothing; "
            "retrain it, or pass --allow-degenerate to export it anyway"
        )
    if ex.dim != int(mil_ckpt["in_dim"]):
        raise SlamError(
            f"{aggregator_ckpt}: expects D={mil_ckpt['in_dim']} but the encoder's {ex.features} has D={ex.dim}"
        )
    if emb_meta.get("encoder_sha256") not in (None, ex.sha256):
        raise SlamError(f"{aggregator_ckpt}: was trained on embeddings of another encoder than {ex.path}")
    return ex, aggregator, mil_ckpt


def training_facts(ex, mil_ckpt: dict, agg_sha: str) -> dict:
    """How the pair was made, for the model card: the encoder's pretraining and the aggregator's
    configuration, validation figures, health and checksum."""
    return {
        "pretraining": {"encoder": ex.encoder, **ex.pretraining},
        "aggregator": {
            "name": mil_ckpt["config"]["aggregator"],
            "config": mil_ckpt["config"],
            "fit_bags": mil_ckpt.get("fit_bags"),
            "val_bags": mil_ckpt.get("val_bags"),
            "best": mil_ckpt.get("best"),
            "health": mil_ckpt.get("health", {}),
            "checkpoint_sha256": agg_sha,
        },
    }


def export_pair(
    encoder: str | Path,
    aggregator_ckpt: Path,
    workdir: Path,
    *,
    weights: Path | None = None,
    allow_degenerate: bool = False,
) -> ExportedPair:
    """Both models as checked ONNX protos (files under `workdir` are scratch). `encoder`: a
    pretraining checkpoint, or a foundation encoder's name with its `weights` file.

    A MIL checkpoint flagged degenerate (uniform attention or constant outputs) is refused
    unless `allow_degenerate`."""
    ex, aggregator, mil_ckpt = open_pair(encoder, aggregator_ckpt, weights, allow_degenerate)
    threshold, threshold_rule = stored_threshold(mil_ckpt)
    features, dim, size = ex.features, ex.dim, ex.crop_size
    workdir.mkdir(parents=True, exist_ok=True)
    enc_sha, agg_sha = ex.sha256, sha256_of(aggregator_ckpt)
    enc = encoder_to_onnx(ex.module, size, workdir / "encoder.onnx")
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
            "slamctl_encoder": ex.encoder,
            "slamctl_input_size": size,
            "slamctl_image_size": ex.image_size,
            "slamctl_mean": list(ex.mean),
            "slamctl_std": list(ex.std),
            "slamctl_training_config": ex.pretraining["config"],
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
    health = mil_ckpt.get("health", {})
    return ExportedPair(
        enc,
        agg,
        size,
        ex.image_size,
        dim,
        features,
        mil_ckpt["config"]["aggregator"],
        threshold,
        threshold_rule,
        health,
        training_facts(ex, mil_ckpt, agg_sha),
        ex.data_dir,
    )
