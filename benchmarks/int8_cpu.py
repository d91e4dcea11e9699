"""INT8 on the CPU: the encoder quantised by `slamctl export --int8` against the FP32 ONNX
encoder, in one process, same inputs.

1. Speed: full-size encoder (ResNet18 at 224 px, D = 512, random weights: speed does not
   depend on them; calibrated on random images), batch 64, ONNX Runtime's CPU provider with
   its default threads; median of `--repeats` timed runs after a warm-up. Target: INT8
   cells/s >= 2x FP32's.
2. Decisions (with --run RUN --bags BAGS, e.g. the demo's): the trained encoder quantised
   and calibrated on the training cells exactly as `export --int8` does it, then every
   held-out bag through the FP32 and the INT8 encoder and the same FP32 aggregator: bag
   decisions at the stored threshold (target: all the same) and top-K overlap (target >= 0.9).

What could flatter it: the CPU (this machine has AVX-512 VNNI, which ONNX Runtime's integer
kernels use; without it the gain is smaller), and random weights in part 1 (the same
operators and shapes as trained ones, so the same speed).

    python benchmarks/int8_cpu.py --run demo/run --bags demo/bags
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from encoder_runtime import timed
from random_models import make_checkpoints

from slamctl import contract
from slamctl.export.onnx_export import export_pair
from slamctl.export.quantize import calibration_cells, check_int8, quantize_encoder
from slamctl.training.bagset import load_bags
from slamctl.training.metrics import default_top_k
from slamctl.training.mil import load_mil, stored_threshold


def cells_per_second(path: Path, images: np.ndarray, repeats: int) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return len(images) / timed(lambda: session.run(None, {contract.IMAGES: images}), repeats)


def speed(tmp: Path, repeats: int, batch: int) -> None:
    pair = export_pair(*make_checkpoints(tmp / "full"), tmp / "full", allow_degenerate=True)
    fp32 = tmp / "fp32.onnx"
    onnx.save(pair.encoder, str(fp32))
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (128, pair.size, pair.size, 3), dtype=np.uint8)
    int8 = quantize_encoder(fp32, calibration, tmp / "int8.onnx")
    images = rng.integers(0, 256, (batch, pair.size, pair.size, 3), dtype=np.uint8)
    rates = {name: cells_per_second(path, images, repeats) for name, path in (("fp32", fp32), ("int8", int8))}
    print(
        f"encoder ResNet18 {pair.size} px, D={pair.dim}, batch {batch}, median of {repeats}: FP32 {rates['fp32']:.0f} "
        f"cells/s, INT8 {rates['int8']:.0f} cells/s, ratio {rates['int8'] / rates['fp32']:.2f} (target >= 2)"
    )


def decisions(tmp: Path, run: Path, bags_dir: Path, repeats: int) -> None:
    pair = export_pair(run / "checkpoint.pt", run / "mil.pt", tmp / "trained", allow_degenerate=True)
    fp32, agg = tmp / "trained_fp32.onnx", tmp / "trained_agg.onnx"
    onnx.save(pair.encoder, str(fp32))
    onnx.save(pair.aggregator, str(agg))
    int8 = quantize_encoder(
        fp32, calibration_cells(bags_dir, pair.size, pair.image_size), tmp / "trained_int8.onnx"
    )
    bags = load_bags(bags_dir, split="test")
    threshold, _ = stored_threshold(load_mil(run / "mil.pt")[1])
    top_k = default_top_k(max(len(b.files) for b in bags))
    found = check_int8(
        int8,
        fp32,
        agg,
        [(b.bag_id, list(b.files)) for b in bags],
        pair.image_size,
        pair.size,
        threshold,
        top_k,
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, pair.size, pair.size, 3), dtype=np.uint8)
    ratio = cells_per_second(int8, images, repeats) / cells_per_second(fp32, images, repeats)
    print(
        f"trained encoder of {run} ({pair.size} px, D={pair.dim}) on {found['bags']} held-out bags of {bags_dir}: "
        f"{found['same_decisions']} of {found['bags']} decisions the same at threshold {threshold:.3f} "
        f"(target: all), mean top-{top_k} overlap {found['top_k_overlap']:.3f} (target >= 0.9); "
        f"INT8/FP32 cells/s at this size {ratio:.2f}"
    )
    moved = max(abs(p8 - p32) for _, p32, p8, _ in found["rows"])
    print(f"  largest change of P(abnormal) over the bags: {moved:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--run", type=Path, help="A training run (checkpoint.pt, mil.pt) for part 2.")
    parser.add_argument("--bags", type=Path, help="Its bag folder (split.csv names the held-out bags).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speed(Path(tmp), args.repeats, args.batch)
        if args.run and args.bags:
            decisions(Path(tmp), args.run, args.bags, args.repeats)


if __name__ == "__main__":
    main()
