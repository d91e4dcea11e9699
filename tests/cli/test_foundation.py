"""A foundation encoder end to end: DinoBloom-S weights (random, in DinoBloom's layout) embedded,
trained on, exported, validated, served by the real embedded Triton and used by `slamctl infer`."""

import json

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from slamctl import contract
from slamctl.checksum import sha256_of
from slamctl.export.runs import EMBEDDING_TOL
from slamctl.images import prepare_cell
from slamctl.serving.launcher import start_server, stop_server
from slamctl.training.embed import load_embedded
from slamctl.training.mil import load_mil
from slamctl.training.synthetic import SynthConfig, generate
from tests.conftest import run_cli
from tests.foundation_weights import write_dinobloom

pytestmark = pytest.mark.slow

# few cells: ViT-S at 224 px runs about 5 cells/s on one CPU core
BAGS = SynthConfig(bags=6, cells_per_bag=5, witness_rate=0.2, image_size=48, seed=3, test_fraction=0.34)


@pytest.fixture(scope="module")
def dinobloom_run(tmp_path_factory):
    """Embeddings, a MIL model and a model repository made by the CLI from DinoBloom-S weights."""
    root = tmp_path_factory.mktemp("dinobloom")
    bags, weights = root / "bags", write_dinobloom(root / "DinoBloom-S.pth")
    generate(BAGS, bags)
    r = run_cli(
        "train",
        "embed",
        "--encoder",
        "dinobloom-s",
        "--weights",
        weights,
        "--bags",
        bags,
        "--out",
        root / "emb",
    )
    assert r.code == 0, r.err
    r = run_cli(
        "train", "mil", "--embeddings", root / "emb", "--labels", bags / "labels.csv", "--out", root / "run",
        "--epochs", "3", "--restarts", "1",
    )  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli(
        "export", "--encoder", "dinobloom-s", "--weights", weights, "--aggregator", root / "run" / "mil.pt",
        "--repository", root / "repo", "--allow-degenerate",
    )  # fmt: skip
    assert r.code == 0, r.err
    return root, bags, weights


def test_embed_records_the_weights_and_the_class_token(dinobloom_run):
    root, bags, weights = dinobloom_run
    meta = json.loads((root / "emb" / "embedding.json").read_text())
    assert meta["encoder_name"] == "dinobloom-s" and meta["encoder"] == str(weights)
    assert meta["encoder_sha256"] == sha256_of(weights)
    assert (meta["features"], meta["dim"], meta["image_size"], meta["crop_size"]) == ("cls", 384, 224, 224)
    emb = load_embedded(root / "emb" / "bag_0000.npz")
    assert emb.features.shape[1] == 384 and np.isfinite(emb.features).all()


def test_the_repository_serves_d_384_and_the_card_names_the_encoder(dinobloom_run):
    root, _, weights = dinobloom_run
    repo = root / "repo"
    card_md = (repo / contract.MODEL_CARD / "1" / "MODEL_CARD.md").read_text()
    assert (
        "| encoder | dinobloom-s |" in card_md and f"| weights sha256 | `{sha256_of(weights)}` |" in card_md
    )
    card = json.loads((repo / contract.MODEL_CARD / "1" / "model_card.json").read_text())
    assert card["pretraining"]["encoder"] == "dinobloom-s" and card["dim"] == 384
    r = run_cli(
        "export", "validate", repo, "--encoder", "dinobloom-s", "--weights", weights,
        "--aggregator", root / "run" / "mil.pt",
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    assert "parity with PyTorch" in r.out and "checks passed" in r.out


def test_served_embeddings_and_decision_equal_pytorch(dinobloom_run, tmp_path):
    root, bags, _ = dinobloom_run
    running = start_server(root / "repo", tmp_path)
    try:
        bag = bags / "bag_0005"
        r = run_cli("infer", bag, "--url", running.grpc_url, "--out", tmp_path / "out", "--top-k", 3)
        assert r.code == 0, r.err
        files = sorted(bag.iterdir())
        images = np.stack([prepare_cell(f, 224, 224) for f in files])
        client = grpcclient.InferenceServerClient(running.grpc_url)
        request = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        served = client.infer(contract.ENCODER, [request]).as_numpy(contract.EMBEDDINGS)
    finally:
        stop_server(running.process)
    trained = load_embedded(root / "emb" / "bag_0005.npz")  # PyTorch's, from `train embed`
    assert served.shape == (len(files), 384) and trained.names == [f.name for f in files]
    assert float(np.abs(served - trained.features).max()) <= EMBEDDING_TOL
    result = json.loads((tmp_path / "out" / "bag_0005.json").read_text())
    model, _ = load_mil(root / "run" / "mil.pt")
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(trained.features)).logits, 0)[1].item()
    assert result["decision"]["probability_abnormal"] == pytest.approx(ref, abs=1e-4)
    assert result["cells"] == len(files) and len(result["top_k"]) == 3


def test_the_wrong_encoder_for_the_aggregator_is_one_line(dinobloom_run, tiny_models, tmp_path):
    root, _, weights = dinobloom_run
    mil = root / "run" / "mil.pt"
    for encoder, extra, expected in [
        (tiny_models.encoder, [], "was trained on embeddings of dinobloom-s, not slamctl"),
        ("dinobloom-b", ["--weights", weights], "was trained on embeddings of dinobloom-s, not dinobloom-b"),
        ("dinobloom-s", [], "--encoder dinobloom-s: pass its weights file with --weights"),
    ]:
        r = run_cli(
            "export", "--encoder", encoder, *extra, "--aggregator", mil, "--repository", tmp_path / "r"
        )
        assert r.code == 1 and expected in r.err and r.err.strip().count("\n") == 0, r.err
    r = run_cli("train", "embed", "--encoder", "dinobloom-b", "--weights", weights, "--bags", root / "bags",
                "--out", tmp_path / "emb")  # fmt: skip
    assert r.code == 1 and "holds a dinobloom-s backbone" in r.err and "pass --encoder dinobloom-s" in r.err
    assert r.err.strip().count("\n") == 0
