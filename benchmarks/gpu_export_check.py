"""GPU check of the exported models: CUDA and TensorRT execution providers, FP32 and FP16.

Run on a machine with a GPU and onnxruntime-gpu (TensorRT where installed). It exports
full-size models (ResNet18 at 224 px, D = 512; PAMIL) by the project's own export, then
for each available provider and precision reports parity against CPU FP32 (max |diff| of
embeddings, of bag probabilities, and whether the top-10 cells agree) and throughput in
cells per second at batch 64 and 256. Then the served path on the GPU: a 1,000-cell bag of
250 px cells through the embedded server (`slamctl serve`, CUDA) with `slamctl infer`,
`--wire pixels` and `--wire encoded` (server-side decoding), each over gRPC and with `--shm`:
the bag's latency and cells/s (benchmarks/shared_memory.py's part 1), and the execution
provider the server's sessions run on, read from its log. Last the foundation encoder,
DinoBloom-S's ViT-S/14 at 224 px, per provider: drift against CPU FP32 (TensorRT FP16's
attention softmax) and throughput.

Every provider is checked to be the one in use: ONNX Runtime falls back to the CPU when it
cannot load CUDA's libraries, and a fallback is reported (exit 1), never timed as the GPU.
Without a GPU it says so and exits 0: CI does not need it. `--rehearse` runs every step with
the CPU provider in the GPU's place (the figures mean nothing): it tests this script where
there is no GPU (tests/benchmarks), so a GPU host's scarce time is not lost to a bug in it.

    python benchmarks/gpu_export_check.py
    python benchmarks/gpu_export_check.py --rehearse --preset tiny --cells 40 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from slamctl.training.pretrain_config import PRESETS

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


def gpu_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def setups(available: list[str], trt_cache: Path, rehearse: bool) -> list[tuple[str, list]]:
    """(name, providers) to check, each against the CPU FP32 reference."""
    if rehearse:
        return [("CPU (rehearsal)", [CPU])]
    chosen = [("CUDA FP32", [(CUDA, {})])]
    if TENSORRT not in available:
        print("TensorRT execution provider not in this ONNX Runtime build: CUDA only")
        return chosen
    for fp16 in (False, True):
        options = {
            "trt_fp16_enable": fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(trt_cache),
        }
        chosen.append((f"TensorRT {'FP16' if fp16 else 'FP32'}", [(TENSORRT, options), CUDA]))
    return chosen


def session(path: Path, providers: list):
    """An ONNX Runtime session on `providers`, or (None, why) when the first one is not in use:
    its libraries are missing (TensorRT's are not part of onnxruntime-gpu) and ONNX Runtime
    fell back, or it refused the model."""
    import onnxruntime as ort

    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    try:
        sess = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # ONNX Runtime raises its own exception types
        return None, f"{wanted} refused {path.name}: {str(e).splitlines()[0][:200]}"
    if sess.get_providers()[0] != wanted:
        return None, f"{wanted} not in use (ONNX Runtime runs {path.name} on {sess.get_providers()})"
    return sess, ""


def check_runtime(tmp: Path, pair, available: list[str], rehearse: bool) -> bool:
    """Parity and throughput per provider; False when a provider that should run did not."""
    import onnxruntime as ort

    from slamctl import contract
    from slamctl.export.runs import same_top_cells

    rng = np.random.default_rng(0)
    images = {b: rng.integers(0, 256, (b, pair.size, pair.size, 3), dtype=np.uint8) for b in (64, 256)}
    bag = rng.normal(size=(1000, pair.dim)).astype(np.float32)
    cpu_enc = ort.InferenceSession(str(tmp / "encoder.onnx"), providers=[CPU])
    cpu_agg = ort.InferenceSession(str(tmp / "aggregator.onnx"), providers=[CPU])
    ref_emb = cpu_enc.run(None, {contract.IMAGES: images[64]})[0]
    ref_probs, ref_att = cpu_agg.run(None, {contract.EMBEDDINGS: bag})
    print(
        f"1. ONNX Runtime {ort.__version__}: ResNet18 at {pair.size} px, D={pair.dim}; providers {available}"
    )
    ok = True
    for name, providers in setups(available, tmp / "trt", rehearse):
        (enc, why), (agg, why_agg) = (
            session(tmp / f, providers) for f in ("encoder.onnx", "aggregator.onnx")
        )
        if enc is None or agg is None:
            print(f"{name}: NOT RUN: {why or why_agg}")
            ok = ok and name.startswith("TensorRT")  # TensorRT is optional, CUDA is not
            continue
        emb = enc.run(None, {contract.IMAGES: images[64]})[0]
        probs, att = agg.run(None, {contract.EMBEDDINGS: bag})
        top_ok, top_detail = same_top_cells(ref_att, att, 10)
        print(
            f"{name}: embeddings max|diff| {np.abs(emb - ref_emb).max():.2e}, "
            f"bag probs max|diff| {np.abs(probs - ref_probs).max():.2e}, top-10 {top_detail}"
        )
        for b, x in images.items():
            print(f"  batch {b:>3}: {b / encoder_time(enc, x):9.1f} cells/s")
    return ok


def check_vit(tmp: Path, available: list[str], rehearse: bool) -> bool:
    """DinoBloom-S's ViT-S/14 at 224 px (random weights; speed and drift do not depend on them),
    exported as `export --encoder dinobloom-s` does: per provider, its embeddings against CPU
    FP32 (max |diff| and the worst cosine similarity: FP16's attention softmax shows here) and
    its throughput."""
    import onnxruntime as ort
    import torch

    from slamctl import contract
    from slamctl.export.onnx_export import encoder_to_onnx
    from slamctl.training.foundation import IMAGE_SIZE, FoundationEncoder

    torch.manual_seed(0)
    path = tmp / "vit.onnx"
    encoder_to_onnx(FoundationEncoder("dinobloom-s"), IMAGE_SIZE, path)
    rng = np.random.default_rng(0)
    batches = (4,) if rehearse else (64, 256)
    images = {b: rng.integers(0, 256, (b, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8) for b in batches}
    first = images[batches[0]]
    ref = ort.InferenceSession(str(path), providers=[CPU]).run(None, {contract.IMAGES: first})[0]
    print(f"3. ViT-S/14 (DinoBloom-S) at {IMAGE_SIZE} px, D={ref.shape[1]}:")
    ok = True
    for name, providers in setups(available, tmp / "trt-vit", rehearse):
        sess, why = session(path, providers)
        if sess is None:
            print(f"{name}: NOT RUN: {why}")
            ok = ok and name.startswith("TensorRT")
            continue
        emb = sess.run(None, {contract.IMAGES: first})[0]
        cosine = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        print(f"{name}: embeddings max|diff| {np.abs(emb - ref).max():.2e}, worst cosine {cosine.min():.6f}")
        for b, x in images.items():
            print(f"  batch {b:>3}: {b / encoder_time(sess, x):9.1f} cells/s")
    return ok


def encoder_time(sess, images: np.ndarray, repeats: int = 5) -> float:
    """Median seconds of one encoder request after a warm-up (and TensorRT's engine build)."""
    from slamctl import contract

    sess.run(None, {contract.IMAGES: images})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {contract.IMAGES: images})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="Run every step with the CPU provider in the GPU's place (figures meaningless).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="Model size.")
    parser.add_argument("--cells", type=int, default=1000, help="Cells of the served bag.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per served path (median).")
    args = parser.parse_args()

    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # CUDA's libraries from the nvidia-* wheels, torch or not
        ort.preload_dlls()
    available = ort.get_available_providers()
    if not args.rehearse and (not gpu_present() or CUDA not in available):
        print(
            f"no GPU here (CUDA visible: {gpu_present()}, ONNX Runtime providers: {available}): nothing to check"
        )
        return 0
    if not args.rehearse:
        import torch

        print(
            f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"{os.cpu_count()} CPU cores"
        )
    from random_models import make_checkpoints
    from shared_memory import speed as served_paths

    from slamctl.errors import SlamError
    from slamctl.export.onnx_export import export_pair

    cfg = PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pair = export_pair(*make_checkpoints(tmp, cfg), tmp)
        ok = check_runtime(tmp, pair, available, args.rehearse)
        print("2. The served path, gRPC against --shm:")
        try:
            provider = served_paths(tmp / "served", cells=args.cells, repeats=args.repeats, cfg=cfg)
        except (SlamError, SystemExit) as e:  # the server did not start, or a client failed
            print(f"   NOT RUN: {e}")
            return 1
        if provider != (CPU if args.rehearse else CUDA):
            print(f"the server ran its models on {provider}, not on the GPU: its figures are not the GPU's")
            ok = False
        ok = check_vit(tmp, available, args.rehearse) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
