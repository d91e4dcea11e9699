"""ONNX Runtime vs PyTorch eager on the CPU for the full-size encoder, and the aggregator's
latency for bags of 1,000 and 20,000 cells. Same process, same weights, same inputs.

The models are exported by the project's own export from randomly initialised
checkpoints of the paper's sizes (ResNet18 at 224 px, D = 512; PAMIL).

    python benchmarks/encoder_runtime.py            # batch 64, 3 timed runs each
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from random_models import make_checkpoints

from slamctl import contract
from slamctl.export.onnx_export import AggregatorGraph, EncoderGraph, export_pair


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc_ckpt, agg_ckpt = make_checkpoints(tmp)
        pair = export_pair(enc_ckpt, agg_ckpt, tmp)
        from slamctl.training.encoder import load_encoder
        from slamctl.training.mil import load_mil

        encoder = EncoderGraph(load_encoder(enc_ckpt)[0], "z").eval()
        aggregator = AggregatorGraph(load_mil(agg_ckpt)[0]).eval()
        enc_sess = ort.InferenceSession(str(tmp / "encoder.onnx"), providers=["CPUExecutionProvider"])
        agg_sess = ort.InferenceSession(str(tmp / "aggregator.onnx"), providers=["CPUExecutionProvider"])

        images = np.random.default_rng(0).integers(
            0, 256, (args.batch, pair.size, pair.size, 3), dtype=np.uint8
        )
        print(
            f"encoder: ResNet18 at {pair.size} px, D={pair.dim}, batch {args.batch}, "
            f"{torch.get_num_threads()} torch threads, CPU"
        )
        with torch.inference_mode():
            t_torch = timed(lambda: encoder(torch.from_numpy(images)), args.repeats)
        t_ort = timed(lambda: enc_sess.run([contract.EMBEDDINGS], {contract.IMAGES: images}), args.repeats)
        print(f"  PyTorch eager: {args.batch / t_torch:7.1f} cells/s")
        print(f"  ONNX Runtime:  {args.batch / t_ort:7.1f} cells/s")
        print(f"  ratio ONNX Runtime / PyTorch: {t_torch / t_ort:.2f}")

        print("aggregator (PAMIL, D=512), one bag per request:")
        for n in (1000, 20000):
            bag = np.random.default_rng(1).normal(size=(n, pair.dim)).astype(np.float32)
            t = timed(
                lambda b=bag: agg_sess.run(
                    [contract.BAG_PROBS, contract.ATTENTION], {contract.EMBEDDINGS: b}
                ),
                args.repeats * 3,
            )
            with torch.inference_mode():
                tt = timed(lambda b=bag: aggregator(torch.from_numpy(b)), args.repeats * 3)
            print(f"  bag of {n:>6} cells: ONNX Runtime {t * 1000:7.2f} ms, PyTorch {tt * 1000:7.2f} ms")


if __name__ == "__main__":
    main()
