"""`slamctl export --int8` (export/quantize.py): a CPU repository with a quantised encoder, and
the check that holds its decisions to FP32's."""

import json
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper

from slamctl import contract
from slamctl.export.quantize import check_int8
from slamctl.training.bagset import load_bags
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def int8_repository(tiny_models, tmp_path_factory):
    repo = tmp_path_factory.mktemp("int8") / "repo"
    r = run_cli(
        "export",
        "--encoder",
        tiny_models.encoder,
        "--aggregator",
        tiny_models.aggregator,
        "--repository",
        repo,
        "--int8",
        "--allow-degenerate",
    )
    assert r.code == 0, r.err
    return repo


def test_int8_export_writes_a_cpu_repository_with_a_quantised_encoder(int8_repository):
    config = (int8_repository / contract.ENCODER / "config.pbtxt").read_text()
    assert "KIND_CPU" in config and "tensorrt" not in config and "KIND_GPU" not in config
    encoder = onnx.load(str(int8_repository / contract.ENCODER / "1" / "model.onnx"))
    ops = Counter(n.op_type for n in encoder.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    assert {p.key: p.value for p in encoder.metadata_props}["slamctl_precision"] == "int8"
    card = json.loads((int8_repository / contract.MODEL_CARD / "1" / "card.json").read_text())
    assert (
        card["precision"] == {contract.ENCODER: "int8", contract.AGGREGATOR: "fp32"}
        and card["device"] == "cpu"
    )
    r = run_cli("export", "validate", int8_repository)  # structure, checksums, ONNX Runtime runs
    assert r.code == 0, r.err


def test_int8_validation_needs_held_out_bags(int8_repository, tiny_models):
    args = ("export", "validate", int8_repository, "--encoder", tiny_models.encoder)
    args += ("--aggregator", tiny_models.aggregator)
    r = run_cli(*args)
    assert r.code == 1 and "INT8: held-out bags to compare with FP32 (--bags)" in r.err
    r = run_cli(*args, "--bags", tiny_models.bags)
    assert "INT8: top-" in r.out and "parity with PyTorch" not in r.out  # INT8 is held to decisions


def negated(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same encoder with its embeddings negated: another model, whose decisions change."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    out = model.graph.output[0]
    inner = out.name + "_before"
    for node in model.graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    model.graph.node.append(helper.make_node("Neg", [inner], [out.name]))
    return model


def test_int8_check_passes_the_same_model_and_fails_a_changed_one(int8_repository, tiny_models):
    """Positive and negative controls of check_int8 on the tiny model's held-out bags."""
    repo = int8_repository
    served = onnx.load(str(repo / contract.ENCODER / "1" / "model.onnx"))  # the INT8 encoder
    aggregator = repo / contract.AGGREGATOR / "1" / "model.onnx"
    bags = [(b.bag_id, list(b.files)) for b in load_bags(tiny_models.bags)]
    card = json.loads((repo / contract.MODEL_CARD / "1" / "card.json").read_text())
    sizes = (card["image_size"], card["input_size"], card["threshold"], 4)
    same = check_int8(served, served, aggregator, bags, *sizes)
    assert same["same_decisions"] == len(bags) and same["top_k_overlap"] == 1.0
    changed = check_int8(negated(served), served, aggregator, bags, *sizes)
    assert changed["top_k_overlap"] < 0.9 or changed["same_decisions"] < len(bags), changed
    probs = np.array([(p32, p8) for _, p32, p8, _ in changed["rows"]])
    assert not np.allclose(probs[:, 0], probs[:, 1])
