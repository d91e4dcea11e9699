"""Serving overhead: cells per second through the embedded Triton over gRPC vs the same
ONNX Runtime model in-process (the physical limit), same batch sizes, same run; then p50/p99
request latency with 1, 4 and 16 concurrent clients. Target: gRPC >= 0.85 of in-process at
batch 64.

The two are timed alternately, one request each, `--repeats` times; the ratio is the median
of the per-pair ratios (a slow moment of the machine hits both sides of a pair alike, which
a ratio of two separate means does not allow). The latency quantiles come from
`--latency-requests` requests per concurrency level (>= 100, so that p99 is a measured
request, not an interpolation between two). What could flatter it: client and server on one
host (no network), and 2 cores shared by client, server and, in-process, nothing else.

Full-size models (ResNet18 at 224 px, D = 512) exported by the project's own export from
random weights; the server is `slamctl serve` in a child process on free ports.

    python benchmarks/serving_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from slamctl import contract
from slamctl.serving.launcher import start_server, stop_server


def request(client, images: np.ndarray) -> None:
    inp = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    client.infer(
        contract.ENCODER,
        [inp],
        outputs=[grpcclient.InferRequestedOutput(contract.EMBEDDINGS)],
        client_timeout=300,
    )


def paired_rates(inproc, served, cells: int, repeats: int) -> tuple[float, float, float]:
    """Median cells/s of each and the median of the per-pair ratios served / in-process."""
    inproc(), served()  # warm-up
    pairs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        inproc()
        t1 = time.perf_counter()
        served()
        t2 = time.perf_counter()
        pairs.append((cells / (t1 - t0), cells / (t2 - t1)))
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(b / a for a, b in pairs),
    )


def concurrent_latency(url: str, images: np.ndarray, clients: int, requests_each: int) -> tuple[float, float]:
    latencies, lock = [], threading.Lock()

    def worker():
        c = grpcclient.InferenceServerClient(url)
        for _ in range(requests_each):
            t0 = time.perf_counter()
            request(c, images)
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", default="16,64", help="batch sizes to compare")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency-batch", type=int, default=8, help="images per request in the latency test")
    parser.add_argument("--latency-requests", type=int, default=200, help="requests per concurrency level")
    args = parser.parse_args()
    from random_models import make_repository

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pair, repo = make_repository(tmp)
        local = ort.InferenceSession(str(tmp / "encoder.onnx"), providers=["CPUExecutionProvider"])
        server = start_server(repo, tmp, threads=0)
        try:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            rng = np.random.default_rng(0)
            print(f"ResNet18 at {pair.size} px, CPU; embedded Triton over gRPC vs in-process ONNX Runtime")
            for b in (int(x) for x in args.batches.split(",")):
                images = rng.integers(0, 256, (b, pair.size, pair.size, 3), dtype=np.uint8)
                inproc, served, ratio = paired_rates(
                    lambda x=images: local.run(None, {contract.IMAGES: x}),
                    lambda x=images: request(client, x),
                    b,
                    args.repeats,
                )
                print(
                    f"  batch {b:>3}: in-process {inproc:6.1f} cells/s, gRPC {served:6.1f} cells/s, "
                    f"ratio {ratio:.3f} (median of {args.repeats} paired runs)"
                )
            images = rng.integers(0, 256, (args.latency_batch, pair.size, pair.size, 3), dtype=np.uint8)
            print(
                f"request latency, {args.latency_batch} images per request, {args.latency_requests} requests each:"
            )
            for clients in (1, 4, 16):
                each = -(-args.latency_requests // clients)
                p50, p99 = concurrent_latency(server.grpc_url, images, clients, each)
                print(
                    f"  {clients:>2} concurrent clients: p50 {p50 * 1000:8.1f} ms, p99 {p99 * 1000:8.1f} ms"
                )
        finally:
            stop_server(server.process)


if __name__ == "__main__":
    main()
