"""Validating a model repository before it is served: what a CI pipeline runs after training.

Checks, per model: config.pbtxt parses as Triton's ModelConfig (syntax, unknown fields, bad
enums); the config follows the serving contract; its tensor names, dtypes and dims equal
the ONNX graph's; preferred batch sizes and TensorRT profile shapes fit max_batch_size
and the tensors; the manifest's checksums match every model file; the model card model is well formed
and its card names the served ONNX files' checksums; ONNX Runtime runs the
served version on sample inputs (a bag of one cell and of the maximum size included).
With the checkpoints, parity with PyTorch: embeddings within 1e-4, bag probabilities
within 1e-5, the same top-10 cells. Needs no torch unless checkpoints are given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slamctl import contract
from slamctl.errors import SlamError
from slamctl.export.repository import dtype_name, parse_config

EMBEDDING_TOL = 1e-4
PROB_TOL = 1e-5
TOP_CELLS = 10


@dataclass(frozen=True)
class Check:
    model: str
    name: str
    ok: bool
    detail: str


class Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, model: str, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Check(model, name, bool(ok), detail))
        return bool(ok)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.items if not c.ok]


ONNX_TO_TRITON = {2: "TYPE_UINT8", 1: "TYPE_FP32"}  # onnx.TensorProto.UINT8, FLOAT


def _onnx_tensors(values) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {}
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out[v.name] = (ONNX_TO_TRITON.get(t.elem_type, f"onnx:{t.elem_type}"), dims)
    return out


def _config_tensors(entries, batching: bool) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {e.name: (dtype_name(e.data_type), ((-1,) if batching else ()) + tuple(e.dims)) for e in entries}


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


def check_model_config(checks: Checks, repo: Path, model: str):
    """Parse and check one model's config against the contract and its ONNX graph."""
    import onnx

    from slamctl.export.repository import existing_versions

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
    checks.add(model, "platform onnxruntime_onnx", config.platform == "onnxruntime_onnx", config.platform)
    batching = config.max_batch_size > 0
    if model == contract.ENCODER:
        checks.add(
            model,
            f"max_batch_size >= {contract.ENCODER_MIN_MAX_BATCH}",
            config.max_batch_size >= contract.ENCODER_MIN_MAX_BATCH,
            str(config.max_batch_size),
        )
        checks.add(model, "dynamic batching", config.HasField("dynamic_batching"))
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
    else:
        checks.add(
            model,
            "max_batch_size 0 (one bag per request)",
            config.max_batch_size == 0,
            str(config.max_batch_size),
        )

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
    for kind, entries, values in (
        ("input", config.input, graph.graph.input),
        ("output", config.output, graph.graph.output),
    ):
        want, have = _config_tensors(entries, batching), _onnx_tensors(values)
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
    specs = {
        contract.ENCODER: (contract.encoder_inputs(0), contract.encoder_outputs(0)),
        contract.AGGREGATOR: (contract.aggregator_inputs(0), contract.aggregator_outputs()),
    }[model]
    contract_names = tuple({t.name for t in tensors} for tensors in specs)
    checks.add(
        model,
        "tensor names follow the serving contract",
        ({e.name for e in config.input}, {e.name for e in config.output}) == contract_names,
        f"inputs {[e.name for e in config.input]}, outputs {[e.name for e in config.output]}",
    )
    if any(g.kind == g.KIND_GPU for g in config.instance_group):  # CPU repositories have no TensorRT
        _check_profiles(checks, model, config, _config_tensors(config.input, batching))
    return config, onnx_path


def check_manifest(checks: Checks, repo: Path) -> None:
    from slamctl.checksum import sha256_of

    path = repo / "manifest.json"
    if not checks.add("repository", "manifest.json exists", path.is_file(), str(path)):
        return
    from slamctl.export.repository import version_files

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


def _python_model_config(checks: Checks, repo: Path, model: str, *, batching: bool):
    """The config of a Python-backend model: exists, parses, backend python, batching as
    expected; None when it cannot be read (recorded)."""
    config_path = repo / model / "config.pbtxt"
    if not checks.add(model, "config.pbtxt exists", config_path.is_file(), f"{config_path} (export again)"):
        return None
    try:
        config = parse_config(config_path)
    except SlamError as e:
        checks.add(model, "config.pbtxt parses", False, str(e))
        return None
    # a batch dimension, but no dynamic batcher: the Python backend fails every request of a
    # merged batch when one holds a malformed BYTES element (export/file_encoder.py)
    batched = config.max_batch_size > 0 and not config.HasField("dynamic_batching")
    checks.add(
        model,
        f"backend python, {'a batch dimension, no dynamic batching' if batching else 'no batching'}",
        config.backend == "python" and (batched if batching else config.max_batch_size == 0),
        f"backend {config.backend!r}, max_batch_size {config.max_batch_size}",
    )
    return config


def check_card(checks: Checks, repo: Path, onnx_paths: dict[str, Path]) -> None:
    """The model card model: config, files, and a card that matches the served ONNX files."""
    from slamctl.card import parse_card
    from slamctl.checksum import sha256_of
    from slamctl.export.card import CARD_FILE
    from slamctl.export.repository import existing_versions

    model = contract.MODEL_CARD
    config = _python_model_config(checks, repo, model, batching=False)
    if config is None:
        return
    want = {t.name: (t.triton_dtype, t.dims) for t in contract.card_inputs() + contract.card_outputs()}
    have = _config_tensors([*config.input, *config.output], batching=False)
    checks.add(model, "tensors follow the serving contract", want == have, f"{have}")
    versions = existing_versions(repo / model)
    folder = repo / model / str(versions[-1]) if versions else repo / model / "<none>"
    ok = (folder / CARD_FILE).is_file() and (folder / "model.py").is_file()
    if not checks.add(model, "a version folder with card.json and model.py", ok, str(folder)):
        return
    try:
        card = parse_card((folder / CARD_FILE).read_bytes(), str(folder / CARD_FILE))
    except SlamError as e:
        checks.add(model, "card.json is a model card", False, str(e))
        return
    checks.add(model, "card.json is a model card", True)
    checks.add(
        model,
        "card version equals its folder",
        str(card["version"]) == folder.name,
        f"{card['version']} in {folder.name}/",
    )
    checks.add(model, "threshold in [0, 1]", 0 <= float(card["threshold"]) <= 1, str(card["threshold"]))
    digests = {name: sha256_of(path) for name, path in onnx_paths.items()}
    for name, path in onnx_paths.items():
        ok = card["sha256"].get(name) == digests[name]
        checks.add(
            model,
            f"card's sha256 of {name} matches {path.parent.name}/model.onnx",
            ok,
            "matches" if ok else f"card {str(card['sha256'].get(name))[:12]}... differs from {path}",
        )
    for name in (*contract.ONNX_MODELS, contract.MODEL_CARD, contract.FILE_ENCODER):  # the id covers them
        path = repo / name / "config.pbtxt"
        ok = path.is_file() and card["config_sha256"].get(name) == sha256_of(path)
        checks.add(
            model, f"card's sha256 of {name}/config.pbtxt matches", ok, "matches" if ok else f"{path} differs"
        )
    check_model_card(checks, folder, card, onnx_paths, digests)


def check_file_encoder(checks: Checks, repo: Path, dim: int | None) -> None:
    """The encoded wire path's model (export/file_encoder.py): config and model.py."""
    from slamctl.export.repository import existing_versions

    model = contract.FILE_ENCODER
    config = _python_model_config(checks, repo, model, batching=True)
    if config is None:
        return
    if dim is not None:
        specs = contract.file_encoder_inputs() + contract.file_encoder_outputs(dim)
        want = {t.name: (t.triton_dtype, (-1, *t.dims)) for t in specs}
        have = _config_tensors([*config.input, *config.output], batching=True)
        checks.add(model, "tensors follow the serving contract", want == have, f"{have}")
    versions = existing_versions(repo / model)
    ok = bool(versions) and (repo / model / str(versions[-1]) / "model.py").is_file()
    checks.add(model, "a version folder with model.py", ok, str(repo / model))


def check_model_card(
    checks: Checks, folder: Path, served: dict, onnx_paths: dict[str, Path], digests: dict[str, str]
) -> None:
    """model_card.json names the served files' checksums; MODEL_CARD.md is its rendering."""
    from slamctl.card import model_id
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
        ok = card.get("model_id") == model_id(served)
        checks.add(model, "model card's model id is the served pair's", ok, card.get("model_id", "absent"))
    ok = markdown == render_markdown(card)
    checks.add(
        model,
        "MODEL_CARD.md renders model_card.json",
        ok,
        "matches" if ok else f"{folder / MODEL_CARD_MD} was changed",
    )


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_samples(
    checks: Checks, encoder_onnx: Path, aggregator_onnx: Path, size: int, dim: int, max_bag: int
) -> None:
    rng = np.random.default_rng(0)
    enc = _session(encoder_onnx)
    for batch in (1, 5):
        images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
        (emb,) = enc.run([contract.EMBEDDINGS], {contract.IMAGES: images})
        checks.add(
            contract.ENCODER,
            f"ONNX Runtime runs a batch of {batch}",
            emb.shape == (batch, dim) and np.isfinite(emb).all(),
            f"EMBEDDINGS {emb.shape}",
        )
    agg = _session(aggregator_onnx)
    for n in (1, max_bag):
        probs, attention = agg.run(
            [contract.BAG_PROBS, contract.ATTENTION],
            {contract.EMBEDDINGS: rng.normal(size=(n, dim)).astype(np.float32)},
        )
        ok = (
            probs.shape == (2,)
            and attention.shape == (n,)
            and abs(probs.sum() - 1) < 1e-5
            and abs(attention.sum() - 1) < 1e-3
        )
        checks.add(
            contract.AGGREGATOR,
            f"ONNX Runtime runs a bag of {n} cells",
            ok,
            f"BAG_PROBS {probs.shape} sum {probs.sum():.6f}, ATTENTION {attention.shape}",
        )


def check_parity(
    checks: Checks, encoder_onnx: Path, aggregator_onnx: Path, encoder_ckpt: Path, aggregator_ckpt: Path
) -> None:
    """ONNX Runtime vs PyTorch on the same inputs, from the training checkpoints."""
    import torch

    from slamctl.export.onnx_export import AggregatorGraph, EncoderGraph
    from slamctl.training.encoder import load_encoder
    from slamctl.training.mil import load_mil

    encoder, cfg = load_encoder(encoder_ckpt)
    aggregator, ckpt = load_mil(aggregator_ckpt)
    size, features = int(cfg["crop_size"]), ckpt["embedding"]["features"]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(8, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = EncoderGraph(encoder, features).eval()(torch.from_numpy(images)).numpy()
    (got,) = _session(encoder_onnx).run([contract.EMBEDDINGS], {contract.IMAGES: images})
    diff = float(np.abs(ref - got).max())
    checks.add(
        contract.ENCODER,
        f"parity with PyTorch (max |diff| <= {EMBEDDING_TOL:g})",
        diff <= EMBEDDING_TOL,
        f"{diff:.2e}",
    )
    bag = rng.normal(size=(500, ckpt["in_dim"])).astype(np.float32)
    with torch.no_grad():
        ref_p, ref_a = (t.numpy() for t in AggregatorGraph(aggregator).eval()(torch.from_numpy(bag)))
    got_p, got_a = _session(aggregator_onnx).run(
        [contract.BAG_PROBS, contract.ATTENTION], {contract.EMBEDDINGS: bag}
    )
    diff = float(np.abs(ref_p - got_p).max())
    checks.add(
        contract.AGGREGATOR,
        f"parity of BAG_PROBS (max |diff| <= {PROB_TOL:g})",
        diff <= PROB_TOL,
        f"{diff:.2e}",
    )
    checks.add(
        contract.AGGREGATOR, f"parity of the top-{TOP_CELLS} cells", *same_top_cells(ref_a, got_a, TOP_CELLS)
    )


def same_top_cells(ref: np.ndarray, got: np.ndarray, k: int) -> tuple[bool, str]:
    """Are the k cells of highest attention the same? Cells tied (within float error) with
    the k-th value may trade places: which of them is kept is not a property of the model."""
    top_ref = set(np.argsort(-ref, kind="stable")[:k].tolist())
    top_got = set(np.argsort(-got, kind="stable")[:k].tolist())
    kth = np.sort(ref)[::-1][k - 1] if len(ref) >= k else -np.inf
    tie = 1e-6 * max(abs(float(kth)), 1e-12)
    swapped = top_ref ^ top_got
    ok = all(abs(float(ref[i]) - float(kth)) <= tie for i in swapped)
    detail = (
        "identical"
        if not swapped
        else f"{len(swapped) // 2} swap(s) " + ("among ties" if ok else "beyond ties")
    )
    return ok, f"{detail}; max |attention diff| {float(np.abs(ref - got).max()):.1e}"


def check_int8_decisions(
    checks: Checks,
    repo: Path,
    encoder_onnx: Path,
    aggregator_onnx: Path,
    encoder_ckpt: Path,
    aggregator_ckpt: Path,
    bags_dir: Path | None,
) -> None:
    """The INT8 encoder against the FP32 one of the same checkpoints, on held-out bags."""
    import tempfile

    from slamctl.export.onnx_export import export_pair
    from slamctl.export.quantize import MIN_TOP_K_OVERLAP, check_int8
    from slamctl.training.bagset import load_bags
    from slamctl.training.metrics import default_top_k

    model = contract.ENCODER
    if not checks.add(
        model, "INT8: held-out bags to compare with FP32 (--bags)", bags_dir is not None, str(bags_dir)
    ):
        return
    bags = load_bags(bags_dir, split="test")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_pair(encoder_ckpt, aggregator_ckpt, Path(tmp), allow_degenerate=True)
    card = newest_card(repo)
    top_k = default_top_k(max(len(b.files) for b in bags))
    found = check_int8(
        encoder_onnx,
        fp32.encoder,
        aggregator_onnx,
        [(b.bag_id, list(b.files)) for b in bags],
        fp32.image_size,
        fp32.size,
        float(card["threshold"]),
        top_k,
    )
    checks.add(
        model,
        f"INT8: the same decisions as FP32 on {found['bags']} held-out bags",
        found["same_decisions"] == found["bags"],
        f"{found['same_decisions']} of {found['bags']} the same",
    )
    checks.add(
        model,
        f"INT8: top-{top_k} cells overlap FP32's >= {MIN_TOP_K_OVERLAP:g}",
        found["top_k_overlap"] >= MIN_TOP_K_OVERLAP,
        f"mean overlap {found['top_k_overlap']:.3f}",
    )


def validate_repository(
    repo: Path,
    encoder_ckpt: Path | None = None,
    aggregator_ckpt: Path | None = None,
    *,
    run_models: bool = True,
    bags: Path | None = None,
) -> Checks:
    """Every check on `repo`; never raises for a defect of the repository, records it.

    run_models=False leaves out the ONNX Runtime runs on sample inputs (the structural and
    checksum checks stay): what `slamctl serve` checks at start, before loading each model once."""
    repo = Path(repo)
    checks = Checks()
    if not checks.add("repository", "folder exists", repo.is_dir(), str(repo)):
        return checks
    found = {}
    for model in (contract.ENCODER, contract.AGGREGATOR):
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
                check_int8_decisions(checks, repo, enc_path, agg_path, encoder_ckpt, aggregator_ckpt, bags)
            else:
                check_parity(checks, enc_path, agg_path, encoder_ckpt, aggregator_ckpt)
    return checks


def newest_card(repo: Path) -> dict:
    """card.json of the newest version (check_card has checked it)."""
    from slamctl.export.card import newest_card_path

    return json.loads(newest_card_path(repo).read_text())


def served_precision(repo: Path) -> str:
    """The encoder's precision the newest card records (fp32 for cards from before INT8)."""
    return newest_card(repo).get("precision", {}).get(contract.ENCODER, "fp32")
