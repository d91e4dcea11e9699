"""ONNX Runtime vs PyTorch eager on the CPU for the two encoders at 224 px side by side,
slamctl's ResNet18 (D = 512) and DinoBloom-S's ViT-S/14 (D = 384), and the aggregator's
latency for bags of 1,000 and 20,000 cells. Same process, same inputs, medians.

The limit is dense float32 math: ONNX Runtime's MatMul of two 2048 x 2048 matrices, measured
in the same run. ORT/GEMM is the fraction of that rate an encoder reaches (its FLOPs counted
by PyTorch times its cells/s). A ViT is all GEMMs, so it cannot go much above 1; ONNX
Runtime's blocked convolution kernels can beat a square GEMM (ResNet18 does here).

The models are exported by the project's own export from randomly initialised weights of
the real sizes (speed does not depend on the weights): ResNet18 and the default aggregator
from checkpoints, the ViT as `export --encoder dinobloom-s` builds it (normalisation inside
the graph).

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
from onnx import TensorProto, helper
from random_models import make_checkpoints
from torch.utils.flop_counter import FlopCounterMode

from slamctl import contract
from slamctl.export.onnx_export import AggregatorGraph, EncoderGraph, encoder_to_onnx, export_pair


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_gflops(repeats: int, n: int = 2048) -> float:
    """The machine's limit for this work: ONNX Runtime's float32 MatMul in GFLOP/s, measured now."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = (np.random.default_rng(i).normal(size=(n, n)).astype(np.float32) for i in (0, 1))
    return 2 * n**3 / timed(lambda: sess.run(None, {"a": a, "b": b}), repeats) / 1e9


def flops_per_cell(graph: torch.nn.Module, size: int) -> float:
    """FLOPs of one cell through `graph`, counted by PyTorch (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        graph(torch.zeros(1, size, size, 3, dtype=torch.uint8))
    return counter.get_total_flops()


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def vit_pair(encoder: torch.nn.Module, size: int, path: Path):
    """The foundation encoder as export writes it: (PyTorch graph, ONNX Runtime session)."""
    encoder_to_onnx(encoder, size, path)
    return EncoderGraph(encoder).eval(), session(path)


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
        from slamctl.training.extractor import open_extractor
        from slamctl.training.foundation import FoundationEncoder
        from slamctl.training.mil import load_mil

        torch.manual_seed(0)
        encoders = {  # name -> (PyTorch graph, ONNX Runtime session)
            f"ResNet18 (D={pair.dim})": (
                EncoderGraph(open_extractor(enc_ckpt, features="z").module).eval(),
                session(tmp / "encoder.onnx"),
            ),
            "ViT-S/14 (D=384)": vit_pair(FoundationEncoder("dinobloom-s"), pair.size, tmp / "vit.onnx"),
        }
        agg_model, agg_meta = load_mil(agg_ckpt)
        aggregator = AggregatorGraph(agg_model).eval()
        agg_sess = session(tmp / "aggregator.onnx")

        images = np.random.default_rng(0).integers(
            0, 256, (args.batch, pair.size, pair.size, 3), dtype=np.uint8
        )
        print(
            f"encoders at {pair.size} px, batch {args.batch}, {torch.get_num_threads()} torch threads, "
            "CPU, cells/s (median of the timed runs):"
        )
        limit = gemm_gflops(args.repeats * 3)
        print(f"  float32 GEMM 2048^3 in ONNX Runtime (the limit): {limit:.0f} GFLOP/s")
        print(
            f"  {'':18} {'GFLOP/cell':>10} {'PyTorch eager':>13} {'ONNX Runtime':>13} "
            f"{'ORT/PyTorch':>12} {'ORT/GEMM':>10}"
        )
        rates = {}
        for name, (graph, sess) in encoders.items():
            flops = flops_per_cell(graph, pair.size)
            with torch.inference_mode():
                t_torch = timed(lambda g=graph: g(torch.from_numpy(images)), args.repeats)
            t_ort = timed(
                lambda s=sess: s.run([contract.EMBEDDINGS], {contract.IMAGES: images}), args.repeats
            )
            rates[name] = args.batch / t_ort
            print(
                f"  {name:18} {flops / 1e9:10.2f} {args.batch / t_torch:13.1f} {args.batch / t_ort:13.1f} "
                f"{t_torch / t_ort:12.2f} {flops * rates[name] / 1e9 / limit:10.2f}"
            )
        resnet, vit = rates.values()
        print(f"  ViT-S/14 / ResNet18 throughput (ONNX Runtime): {vit / resnet:.2f}")

        print(f"aggregator ({agg_meta['config']['aggregator']}, D={pair.dim}), one bag per request:")
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
