import json

from slamctl import contract
from slamctl.export.model_config import parse_config
from tests.conftest import run_cli


def test_export_then_validate_and_versions(tiny_models, tmp_path):
    repo = tmp_path / "repo"
    args = [
        "export",
        "--encoder",
        tiny_models.encoder,
        "--aggregator",
        tiny_models.aggregator,
        "--repository",
        repo,
    ]
    r = run_cli(*args)  # the tiny model of a few steps decides nothing: export refuses it by default
    assert r.code == 1 and "degenerate model (" in r.err and "--allow-degenerate" in r.err
    assert r.err.strip().count("\n") == 0 and not repo.exists()
    args.append("--allow-degenerate")
    summary = tmp_path / "summary.json"  # as `slamctl evaluate` writes it
    summary.write_text(json.dumps({"bag_auc": 0.75, "bag_f1": 0.5, "threshold": 0.5}))
    r = run_cli(*args, "--evaluation", summary)
    assert r.code == 0, r.err
    assert "wrote version 1" in r.err
    model_card = json.loads((repo / contract.MODEL_CARD / "1" / "model_card.json").read_text())
    assert r.out.strip() == f"model id {model_card['model_id']}"  # the answer on stdout
    assert model_card["evaluation"]["bag_auc"] == 0.75
    assert "| bag_auc | 0.75 |" in (repo / contract.MODEL_CARD / "1" / "MODEL_CARD.md").read_text()
    r = run_cli(*args)  # a second export adds version 2 and keeps version 1
    assert r.code == 0 and "wrote version 2" in r.err
    assert (repo / contract.ENCODER / "1" / "model.onnx").exists()
    manifest = json.loads((repo / "manifest.json").read_text())
    assert (
        manifest["latest_version"] == 2 and len(manifest["files"]) == 18
    )  # per version: 2 ONNX files, 4 card files (card.json, model.py, model_card.json, MODEL_CARD.md),
    # the file encoder's model.py; and 4 configs
    card = json.loads((repo / contract.MODEL_CARD / "2" / "card.json").read_text())
    assert card["degenerate"] is True and card["version"] == 2 and 0 <= card["threshold"] <= 1
    assert manifest["versions"]["2"]["threshold"] == card["threshold"]
    config = parse_config(repo / contract.AGGREGATOR / "config.pbtxt")
    assert config.parameters[contract.THRESHOLD_PARAMETER].string_value == repr(card["threshold"])
    r = run_cli(
        "export", "validate", repo, "--encoder", tiny_models.encoder, "--aggregator", tiny_models.aggregator
    )
    assert r.code == 0, r.err
    assert "checks passed" in r.out  # the answer on stdout, diagnostics on stderr
    r = run_cli(*args, "--version", 1)
    assert r.code == 1 and "--version 1: expected >= 2" in r.err


def test_validate_fails_with_one_line_per_failure(tiny_repository, tmp_path):
    import shutil

    repo = shutil.copytree(tiny_repository, tmp_path / "repo")
    (repo / contract.AGGREGATOR / "config.pbtxt").write_text("name: {")
    r = run_cli("export", "validate", repo)
    assert r.code == 1
    fails = [line for line in r.err.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 3 and "mil_aggregator: config.pbtxt parses" in fails[0]
    assert "checksum mil_aggregator/config.pbtxt" in fails[1]  # the manifest covers the configs too
    assert "card's sha256 of mil_aggregator/config.pbtxt matches" in fails[2]  # and the model id


def test_export_needs_both_checkpoints(tmp_path):
    r = run_cli("export", "--encoder", tmp_path / "x.pt")
    assert r.code == 2 and "--aggregator" in r.out + r.err
