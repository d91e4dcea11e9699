"""The model card of an export (export/model_card.py): what it lists, and `export validate`
failing when the card and the files disagree."""

import hashlib
import json
import shutil

from slamctl import contract
from slamctl.export.card import newest_card
from slamctl.export.model_card import MODEL_CARD_JSON, MODEL_CARD_MD, dataset_facts
from slamctl.training.mil_config import AGGREGATORS
from tests.conftest import TINY, run_cli


def card_of(repo):
    folder = repo / contract.MODEL_CARD / "1"
    return json.loads((folder / MODEL_CARD_JSON).read_text()), (folder / MODEL_CARD_MD).read_text()


def test_the_card_lists_how_the_model_was_made(tiny_repository, tiny_bags):
    card, markdown = card_of(tiny_repository)
    digests = {
        name: hashlib.sha256((tiny_repository / name / "1" / "model.onnx").read_bytes()).hexdigest()
        for name in contract.ONNX_MODELS
    }
    assert card["files"] == {f"{name}/1/model.onnx": digests[name] for name in contract.ONNX_MODELS}
    assert card["model_id"] == newest_card(tiny_repository).model_id and card["model_id"] in markdown
    data = card["training_data"]  # the folder the encoder checkpoint names
    assert data["available"] and data["path"] == str(tiny_bags) and len(data["sha256"]) == 64
    assert data["witness_rate"] == TINY.witness_rate
    labels = data["labels"]
    assert labels["normal"]["bags"] + labels["abnormal"]["bags"] == TINY.bags
    assert labels["abnormal"]["cells"] > 0
    assert card["pretraining"]["method"] == "slam-ags" and card["pretraining"]["config"]["crop_size"] == 32
    assert card["aggregator"]["name"] in AGGREGATORS and "patience" in card["aggregator"]["config"]
    assert 0 <= card["threshold"] <= 1 and card["threshold_rule"]
    assert {"python", "slamctl", "torch", "onnx", "onnxruntime"} <= set(card["software"])
    assert card["exported_at"].endswith("+00:00") and "Research use only" in card["intended_use"]
    # the tiny model is flagged degenerate, was trained on synthetic bags and has no evaluation
    limitations = " ".join(card["limitations"])
    assert "Flagged degenerate" in limitations and "synthetic" in limitations
    assert "No held-out evaluation" in limitations
    for section in ("## Intended use", "## Limitations", "## Training data", "## Pretraining", "## Files"):
        assert section in markdown


def test_the_data_digest_changes_with_one_cell(tiny_bags, tmp_path):
    copy = shutil.copytree(tiny_bags, tmp_path / "bags")
    before = dataset_facts(copy)
    assert dataset_facts(copy) == before  # the same folder, the same digest
    cell = sorted((copy / "bag_0000").iterdir())[0]
    cell.write_bytes(cell.read_bytes() + b"\0")
    assert dataset_facts(copy)["sha256"] != before["sha256"]
    assert dataset_facts(tmp_path / "absent") == {"path": str(tmp_path / "absent"), "available": False}


def test_validate_fails_when_the_card_and_the_files_disagree(tiny_repository, tmp_path):
    def validate(repo):
        r = run_cli("export", "validate", repo)
        return r.code, [line for line in r.err.splitlines() if line.startswith("FAIL")]

    repo = shutil.copytree(tiny_repository, tmp_path / "a")
    assert validate(repo) == (0, [])
    (repo / contract.MODEL_CARD / "1" / MODEL_CARD_MD).write_text("# a better model\n")
    code, fails = validate(repo)
    assert code == 1 and any("MODEL_CARD.md renders model_card.json" in f for f in fails)
    repo = shutil.copytree(tiny_repository, tmp_path / "b")
    path = repo / contract.MODEL_CARD / "1" / MODEL_CARD_JSON
    card = json.loads(path.read_text())
    card["files"][f"{contract.ENCODER}/1/model.onnx"] = "0" * 64
    path.write_text(json.dumps(card))
    code, fails = validate(repo)
    assert code == 1 and any(f"model card's sha256 of {contract.ENCODER}/1/model.onnx" in f for f in fails)
