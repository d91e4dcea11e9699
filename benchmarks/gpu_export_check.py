"""GPU check of the exported models: CUDA and TensorRT execution providers, FP32 and FP16.

Run on a machine with a GPU and onnxruntime-gpu (TensorRT where installed). It exports
full-size models (ResNet18 at 224 px, D = 512; PAMIL) by the project's own export, then
for each available provider and precision reports parity against CPU FP32 (max |diff| of
embeddings, of bag probabilities, and whether the top-10 cells agree) and throughput in
cells per second at batch 64 and 256. Then the served path on the GPU: a 1,000-cell bag of
250 px cells through the embedded server (`slamctl serve`, CUDA) with `slamctl infer`,
`--wire pixels` and `--wire encoded` (server-side decoding), each over gRPC and with `--shm`:
the bag's latency and cells/s (benchmarks/shared_memory.py's part 1). Without a GPU it says
so and exits 0: CI does not need it.

    python benchmarks/gpu_export_check.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def gpu_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main() -> int:
    import argparse

    import onnxruntime as ort

    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()

    available = ort.get_available_providers()
    if not gpu_present() or "CUDAExecutionProvider" not in available:
        print(
            f"no GPU here (CUDA visible: {gpu_present()}, ONNX Runtime providers: {available}): nothing to check"
        )
        return 0
    from random_models import make_checkpoints

    from export.onnx_export import export_pair
    from export.validate import same_top_cells
    from slamctl import contract

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pair = export_pair(*make_checkpoints(tmp), tmp)
        rng = np.random.default_rng(0)
        images = {b: rng.integers(0, 256, (b, pair.size, pair.size, 3), dtype=np.uint8) for b in (64, 256)}
        bag = rng.normal(size=(1000, pair.dim)).astype(np.float32)
        cpu_enc = ort.InferenceSession(str(tmp / "encoder.onnx"), providers=["CPUExecutionProvider"])
        cpu_agg = ort.InferenceSession(str(tmp / "aggregator.onnx"), providers=["CPUExecutionProvider"])
        ref_emb = cpu_enc.run(None, {contract.IMAGES: images[64]})[0]
        ref_probs, ref_att = cpu_agg.run(None, {contract.EMBEDDINGS: bag})

        setups = [("CUDA FP32", [("CUDAExecutionProvider", {})])]
        if "TensorrtExecutionProvider" in available:
            for fp16 in (False, True):
                trt = {
                    "trt_fp16_enable": fp16,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(tmp / "trt"),
                }
                setups.append(
                    (
                        f"TensorRT {'FP16' if fp16 else 'FP32'}",
                        [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider"],
                    )
                )
        else:
            print("TensorRT execution provider not installed: CUDA only")
        print(f"GPU check: ResNet18 at {pair.size} px, D={pair.dim}; providers {available}")
        for name, providers in setups:
            enc = ort.InferenceSession(str(tmp / "encoder.onnx"), providers=providers)
            agg = ort.InferenceSession(str(tmp / "aggregator.onnx"), providers=providers)
            emb = enc.run(None, {contract.IMAGES: images[64]})[0]
            probs, att = agg.run(None, {contract.EMBEDDINGS: bag})
            top_ok, top_detail = same_top_cells(ref_att, att, 10)
            print(
                f"{name}: embeddings max|diff| {np.abs(emb - ref_emb).max():.2e}, "
                f"bag probs max|diff| {np.abs(probs - ref_probs).max():.2e}, top-10 {top_detail}"
            )
            for b, x in images.items():
                enc.run(None, {contract.IMAGES: x})  # warm-up (and engine build)
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    enc.run(None, {contract.IMAGES: x})
                    times.append(time.perf_counter() - t0)
                print(f"  batch {b:>3}: {b / statistics.median(times):9.1f} cells/s")
        from shared_memory import speed as served_paths

        served_paths(tmp / "served", cells=1000, repeats=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
