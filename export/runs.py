"""`export validate`'s runs: ONNX Runtime on sample inputs, parity with the PyTorch
checkpoints (embeddings within EMBEDDING_TOL, bag probabilities within PROB_TOL, the same
top cells) and, for an INT8 encoder, the decisions on real bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slamctl import contract
from slamctl.export.checks import Checks
from slamctl.export.sessions import cpu_session

EMBEDDING_TOL = 1e-4
PROB_TOL = 1e-5
TOP_CELLS = 10


def run_samples(
    checks: Checks, encoder_onnx: Path, aggregator_onnx: Path, size: int, dim: int, max_bag: int
) -> None:
    rng = np.random.default_rng(0)
    enc = cpu_session(encoder_onnx)
    for batch in (1, 5):
        images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
        (emb,) = enc.run([contract.EMBEDDINGS], {contract.IMAGES: images})
        checks.add(
            contract.ENCODER,
            f"ONNX Runtime runs a batch of {batch}",
            emb.shape == (batch, dim) and np.isfinite(emb).all(),
            f"EMBEDDINGS {emb.shape}",
        )
    agg = cpu_session(aggregator_onnx)
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
    checks: Checks,
    encoder_onnx: Path,
    aggregator_onnx: Path,
    encoder_ckpt: str | Path,
    aggregator_ckpt: Path,
    weights: Path | None = None,
) -> None:
    """ONNX Runtime vs PyTorch on the same inputs, from the training checkpoints (or the
    foundation encoder's weights)."""
    import torch

    from slamctl.export.onnx_export import AggregatorGraph, EncoderGraph
    from slamctl.training.extractor import open_extractor
    from slamctl.training.mil import load_mil

    aggregator, ckpt = load_mil(aggregator_ckpt)
    emb = ckpt["embedding"]
    ex = open_extractor(
        encoder_ckpt, weights=weights, features=emb["features"], interpolate=emb.get("interpolated", False)
    )
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(8, ex.crop_size, ex.crop_size, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = EncoderGraph(ex.module).eval()(torch.from_numpy(images)).numpy()
    (got,) = cpu_session(encoder_onnx).run([contract.EMBEDDINGS], {contract.IMAGES: images})
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
    got_p, got_a = cpu_session(aggregator_onnx).run(
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
    encoder_ckpt: str | Path,
    aggregator_ckpt: Path,
    bags_dir: Path | None,
    weights: Path | None = None,
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
        fp32 = export_pair(encoder_ckpt, aggregator_ckpt, Path(tmp), weights=weights, allow_degenerate=True)
    from slamctl.export.card import newest_card

    card = newest_card(repo)
    top_k = default_top_k(max(len(b.files) for b in bags))
    found = check_int8(
        encoder_onnx,
        fp32.encoder,
        aggregator_onnx,
        [(b.bag_id, list(b.files)) for b in bags],
        fp32.image_size,
        fp32.size,
        card.threshold,
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
