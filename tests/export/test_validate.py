import json
import shutil

import onnx
import pytest

from slamctl import contract
from slamctl.export.model_config import parse_config
from slamctl.export.runs import same_top_cells
from slamctl.export.validate import validate_repository


@pytest.fixture
def repo(tiny_repository, tmp_path):
    return shutil.copytree(tiny_repository, tmp_path / "repo")


def failures(repo, *ckpts):
    return [f"{c.name}: {c.detail}" for c in validate_repository(repo, *ckpts).failures]


def test_exported_pair_passes_with_parity(tiny_repository, tiny_models):
    checks = validate_repository(tiny_repository, tiny_models.encoder, tiny_models.aggregator)
    assert not checks.failures, checks.failures
    names = [c.name for c in checks.items]
    assert "ONNX Runtime runs a bag of 1 cells" in names and "ONNX Runtime runs a bag of 20000 cells" in names
    assert any(n.startswith("parity with PyTorch") for n in names)
    assert any(n.startswith("parity of the top-10") for n in names)


def edit_config(repo, model, old, new, *, manifest=True, card=None):
    """Edit a config; with manifest=True its checksum is re-recorded in the manifest, and (unless
    card=False) in the model card, so that the check under test is the only one to fail."""
    from slamctl.checksum import sha256_of

    path = repo / model / "config.pbtxt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    if manifest:
        data = json.loads((repo / "manifest.json").read_text())
        data["files"][f"{model}/config.pbtxt"] = sha256_of(path)
    if manifest and card is not False:
        served = repo / contract.MODEL_CARD / "1" / "card.json"
        facts = json.loads(served.read_text())
        facts["config_sha256"][model] = sha256_of(path)
        served.write_text(json.dumps(facts))
        data["files"][str(served.relative_to(repo))] = sha256_of(served)
    if manifest:
        (repo / "manifest.json").write_text(json.dumps(data))


def test_a_config_changed_behind_the_manifest_is_caught(repo):
    edit_config(repo, contract.AGGREGATOR, 'string_value: "20000"', 'string_value: "25000"', manifest=False)
    config = repo / contract.AGGREGATOR / "config.pbtxt"
    assert failures(repo) == [
        f"checksum {contract.AGGREGATOR}/config.pbtxt: {config}: sha256 differs from manifest",
        f"card's sha256 of {contract.AGGREGATOR}/config.pbtxt matches: {config} differs",
    ]


def test_wrong_dim_in_config(repo):
    edit_config(repo, contract.ENCODER, "dims: [32, 32, 3]", "dims: [224, 224, 3]")
    assert any("input IMAGES dims" in f for f in failures(repo))


def test_renamed_tensor(repo):
    edit_config(repo, contract.AGGREGATOR, 'name: "ATTENTION"', 'name: "SCORES"')
    found = failures(repo)
    assert any("output names equal the ONNX graph's" in f for f in found)
    assert any("tensor names follow the serving contract" in f for f in found)


def test_preferred_batch_above_max(repo):
    edit_config(
        repo, contract.ENCODER, "preferred_batch_size: [64, 128, 256]", "preferred_batch_size: [64, 512]"
    )
    assert any("preferred batch sizes <= max_batch_size" in f for f in failures(repo))


def test_profile_above_max_batch(repo):
    edit_config(repo, contract.ENCODER, "IMAGES:256x32x32x3", "IMAGES:512x32x32x3")
    assert any("profile batch within max_batch_size" in f for f in failures(repo))


def test_truncated_model(repo):
    path = repo / contract.ENCODER / "1" / "model.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    found = failures(repo)
    assert any("model.onnx loads and passes onnx.checker" in f for f in found)
    assert any("checksum slam_encoder/1/model.onnx" in f for f in found)


def test_checksum_mismatch(repo):
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["files"]["mil_aggregator/1/model.onnx"] = "0" * 64
    (repo / "manifest.json").write_text(json.dumps(manifest))
    assert failures(repo) == [
        "checksum mil_aggregator/1/model.onnx: "
        + f"{repo}/mil_aggregator/1/model.onnx: sha256 differs from manifest"
    ]


def test_syntax_error(repo):
    edit_config(repo, contract.AGGREGATOR, "version_policy {", "version_policy { }}")
    found = failures(repo)
    assert len(found) == 1 and found[0].startswith("config.pbtxt parses:") and "config.pbtxt:3" in found[0]


def test_unknown_field_and_bad_enum(repo):
    edit_config(repo, contract.ENCODER, "kind: KIND_GPU", "kind: KIND_TPU")
    assert any("config.pbtxt parses" in f and "KIND_TPU" in f for f in failures(repo))


def test_metadata_records_provenance(tiny_repository):
    model = onnx.load(str(tiny_repository / contract.ENCODER / "1" / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert (
        meta["slamctl_features"] == "h" and meta["slamctl_dim"] == "32" and meta["slamctl_input_size"] == "32"
    )
    assert len(meta["slamctl_checkpoint_sha256"]) == 64 and json.loads(meta["slamctl_mean"])[0] == 0.6009
    assert json.loads(meta["slamctl_training_config"])["method"] == "slam-ags"
    assert model.opset_import[0].version >= 17


def test_top_cells_tolerates_ties_only():
    import numpy as np

    ref = np.array([0.5, 0.2, 0.2, 0.1])
    assert same_top_cells(ref, ref + 1e-12, 2)[0]
    assert not same_top_cells(ref, np.array([0.5, 0.1, 0.1, 0.3]), 2)[0]


def test_tensorrt_engine_cache_is_keyed_by_the_model_file(tiny_models, tmp_path):
    """A retrained model never loads an old engine: the cache folder is per checksum; the
    same weights exported twice share theirs."""
    import re

    from slamctl.export.onnx_export import export_pair
    from slamctl.export.repository import write_repository
    from slamctl.training.mil import MilConfig, train_mil

    def cache_paths(repo):
        configs = {
            m: parse_config(repo / m / "config.pbtxt") for m in (contract.ENCODER, contract.AGGREGATOR)
        }
        return {
            m: c.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters[
                "trt_engine_cache_path"
            ]
            for m, c in configs.items()
        }

    pair = export_pair(tiny_models.encoder, tiny_models.aggregator, tmp_path / "onnx", allow_degenerate=True)
    write_repository(pair, tmp_path / "a")
    again = export_pair(
        tiny_models.encoder, tiny_models.aggregator, tmp_path / "onnx2", allow_degenerate=True
    )
    write_repository(again, tmp_path / "b")
    assert cache_paths(tmp_path / "a") == cache_paths(tmp_path / "b")  # same weights, same engine
    first = cache_paths(tmp_path / "a")
    assert re.fullmatch(rf"/trt_cache/{contract.ENCODER}-[0-9a-f]{{16}}", first[contract.ENCODER])
    retrained = train_mil(
        MilConfig(epochs=1, patience=1, seed=7),
        tiny_models.embeddings,
        tiny_models.bags / "labels.csv",
        tmp_path / "mil",
    )
    pair2 = export_pair(tiny_models.encoder, retrained, tmp_path / "onnx3", allow_degenerate=True)
    write_repository(pair2, tmp_path / "a")  # version 2 of the same architecture, other weights
    second = cache_paths(tmp_path / "a")
    assert second[contract.AGGREGATOR] != first[contract.AGGREGATOR]
    assert second[contract.ENCODER] == first[contract.ENCODER]  # the encoder did not change


def test_weights_moved_to_an_external_data_file_are_hashed_or_refused(repo):
    """The manifest hashes every file of a version folder: weights moved out of model.onnx
    into an external-data file beside it cannot be changed behind validate (or added unlisted)."""
    from onnx.external_data_helper import convert_model_to_external_data

    manifest = json.loads((repo / "manifest.json").read_text())
    listed = set(manifest["files"])
    for model in (contract.ENCODER, contract.AGGREGATOR, contract.MODEL_CARD, contract.FILE_ENCODER):
        assert {str(p.relative_to(repo)) for p in (repo / model / "1").iterdir()} <= listed
    path = repo / contract.AGGREGATOR / "1" / "model.onnx"
    model = onnx.load(path)
    convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save(model, path)  # model.onnx re-sealed in the manifest, its weights now in weights.bin
    from slamctl.checksum import sha256_of

    manifest["files"][f"{contract.AGGREGATOR}/1/model.onnx"] = sha256_of(path)
    (repo / "manifest.json").write_text(json.dumps(manifest))
    assert any("manifest lists every model file: mil_aggregator/1/weights.bin" in f for f in failures(repo))
    manifest["files"][f"{contract.AGGREGATOR}/1/weights.bin"] = sha256_of(path.parent / "weights.bin")
    (repo / "manifest.json").write_text(json.dumps(manifest))
    weights = path.parent / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one weight changed
    weights.write_bytes(bytes(data))
    assert any("checksum mil_aggregator/1/weights.bin" in f for f in failures(repo))


def test_the_model_id_covers_the_threshold_and_every_config(repo):
    """A repository resealed with threshold 0.99 and another max_batch_size has another model
    id (so --expect-model refuses it), and a config changed behind the card fails validate
    even with the manifest resealed."""
    from dataclasses import replace

    from slamctl.export.card import newest_card

    card = newest_card(repo)
    assert set(card.config_sha256) == set(contract.SERVED_MODELS)
    assert replace(card, threshold=0.99).model_id != card.model_id
    for name in card.config_sha256:
        assert replace(card, config_sha256={**card.config_sha256, name: "0" * 64}).model_id != card.model_id
    edit_config(repo, contract.ENCODER, "max_batch_size: 256", "max_batch_size: 100000", card=False)
    assert any(f"card's sha256 of {contract.ENCODER}/config.pbtxt matches" in f for f in failures(repo))
