"""The served aggregator's graph holds the per-bag standardisation: ONNX Runtime on the
exported file equals PyTorch (one model, a fold ensemble, top-fraction pooling: k follows the
bag's size), and a bag moved by a constant offset and scale (a slide-level
effect) gets the same probability and the same attention."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from slamctl import contract
from slamctl.training.mil import load_mil, train_mil
from slamctl.training.mil_config import MilConfig


def check_graph(session, model, dim):
    rng = np.random.default_rng(0)
    for n in (1, 2, 13, 500):
        x = rng.normal(size=(n, dim)).astype(np.float32)
        probs, attention = session.run(None, {contract.EMBEDDINGS: x})
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        np.testing.assert_allclose(probs, torch.softmax(out.logits, 0).numpy(), atol=1e-5)
        np.testing.assert_allclose(attention, out.attention.numpy(), atol=1e-6)
        offset = rng.normal(0, 3, size=dim).astype(np.float32)
        moved_probs, moved_attention = session.run(None, {contract.EMBEDDINGS: 2.5 * x + offset})
        np.testing.assert_allclose(moved_probs, probs, atol=1e-4)
        np.testing.assert_allclose(moved_attention, attention, atol=1e-4)


def test_the_served_pamil_standardises_each_bag(tiny_repository, tiny_models):
    model, ckpt = load_mil(tiny_models.aggregator)
    assert ckpt["config"]["standardise"]
    path = tiny_repository / contract.AGGREGATOR / "1" / "model.onnx"
    check_graph(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), model, ckpt["in_dim"])


@pytest.mark.parametrize(
    "folds,top_fraction", [(1, 0.0), (2, 0.0), (1, 0.1)], ids=["one-model", "fold-ensemble", "top-fraction"]
)
def test_the_exported_maxmil_standardises_each_bag(tiny_models, tmp_path, folds, top_fraction):
    from slamctl.export.onnx_export import export_pair

    cfg = MilConfig(epochs=2, restarts=1, folds=folds, top_fraction=top_fraction)  # the default, maxmil
    mil = train_mil(cfg, tiny_models.embeddings, tiny_models.bags / "labels.csv", tmp_path / "run")
    pair = export_pair(tiny_models.encoder, mil, tmp_path / "onnx", allow_degenerate=True)
    model, ckpt = load_mil(mil)
    assert pair.aggregator_name == "maxmil"
    session = ort.InferenceSession(pair.aggregator.SerializeToString(), providers=["CPUExecutionProvider"])
    check_graph(session, model, ckpt["in_dim"])
