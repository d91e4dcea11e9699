"""The Triton model repository: `config.pbtxt` per model, versioned ONNX files, a manifest.

    model_repository/
      manifest.json                      sha256 of every model file, and what made it
      slam_encoder/config.pbtxt          onnxruntime_onnx, KIND_GPU, TensorRT FP16, dynamic batching
      slam_encoder/<version>/model.onnx
      mil_aggregator/config.pbtxt        onnxruntime_onnx, KIND_GPU, TensorRT FP32, max_batch_size 0
      mil_aggregator/<version>/model.onnx
      slam_model_card/config.pbtxt       Python backend: serves card.json (export/card.py)
      slam_model_card/<version>/model.py, card.json, model_card.json, MODEL_CARD.md
      slam_encoder_files/config.pbtxt    Python backend: the encoded wire path
      slam_encoder_files/<version>/model.py

The configs come from export/model_config.py, the Python-backend models from
export/triton_models/.

Version policy: every export adds version N+1 (or `--version N`) and leaves older versions
on disk for rollback; `version_policy { latest { num_versions: 1 } }` makes Triton serve the
newest only. config.pbtxt describes the newest version.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from slamctl import contract
from slamctl.card import ServedCard
from slamctl.checksum import sha256_of
from slamctl.errors import SlamError
from slamctl.export import triton_models
from slamctl.export.card import card_path
from slamctl.export.layout import existing_versions, version_files
from slamctl.export.model_card import (
    build_model_card,
    dataset_facts,
    write_model_card,
)
from slamctl.export.model_config import served_configs, trt_cache_path
from slamctl.export.settings import RepositorySettings
from slamctl.files import write_atomic

MANIFEST = "manifest.json"


MODELS = contract.ONNX_MODELS


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
    configs = served_configs(pair.size, pair.dim, pair.image_size, pair.threshold, settings, caches)
    for name in MODELS:
        folder = repository / name / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "model.onnx", models[name])
    for name, text in configs.items():
        (repository / name).mkdir(parents=True, exist_ok=True)
        write_atomic(repository / name / "config.pbtxt", text.encode())
    card = ServedCard(
        version=version,
        threshold=pair.threshold,
        threshold_rule=pair.threshold_rule,
        input_size=pair.size,
        image_size=pair.image_size,
        dim=pair.dim,
        features=pair.features,
        aggregator=pair.aggregator_name,
        max_bag_cells=settings.max_bag_cells,
        degenerate=bool(pair.health.get("degenerate", False)),
        health=pair.health,
        sha256=digests,
        config_sha256={name: hashlib.sha256(text.encode()).hexdigest() for name, text in configs.items()},
        precision={contract.ENCODER: pair.encoder_precision, contract.AGGREGATOR: "fp32"},
        device=settings.device,
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    card_file = card_path(repository, version)
    card_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(card_file, card.to_json().encode())
    data = dataset_facts(pair.data_dir) if data is None else data
    write_model_card(card_file.parent, build_model_card(card, pair.training, data, evaluation))
    for spec in contract.SERVED:  # the Python-backend models' code, as their rows name it
        if spec.source is not None:
            folder = repository / spec.name / str(version)
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / "model.py", triton_models.source(spec.source))
    update_manifest(repository, version, card, sources or {})
    return version


def update_manifest(repository: Path, version: int, card: ServedCard, sources: dict) -> None:
    """manifest.json: the sha256 of every config and of every file of every version (older
    versions keep theirs, so they stay verifiable), and what made `version`."""
    manifest_path = repository / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    for name in contract.SERVED_MODELS:  # a changed config must not be served
        manifest["files"][f"{name}/config.pbtxt"] = sha256_of(repository / name / "config.pbtxt")
    for rel in version_files(repository):  # every file of every version, so old versions stay verifiable
        if rel.split("/")[1] == str(version) or rel not in manifest["files"]:
            manifest["files"][rel] = sha256_of(repository / rel)
    manifest["latest_version"] = max(version, manifest.get("latest_version", 0))
    manifest.setdefault("versions", {})[str(version)] = {
        "exported_at": card.exported_at,
        "features": card.features,
        "dim": card.dim,
        "input_size": card.input_size,
        "threshold": card.threshold,
        "threshold_rule": card.threshold_rule,
        "degenerate": card.degenerate,
        **sources,
    }
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
