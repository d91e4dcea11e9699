"""The Triton model repository: `config.pbtxt` per model, versioned ONNX files, a manifest.

    model_repository/
      manifest.json                      sha256 of every model file, and what made it
      slam_encoder/config.pbtxt          onnxruntime_onnx, KIND_GPU, TensorRT FP16, dynamic batching
      slam_encoder/<version>/model.onnx
      mil_aggregator/config.pbtxt        onnxruntime_onnx, KIND_GPU, TensorRT FP32, max_batch_size 0
      mil_aggregator/<version>/model.onnx
      slam_model_card/config.pbtxt       Python backend: serves card.json (export/card.py)
      slam_model_card/<version>/model.py, card.json

Version policy: every export adds version N+1 (or `--version N`) and leaves older versions
on disk for rollback; `version_policy { latest { num_versions: 1 } }` makes Triton serve the
newest only. config.pbtxt describes the newest version.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from slamctl import contract
from slamctl.checksum import sha256_of
from slamctl.errors import SlamError
from slamctl.export import triton_models
from slamctl.export.card import card_config, card_path
from slamctl.export.file_encoder import file_encoder_config
from slamctl.export.model_card import (
    build_model_card,
    dataset_facts,
    write_model_card,
)
from slamctl.files import write_atomic

MANIFEST = "manifest.json"


def version_files(repository: Path) -> list[str]:
    """Every file in a version folder (MODEL/<n>/...), relative: what the manifest must hash
    (weights moved into an ONNX external-data file beside model.onnx included); Python's
    bytecode caches, which a Python-backend server may write there, left out."""
    return sorted(
        str(p.relative_to(repository))
        for p in Path(repository).glob("*/[0-9]*/**/*")
        if p.is_file() and p.parts[len(Path(repository).parts) + 1].isdigit() and "__pycache__" not in p.parts
    )


MODELS = contract.ONNX_MODELS


@dataclass(frozen=True)
class RepositorySettings:
    max_batch_size: int = 256  # encoder; the contract asks for >= 256
    preferred_batch_sizes: tuple[int, ...] = (64, 128, 256)
    max_queue_delay_us: int = 2000  # dynamic batcher: wait up to 2 ms to fill a batch
    opt_batch: int = 64  # TensorRT optimisation profile: the batch the engine is tuned for
    max_bag_cells: int = contract.DEFAULT_MAX_BAG_CELLS
    opt_bag_cells: int = 1000
    workspace_bytes: int = 4 << 30
    trt_cache_dir: str = "/trt_cache"  # a persistent volume in production, one per GPU type
    encoder_instances: int = 1
    warmup_batch: int = 64
    device: str = "gpu"  # gpu: KIND_GPU with TensorRT; cpu: KIND_CPU, plain ONNX Runtime (the INT8 encoder)


def _placement(
    s: RepositorySettings, count: int, precision: str, cache: str, shapes: tuple[str, str, str]
) -> str:
    """instance_group, and on GPU the TensorRT accelerator with its cache and profile shapes."""
    kind = "KIND_GPU" if s.device == "gpu" else "KIND_CPU"
    group = f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}\n  }}\n]\n"
    return group + (_trt_block(precision, s.workspace_bytes, cache, shapes) if s.device == "gpu" else "")


def tensor_block(kind: str, specs: tuple[contract.TensorSpec, ...]) -> str:
    items = ",\n".join(
        f'  {{\n    name: "{t.name}"\n    data_type: {t.triton_dtype}\n    dims: [ {", ".join(map(str, t.dims))} ]\n  }}'
        for t in specs
    )
    return f"{kind} [\n{items}\n]\n"


def trt_cache_path(cache_dir: str, name: str, sha256: str) -> str:
    """The TensorRT engine cache of one model file: a folder per model and per checksum.

    ONNX Runtime names cached engines from the graph (names, shapes, versions), not from
    the weights: with one folder per model, a retrained model of the same architecture
    would load the old engine and serve the old weights. One level below the cache volume,
    as before: ONNX Runtime creates the last folder of the path only."""
    return f"{cache_dir}/{name}-{sha256[:16]}"


def _trt_block(precision: str, workspace: int, cache: str, shapes: tuple[str, str, str]) -> str:
    params = {
        "precision_mode": precision,
        "max_workspace_size_bytes": str(workspace),
        "trt_engine_cache_enable": "true",
        "trt_engine_cache_path": cache,
        "trt_profile_min_shapes": shapes[0],
        "trt_profile_opt_shapes": shapes[1],
        "trt_profile_max_shapes": shapes[2],
    }
    lines = "\n".join(f'      parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items())
    return (
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
        f'      {{\n      name: "tensorrt"\n{lines}\n      }}\n    ]\n  }}\n}}\n'
    )


def _shape(name: str, dims: list[int]) -> str:
    return f"{name}:{'x'.join(map(str, dims))}"


def encoder_config(size: int, dim: int, s: RepositorySettings, image_size: int | None, trt_cache: str) -> str:
    image = [size, size, 3]
    shapes = (
        _shape(contract.IMAGES, [1, *image]),
        _shape(contract.IMAGES, [s.opt_batch, *image]),
        _shape(contract.IMAGES, [s.max_batch_size, *image]),
    )
    return (
        f'name: "{contract.ENCODER}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {s.max_batch_size}\n'
        "version_policy: { latest: { num_versions: 1 } }\n"
        + tensor_block("input", contract.encoder_inputs(size))
        + tensor_block("output", contract.encoder_outputs(dim))
        + "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, s.preferred_batch_sizes))} ]\n"
        f"  max_queue_delay_microseconds: {s.max_queue_delay_us}\n}}\n"
        + _placement(s, s.encoder_instances, "FP16", trt_cache, shapes)
        + f'parameters {{ key: "{contract.IMAGE_SIZE_PARAMETER}" value: {{ string_value: "{image_size or size}" }} }}\n'
        + "model_warmup [\n  {\n"
        f'    name: "batch_{s.warmup_batch}"\n    batch_size: {s.warmup_batch}\n'
        f'    inputs {{\n      key: "{contract.IMAGES}"\n      value: {{\n        data_type: TYPE_UINT8\n'
        f"        dims: [ {', '.join(map(str, image))} ]\n        zero_data: true\n      }}\n    }}\n  }}\n]\n"
    )


def aggregator_config(dim: int, s: RepositorySettings, threshold: float, trt_cache: str) -> str:
    shapes = tuple(_shape(contract.EMBEDDINGS, [n, dim]) for n in (1, s.opt_bag_cells, s.max_bag_cells))
    return (
        f'name: "{contract.AGGREGATOR}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        "version_policy: { latest: { num_versions: 1 } }\n"
        + tensor_block("input", contract.aggregator_inputs(dim))
        + tensor_block("output", contract.aggregator_outputs())
        # FP32: the aggregator is small, and its attention ranking must not drift
        + _placement(s, 1, "FP32", trt_cache, shapes)
        + f'parameters {{ key: "{contract.MAX_BAG_PARAMETER}" value: {{ string_value: "{s.max_bag_cells}" }} }}\n'
        + f'parameters {{ key: "{contract.THRESHOLD_PARAMETER}" value: {{ string_value: "{threshold!r}" }} }}\n'
        + "model_warmup [\n  {\n"
        f'    name: "bag_{s.opt_bag_cells}"\n    batch_size: 1\n'
        f'    inputs {{\n      key: "{contract.EMBEDDINGS}"\n      value: {{\n        data_type: TYPE_FP32\n'
        f"        dims: [ {s.opt_bag_cells}, {dim} ]\n        random_data: true\n      }}\n    }}\n  }}\n]\n"
    )


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def write_repository(
    pair,
    repository: Path,
    *,
    version: int | None = None,
    settings: RepositorySettings | None = None,
    sources: dict | None = None,
    data: dict | None = None,
    evaluation: dict | None = None,
) -> int:
    """Write both models as `version` (default: next free), their model card, and refresh
    configs and manifest. `data` (slamctl.export.model_card.dataset_facts) defaults to the facts of
    the folder the encoder checkpoint names; `evaluation` is `slamctl evaluate`'s summary."""
    settings = settings or RepositorySettings()
    if settings.max_batch_size < contract.ENCODER_MIN_MAX_BATCH:
        raise SlamError(f"max_batch_size {settings.max_batch_size}: the contract asks for >= 256")
    repository = Path(repository)
    newest = max([0] + [v for m in MODELS for v in existing_versions(repository / m)])
    if version is None:
        version = newest + 1
    if version < max(1, newest):
        raise SlamError(
            f"--version {version}: expected >= {max(1, newest)} (config.pbtxt describes the newest version)"
        )
    models = {
        contract.ENCODER: pair.encoder.SerializeToString(),
        contract.AGGREGATOR: pair.aggregator.SerializeToString(),
    }
    digests = {name: hashlib.sha256(models[name]).hexdigest() for name in MODELS}  # the files' sha256
    caches = {name: trt_cache_path(settings.trt_cache_dir, name, digests[name]) for name in MODELS}
    configs = {
        contract.ENCODER: encoder_config(
            pair.size, pair.dim, settings, pair.image_size, caches[contract.ENCODER]
        ),
        contract.AGGREGATOR: aggregator_config(
            pair.dim, settings, pair.threshold, caches[contract.AGGREGATOR]
        ),
    }
    configs[contract.MODEL_CARD] = card_config()
    configs[contract.FILE_ENCODER] = file_encoder_config(pair.dim, settings.max_batch_size)
    for name in MODELS:
        folder = repository / name / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "model.onnx", models[name])
    for name, text in configs.items():
        (repository / name).mkdir(parents=True, exist_ok=True)
        write_atomic(repository / name / "config.pbtxt", text.encode())
    card = {
        "version": version,
        "threshold": pair.threshold,
        "threshold_rule": pair.threshold_rule,
        "input_size": pair.size,
        "image_size": pair.image_size,
        "dim": pair.dim,
        "features": pair.features,
        "aggregator": pair.aggregator_name,
        "max_bag_cells": settings.max_bag_cells,
        "degenerate": bool(pair.health.get("degenerate", False)),
        "health": pair.health,
        "sha256": digests,
        "config_sha256": {name: hashlib.sha256(text.encode()).hexdigest() for name, text in configs.items()},
        "precision": {contract.ENCODER: pair.encoder_precision, contract.AGGREGATOR: "fp32"},
        "device": settings.device,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    card_file = card_path(repository, version)
    card_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(card_file, (json.dumps(card, indent=2) + "\n").encode())
    write_atomic(card_file.parent / "model.py", triton_models.source(triton_models.CARD_MODEL))
    data = dataset_facts(pair.data_dir) if data is None else data
    write_model_card(card_file.parent, build_model_card(card, pair.training, data, evaluation))
    files_folder = repository / contract.FILE_ENCODER / str(version)  # the encoded wire path
    files_folder.mkdir(parents=True, exist_ok=True)
    write_atomic(files_folder / "model.py", triton_models.source(triton_models.FILE_ENCODER_MODEL))
    manifest_path = repository / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    for name in (*MODELS, contract.MODEL_CARD, contract.FILE_ENCODER):  # a changed config must not be served
        manifest["files"][f"{name}/config.pbtxt"] = sha256_of(repository / name / "config.pbtxt")
    for rel in version_files(repository):  # every file of every version, so old versions stay verifiable
        if rel.split("/")[1] == str(version) or rel not in manifest["files"]:
            manifest["files"][rel] = sha256_of(repository / rel)
    manifest["latest_version"] = max(version, manifest.get("latest_version", 0))
    manifest.setdefault("versions", {})[str(version)] = {
        "exported_at": card["exported_at"],
        "features": pair.features,
        "dim": pair.dim,
        "input_size": pair.size,
        "threshold": pair.threshold,
        "threshold_rule": pair.threshold_rule,
        "degenerate": card["degenerate"],
        **(sources or {}),
    }
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return version


def parse_config(path: Path):
    """config.pbtxt -> tritonclient's ModelConfig; SlamError with the parser's reason."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        reason = str(e).split(" : ", 1)[-1] if line else str(e)
        raise SlamError(f"{path}:{line}:{col}: {reason}" if line else f"{path}: {reason}") from None
    except UnicodeDecodeError as e:
        raise SlamError(f"{path}: not text ({e})") from None


def dtype_name(config_enum: int) -> str:
    """TYPE_UINT8, TYPE_FP32, ... of a ModelConfig data_type enum value."""
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(config_enum)
