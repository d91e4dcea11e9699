"""Validating a model repository before it is served: what a CI pipeline runs after training.

Checks, per model: config.pbtxt parses as Triton's ModelConfig (syntax, unknown fields, bad
enums); the config follows the serving contract; its tensor names, dtypes and dims equal
the ONNX graph's; preferred batch sizes and TensorRT profile shapes fit max_batch_size
and the tensors; the manifest's checksums match every model file; the model card model is well formed
and its card names the served ONNX files' checksums; ONNX Runtime runs the
served version on sample inputs (a bag of one cell and of the maximum size included).
With the checkpoints, parity with PyTorch: embeddings within 1e-4, bag probabilities
within 1e-5, the same top-10 cells. Needs no torch unless checkpoints are given.

This module checks the ONNX models' configs and the manifest and runs every check in order;
the Python-backend models' checks are in export/card_checks.py, the ONNX Runtime runs and
the parity in export/runs.py, the result table in export/checks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from slamctl import contract
from slamctl.errors import SlamError
from slamctl.export.card_checks import check_card, check_file_encoder
from slamctl.export.checks import Checks, config_tensors, onnx_tensors
from slamctl.export.model_config import parse_config
from slamctl.export.runs import check_int8_decisions, check_parity, run_samples


def _trt_params(config) -> dict[str, str]:
    for acc in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if acc.name == "tensorrt":
            return dict(acc.parameters)
    return {}


def _check_profiles(checks: Checks, model: str, config, tensors: dict) -> None:
    params = _trt_params(config)
    keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
    if not checks.add(
        model,
        "TensorRT profile shapes set",
        all(k in params for k in keys),
        ", ".join(k for k in keys if k not in params) or "min/opt/max",
    ):
        return
    parsed = []
    for key in keys:
        shapes = {}
        for item in params[key].split(","):
            name, _, dims = item.partition(":")
            try:
                shapes[name] = tuple(int(d) for d in dims.split("x"))
            except ValueError:
                checks.add(model, f"{key} parses", False, f"{item!r} is not NAME:DxDx...")
                return
        parsed.append(shapes)
    for name in tensors:
        if not checks.add(
            model, f"profile covers input {name}", all(name in p for p in parsed), params[keys[0]]
        ):
            continue
        lo, opt, hi = (p[name] for p in parsed)
        expected = tensors[name][1]
        ok = all(len(s) == len(expected) for s in (lo, opt, hi)) and all(
            e == -1 or (a == e and b == e and c == e) for a, b, c, e in zip(lo, opt, hi, expected)
        )
        checks.add(model, f"profile dims of {name} match the tensor", ok, f"{lo} {opt} {hi} vs {expected}")
        ok = all(1 <= a <= b <= c for a, b, c in zip(lo, opt, hi))
        checks.add(model, f"profile min <= opt <= max for {name}", ok, f"{lo} {opt} {hi}")
        if config.max_batch_size > 0:
            checks.add(
                model,
                "profile batch within max_batch_size",
                hi[0] <= config.max_batch_size,
                f"max {hi[0]} vs max_batch_size {config.max_batch_size}",
            )


def check_batching(checks: Checks, model: str, config) -> None:
    """Batching as the contract's table says, and the encoder's batch limits."""
    spec = contract.SPECS[model]
    if spec.batching == "dynamic":
        checks.add(model, "dynamic batching", config.HasField("dynamic_batching"))
    if model == contract.ENCODER:
        checks.add(
            model,
            f"max_batch_size >= {contract.ENCODER_MIN_MAX_BATCH}",
            config.max_batch_size >= contract.ENCODER_MIN_MAX_BATCH,
            str(config.max_batch_size),
        )
        preferred = list(config.dynamic_batching.preferred_batch_size)
        checks.add(
            model,
            "preferred batch sizes <= max_batch_size",
            all(0 < b <= config.max_batch_size for b in preferred),
            f"{preferred} vs {config.max_batch_size}",
        )
        value = config.parameters[contract.IMAGE_SIZE_PARAMETER].string_value
        size = config.input[0].dims[0] if config.input and config.input[0].dims else 0
        checks.add(
            model,
            f"parameter {contract.IMAGE_SIZE_PARAMETER} >= input size",
            value.isdigit() and int(value) >= size,
            f"{value!r} vs S={size}",
        )
    if spec.batching == "none":
        checks.add(
            model,
            "max_batch_size 0 (one bag per request)",
            config.max_batch_size == 0,
            str(config.max_batch_size),
        )


def check_tensors(checks: Checks, model: str, config, graph, batching: bool) -> None:
    """The config's tensors equal the ONNX graph's (names, dtypes, dims) and the contract's names."""
    spec = contract.SPECS[model]
    for kind, entries, values in (
        ("input", config.input, graph.graph.input),
        ("output", config.output, graph.graph.output),
    ):
        want, have = config_tensors(entries, batching), onnx_tensors(values)
        checks.add(
            model,
            f"{kind} names equal the ONNX graph's",
            set(want) == set(have),
            f"config {sorted(want)} vs onnx {sorted(have)}",
        )
        for name in set(want) & set(have):
            checks.add(
                model,
                f"{kind} {name} dtype",
                want[name][0] == have[name][0],
                f"{want[name][0]} vs {have[name][0]}",
            )
            checks.add(
                model,
                f"{kind} {name} dims",
                want[name][1] == have[name][1],
                f"config {want[name][1]} vs onnx {have[name][1]}",
            )
    contract_names = tuple({t.name for t in tensors} for tensors in (spec.inputs(0, 0), spec.outputs(0, 0)))
    checks.add(
        model,
        "tensor names follow the serving contract",
        ({e.name for e in config.input}, {e.name for e in config.output}) == contract_names,
        f"inputs {[e.name for e in config.input]}, outputs {[e.name for e in config.output]}",
    )


def check_model_config(checks: Checks, repo: Path, model: str):
    """Parse and check one model's config against the contract and its ONNX graph."""
    import onnx

    from slamctl.export.layout import existing_versions

    config_path = repo / model / "config.pbtxt"
    if not checks.add(model, "config.pbtxt exists", config_path.is_file(), str(config_path)):
        return None
    try:
        config = parse_config(config_path)
    except SlamError as e:
        checks.add(model, "config.pbtxt parses", False, str(e))
        return None
    checks.add(model, "config.pbtxt parses", True)
    checks.add(model, "name matches folder", config.name == model, f"name {config.name!r}")
    spec = contract.SPECS[model]
    checks.add(model, f"platform {spec.backend}", config.platform == spec.backend, config.platform)
    batching = config.max_batch_size > 0
    check_batching(checks, model, config)

    versions = existing_versions(repo / model)
    if not checks.add(
        model,
        "a version folder with model.onnx",
        versions and (repo / model / str(versions[-1]) / "model.onnx").is_file(),
        f"versions {versions}",
    ):
        return None
    onnx_path = repo / model / str(versions[-1]) / "model.onnx"
    try:
        graph = onnx.load(str(onnx_path))
        onnx.checker.check_model(graph)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ...
        checks.add(
            model, "model.onnx loads and passes onnx.checker", False, f"{onnx_path}: {type(e).__name__}"
        )
        return None
    checks.add(model, "model.onnx loads and passes onnx.checker", True, str(onnx_path))
    check_tensors(checks, model, config, graph, batching)
    if any(g.kind == g.KIND_GPU for g in config.instance_group):  # CPU repositories have no TensorRT
        _check_profiles(checks, model, config, config_tensors(config.input, batching))
    return config, onnx_path


def check_manifest(checks: Checks, repo: Path) -> None:
    from slamctl.checksum import sha256_of

    path = repo / "manifest.json"
    if not checks.add("repository", "manifest.json exists", path.is_file(), str(path)):
        return
    from slamctl.export.layout import version_files

    files = json.loads(path.read_text()).get("files", {})
    on_disk = set(version_files(repo))
    checks.add(
        "repository",
        "manifest lists every model file",
        on_disk <= set(files),
        ", ".join(sorted(on_disk - set(files))) or f"{len(files)} files",
    )
    for rel, digest in sorted(files.items()):
        f = repo / rel
        ok = f.is_file() and sha256_of(f) == digest
        checks.add(
            "repository", f"checksum {rel}", ok, "matches" if ok else f"{f}: sha256 differs from manifest"
        )


def validate_repository(
    repo: Path,
    encoder_ckpt: str | Path | None = None,
    aggregator_ckpt: Path | None = None,
    *,
    weights: Path | None = None,
    run_models: bool = True,
    bags: Path | None = None,
) -> Checks:
    """Every check on `repo`; never raises for a defect of the repository, records it.
    `encoder_ckpt` is a pretraining checkpoint or a foundation encoder's name with `weights`.

    run_models=False leaves out the ONNX Runtime runs on sample inputs (the structural and
    checksum checks stay): what `slamctl serve` checks at start, before loading each model once."""
    repo = Path(repo)
    checks = Checks()
    if not checks.add("repository", "folder exists", repo.is_dir(), str(repo)):
        return checks
    found = {}
    for model in contract.ONNX_MODELS:  # the Python-backend models: check_card, check_file_encoder
        result = check_model_config(checks, repo, model)
        if result is not None:
            found[model] = result
    check_manifest(checks, repo)
    check_card(checks, repo, {model: path for model, (_, path) in found.items()})
    encoder = found.get(contract.ENCODER)
    check_file_encoder(checks, repo, encoder[0].output[0].dims[0] if encoder else None)
    if len(found) == 2 and not checks.failures:
        enc_cfg, enc_path = found[contract.ENCODER]
        agg_cfg, agg_path = found[contract.AGGREGATOR]
        size, dim = enc_cfg.input[0].dims[0], enc_cfg.output[0].dims[0]
        agg_dim = agg_cfg.input[0].dims[-1]
        if not checks.add(
            "repository", "aggregator input D equals encoder output D", agg_dim == dim, f"{agg_dim} vs {dim}"
        ):
            return checks
        max_bag = int(
            agg_cfg.parameters[contract.MAX_BAG_PARAMETER].string_value or contract.DEFAULT_MAX_BAG_CELLS
        )
        if run_models:
            run_samples(checks, enc_path, agg_path, size, dim, max_bag)
        if encoder_ckpt and aggregator_ckpt:
            if served_precision(repo) == "int8":  # INT8 differs from PyTorch by design: compare decisions
                check_int8_decisions(
                    checks, repo, enc_path, agg_path, encoder_ckpt, aggregator_ckpt, bags, weights
                )
            else:
                check_parity(checks, enc_path, agg_path, encoder_ckpt, aggregator_ckpt, weights)
    return checks


def served_precision(repo: Path) -> str:
    """The encoder's precision the newest card records (fp32 for cards from before INT8)."""
    from slamctl.export.card import newest_card

    return newest_card(repo).precision[contract.ENCODER]
