"""`export validate`'s checks of the Python-backend models: the model card model (its card
against the served files and configs, model_card.json and MODEL_CARD.md) and the file encoder."""

from __future__ import annotations

import json
from pathlib import Path

from slamctl import contract
from slamctl.errors import SlamError
from slamctl.export.checks import Checks, config_tensors
from slamctl.export.model_config import parse_config


def _python_model_config(checks: Checks, repo: Path, model: str):
    """The config of a Python-backend model: exists, parses, its backend and batching as the
    contract's table says; None when it cannot be read (recorded)."""
    spec = contract.SPECS[model]
    batching = spec.batching == "batch"
    config_path = repo / model / "config.pbtxt"
    if not checks.add(model, "config.pbtxt exists", config_path.is_file(), f"{config_path} (export again)"):
        return None
    try:
        config = parse_config(config_path)
    except SlamError as e:
        checks.add(model, "config.pbtxt parses", False, str(e))
        return None
    # a batch dimension, but no dynamic batcher: the Python backend fails every request of a
    # merged batch when one holds a malformed BYTES element (export/model_config.py)
    batched = config.max_batch_size > 0 and not config.HasField("dynamic_batching")
    checks.add(
        model,
        f"backend python, {'a batch dimension, no dynamic batching' if batching else 'no batching'}",
        config.backend == spec.backend and (batched if batching else config.max_batch_size == 0),
        f"backend {config.backend!r}, max_batch_size {config.max_batch_size}",
    )
    return config


def check_card(checks: Checks, repo: Path, onnx_paths: dict[str, Path]) -> None:
    """The model card model: config, files, and a card that matches the served ONNX files."""
    from slamctl.card import ServedCard
    from slamctl.checksum import sha256_of
    from slamctl.export.card import CARD_FILE
    from slamctl.export.layout import existing_versions

    model = contract.MODEL_CARD
    config = _python_model_config(checks, repo, model)
    if config is None:
        return
    spec = contract.SPECS[model]
    want = {t.name: (t.triton_dtype, t.dims) for t in spec.inputs(0, 0) + spec.outputs(0, 0)}
    have = config_tensors([*config.input, *config.output], batching=False)
    checks.add(model, "tensors follow the serving contract", want == have, f"{have}")
    versions = existing_versions(repo / model)
    folder = repo / model / str(versions[-1]) if versions else repo / model / "<none>"
    ok = (folder / CARD_FILE).is_file() and (folder / "model.py").is_file()
    if not checks.add(model, "a version folder with card.json and model.py", ok, str(folder)):
        return
    try:
        card = ServedCard.from_json((folder / CARD_FILE).read_bytes(), str(folder / CARD_FILE))
    except SlamError as e:
        checks.add(model, "card.json is a model card", False, str(e))
        return
    checks.add(model, "card.json is a model card", True)
    checks.add(
        model,
        "card version equals its folder",
        str(card.version) == folder.name,
        f"{card.version} in {folder.name}/",
    )
    checks.add(model, "threshold in [0, 1]", 0 <= card.threshold <= 1, str(card.threshold))
    digests = {name: sha256_of(path) for name, path in onnx_paths.items()}
    for name, path in onnx_paths.items():
        ok = card.sha256.get(name) == digests[name]
        checks.add(
            model,
            f"card's sha256 of {name} matches {path.parent.name}/model.onnx",
            ok,
            "matches" if ok else f"card {str(card.sha256.get(name))[:12]}... differs from {path}",
        )
    for name in contract.SERVED_MODELS:  # the id covers them
        path = repo / name / "config.pbtxt"
        ok = path.is_file() and card.config_sha256.get(name) == sha256_of(path)
        checks.add(
            model, f"card's sha256 of {name}/config.pbtxt matches", ok, "matches" if ok else f"{path} differs"
        )
    check_model_card(checks, folder, card, onnx_paths, digests)


def check_file_encoder(checks: Checks, repo: Path, dim: int | None) -> None:
    """The encoded wire path's model (export/triton_models/file_encoder_model.py): config and model.py."""
    from slamctl.export.layout import existing_versions

    model = contract.FILE_ENCODER
    config = _python_model_config(checks, repo, model)
    if config is None:
        return
    if dim is not None:
        spec = contract.SPECS[model]
        specs = spec.inputs(0, dim) + spec.outputs(0, dim)
        want = {t.name: (t.triton_dtype, (-1, *t.dims)) for t in specs}
        have = config_tensors([*config.input, *config.output], batching=True)
        checks.add(model, "tensors follow the serving contract", want == have, f"{have}")
    versions = existing_versions(repo / model)
    ok = bool(versions) and (repo / model / str(versions[-1]) / "model.py").is_file()
    checks.add(model, "a version folder with model.py", ok, str(repo / model))


def check_model_card(
    checks: Checks, folder: Path, served: dict, onnx_paths: dict[str, Path], digests: dict[str, str]
) -> None:
    """model_card.json names the served files' checksums; MODEL_CARD.md is its rendering."""
    from slamctl.export.model_card import MODEL_CARD_JSON, MODEL_CARD_MD, render_markdown

    model = contract.MODEL_CARD
    path = folder / MODEL_CARD_JSON
    try:
        card = json.loads(path.read_text())
        markdown = (folder / MODEL_CARD_MD).read_text()
    except FileNotFoundError as e:
        detail = f"{e.filename} is absent: the repository predates model cards; export it again"
        checks.add(model, "model_card.json and MODEL_CARD.md exist and parse", False, detail)
        return
    except (OSError, ValueError) as e:
        checks.add(model, "model_card.json and MODEL_CARD.md exist and parse", False, f"{folder}: {e}")
        return
    checks.add(model, "model_card.json and MODEL_CARD.md exist and parse", True)
    for name, onnx_path in onnx_paths.items():
        rel = f"{name}/{onnx_path.parent.name}/model.onnx"
        ok = card.get("files", {}).get(rel) == digests[name]
        checks.add(
            model,
            f"model card's sha256 of {rel}",
            ok,
            "matches" if ok else f"{path} differs from {onnx_path}",
        )
    if len(digests) == len(contract.ONNX_MODELS):  # a model that failed its own checks is reported there
        ok = card.get("model_id") == served.model_id
        checks.add(model, "model card's model id is the served pair's", ok, card.get("model_id", "absent"))
    ok = markdown == render_markdown(card)
    checks.add(
        model,
        "MODEL_CARD.md renders model_card.json",
        ok,
        "matches" if ok else f"{folder / MODEL_CARD_MD} was changed",
    )
