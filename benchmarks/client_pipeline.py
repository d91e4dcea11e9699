"""The client pipeline: is `slamctl infer` bound by the server's compute, and is its memory
bounded whatever the bag size?

1. A bag of 1,000 cells (250 px) through full-size models (ResNet18 at 224 px): wall time
   of the `slamctl infer` process (start-up included) over the server's own compute time
   for the same requests (Triton's compute counters, per execution, both models).
   Target <= 1.15.
2. Decode throughput (read, RGB, crop) with 1 thread vs N threads.
3. Peak memory (max RSS) of `slamctl infer` for bags of 1,000 and 10,000 cells (small
   72 px cells and a small model, so the run takes seconds); target: the larger bag within
   1.2x the smaller's.

    python benchmarks/client_pipeline.py
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from random_models import make_checkpoints

from export.onnx_export import export_pair
from export.repository import write_repository
from serving.launcher import start_server, stop_server
from slamctl.images import prepare_cell
from training.pretrain import PRESETS, PretrainConfig
from training.synthetic import SynthConfig, generate

SLAMCTL = shutil.which("slamctl", path=str(Path(sys.executable).parent)) or "slamctl"


def repository(tmp: Path, name: str, cfg: PretrainConfig) -> Path:
    pair = export_pair(*make_checkpoints(tmp / name, cfg), tmp / name)
    write_repository(pair, tmp / name / "repo")
    return tmp / name / "repo"


def counter(metrics: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{.*\}} (\S+)$", metrics, re.M))


def execution_seconds(before: str, after: str) -> float:
    """Server compute time of the executions between two scrapes, both models.

    Triton charges every request of a batched execution the whole execution's compute
    time, so the sum over requests counts a batch of r requests r times: divide by the
    mean requests per execution (successful requests / executions)."""
    delta = {n: counter(after, n) - counter(before, n) for n in (
        "nv_inference_compute_infer_duration_us", "nv_inference_request_success", "nv_inference_exec_count")}  # fmt: skip
    per_exec = delta["nv_inference_request_success"] / max(delta["nv_inference_exec_count"], 1)
    return delta["nv_inference_compute_infer_duration_us"] / max(per_exec, 1) / 1e6


def infer_with_rss(bag: Path, url: str, out: Path) -> tuple[float, int]:
    """(wall seconds, max RSS in MiB) of one `slamctl infer` process."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
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
    ]
    wall, rss_kib, rc = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    if rc != "0":
        raise SystemExit(f"slamctl infer failed on {bag} (exit {rc})")
    return float(wall), int(rss_kib) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
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

        # 1. wall time over server compute, full-size models
        server = start_server(repository(tmp, "full", PretrainConfig()), tmp, threads=0)
        try:
            before = server.metrics()
            wall, _ = infer_with_rss(bag, server.grpc_url, tmp / "out_full")
            compute = execution_seconds(before, server.metrics())
        finally:
            stop_server(server.process)
        print(f"bag of {len(files)} cells at 224 px (ResNet18, CPU):")
        print(f"  slamctl infer wall time {wall:.1f} s, server compute {compute:.1f} s, ratio {wall / compute:.3f} "
              "(target <= 1.15)")  # fmt: skip
        print(f"decode (read, RGB, crop) of 250 px cells: 1 thread {rates[1]:.0f} cells/s, "
              f"{args.threads} threads {rates[args.threads]:.0f} cells/s, ratio {rates[args.threads] / rates[1]:.2f}")  # fmt: skip

        # 3. peak memory, small cells and model
        small = PRESETS["tiny"]
        for n in (1000, 10000):
            generate(SynthConfig(bags=2, cells_per_bag=n, bag_size_jitter=0, image_size=small.image_size, null=True),
                     tmp / f"small{n}")  # fmt: skip
        server = start_server(repository(tmp, "small", small), tmp, threads=0)
        try:
            rss = {n: infer_with_rss(tmp / f"small{n}" / "bag_0000", server.grpc_url, tmp / f"out{n}")[1]
                   for n in (1000, 10000)}  # fmt: skip
        finally:
            stop_server(server.process)
        print(f"peak memory of slamctl infer ({small.crop_size} px cells): 1,000 cells {rss[1000]} MiB, "
              f"10,000 cells {rss[10000]} MiB, ratio {rss[10000] / rss[1000]:.2f} (target <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
