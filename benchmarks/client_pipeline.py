"""The client pipeline: is `slamctl infer` bound by the server's compute, and is its memory
bounded whatever the bag size?

1. A bag of 1,000 cells (250 px) through full-size models (ResNet18 at 224 px): wall time
   of `slamctl infer` over the physical limit measured in the same run, the same cells
   through the same two ONNX models in-process (decoded with the same threads, encoded at
   the same batch size, one ONNX Runtime session with its default threads, as the server
   runs it). Target <= 1.15. Medians of `--repeats` runs of each; both the whole process
   (Python start-up and imports included) and the bag's own time (`timings.total_s` of its
   result) are reported. (Triton's compute counters are not used: a batched execution's
   compute time is added to each of its requests, and the batcher merges requests of
   different sizes, so no divisor recovers the server's busy time.)
2. Decode throughput (read, RGB, crop) with 1 thread vs N threads.
3. Peak memory (max RSS) of `slamctl infer` for bags of 1,000 and 10,000 cells (small
   72 px cells and a small backbone, so the run takes seconds); target: the larger bag within
   1.2x the smaller's. Images are streamed, but the aggregator needs the bag's N x D
   embeddings whole, so memory grows with N x D: measured at D=128 (the tiny model) and at
   the paper's D=512.

    python benchmarks/client_pipeline.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from random_models import make_repository

from slamctl.images import prepare_cell
from slamctl.serving.launcher import start_server, stop_server
from slamctl.training.pretrain_config import PRESETS
from slamctl.training.synthetic import SynthConfig, generate

SLAMCTL = shutil.which("slamctl", path=str(Path(sys.executable).parent)) or "slamctl"


def infer_with_rss(bag: Path, url: str, out: Path, *extra: str) -> tuple[float, int]:
    """(wall seconds, max RSS in MiB) of one `slamctl infer` process."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        SLAMCTL,
        "infer",
        str(bag),
        "--url",
        url,
        "--out",
        str(out),
        "--top-k",
        "10",
        *extra,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)  # stderr: slamctl's
    wall, rss_kib, rc = run.stdout.split()
    if rc != "0":
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"slamctl infer failed on {bag} (exit {rc}): {last}")
    return float(wall), int(rss_kib) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("speed", "memory"), help="Run parts 1-2 or part 3 alone.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only != "memory":
            speed(tmp, args)
        if args.only != "speed":
            memory(tmp)


def speed(tmp: Path, args: argparse.Namespace) -> None:
    """1. Wall time over server compute; 2. decode throughput."""
    generate(
        SynthConfig(bags=2, cells_per_bag=args.cells, bag_size_jitter=0, image_size=250, null=True),
        tmp / "big",
    )
    bag = tmp / "big" / "bag_0000"

    # 2. decode throughput
    files = sorted(bag.iterdir())
    rates = {}
    for n in (1, args.threads):
        with ThreadPoolExecutor(n) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda f: prepare_cell(f, 250, 224), files))
            rates[n] = len(files) / (time.perf_counter() - t0)

    # 1. slamctl infer over the in-process limit, full-size models
    pair, repo = make_repository(tmp / "full")
    limits = [
        in_process(files, repo, pair.image_size, pair.size, 64, args.threads) for _ in range(args.repeats)
    ]
    server = start_server(repo, tmp, threads=0)
    try:
        walls, bag_times = [], []
        for i in range(args.repeats):
            out = tmp / f"out_full{i}"
            walls.append(infer_with_rss(bag, server.grpc_url, out)[0])
            bag_times.append(json.loads((out / f"{bag.name}.json").read_text())["timings"]["total_s"])
    finally:
        stop_server(server.process)
    limit, wall, bag_time = (statistics.median(x) for x in (limits, walls, bag_times))
    print(f"bag of {len(files)} cells at 224 px (ResNet18, CPU), medians of {args.repeats} runs:")
    print(
        f"  in-process limit {limit:.1f} s; slamctl infer process {wall:.1f} s, ratio {wall / limit:.3f}; "
        f"its bag {bag_time:.1f} s, ratio {bag_time / limit:.3f} (target <= 1.15)"
    )
    print(
        f"decode (read, RGB, crop) of 250 px cells: 1 thread {rates[1]:.0f} cells/s, "
        f"{args.threads} threads {rates[args.threads]:.0f} cells/s, ratio {rates[args.threads] / rates[1]:.2f}"
    )


def in_process(files: list[Path], repo: Path, image_size: int, size: int, batch: int, threads: int) -> float:
    """Seconds for the same pipeline without a server: decode (threads), encode (batch), aggregate."""
    import numpy as np
    import onnxruntime as ort

    from slamctl import contract

    enc = ort.InferenceSession(
        str(repo / contract.ENCODER / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    agg = ort.InferenceSession(
        str(repo / contract.AGGREGATOR / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        images = list(pool.map(lambda f: prepare_cell(f, image_size, size), files))
    embeddings = np.concatenate(
        [
            enc.run(None, {contract.IMAGES: np.stack(images[i : i + batch])})[0]
            for i in range(0, len(images), batch)
        ]
    )
    agg.run(None, {contract.EMBEDDINGS: embeddings})
    return time.perf_counter() - t0


def memory(tmp: Path) -> None:
    """3. Peak memory, small cells and backbone."""
    small = PRESETS["tiny"]
    for n, bags in ((1000, 10), (10000, 2)):
        generate(
            SynthConfig(
                bags=bags, cells_per_bag=n, bag_size_jitter=0, image_size=small.image_size, null=True
            ),
            tmp / f"small{n}",
        )
    for cfg in (small, replace(small, proj_dim=512)):
        server = start_server(make_repository(tmp / f"small{cfg.proj_dim}", cfg)[1], tmp, threads=0)
        try:
            rss = {
                n: infer_with_rss(tmp / f"small{n}" / "bag_0000", server.grpc_url, tmp / f"out{n}")[1]
                for n in (1000, 10000)
            }
            # and a run over many bags holds one bag at a time (the report is spooled to disk)
            many = infer_with_rss(tmp / "small1000", server.grpc_url, tmp / "out_many", "--report")[1]
        finally:
            stop_server(server.process)
        print(
            f"peak memory of slamctl infer ({cfg.crop_size} px cells, D={cfg.proj_dim}): 1,000 cells "
            f"{rss[1000]} MiB, 10,000 cells {rss[10000]} MiB, ratio {rss[10000] / rss[1000]:.2f} "
            f"(target <= 1.2; the 10,000 embeddings alone are {10000 * cfg.proj_dim * 4 / 2**20:.0f} MiB); "
            f"10 bags of 1,000 cells with --report {many} MiB, ratio to one bag {many / rss[1000]:.2f}"
        )


if __name__ == "__main__":
    main()
