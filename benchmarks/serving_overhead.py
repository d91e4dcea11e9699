"""Serving overhead: cells per second through the embedded Triton over gRPC vs the same
ONNX Runtime model in-process, same batch sizes, same run; then p50/p99 request latency
with 1, 4 and 16 concurrent clients. Target: gRPC >= 0.85 of in-process at batch 64.

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

from serving.launcher import start_server, stop_server
from slamctl import contract


def request(client, images: np.ndarray) -> None:
    inp = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    client.infer(
        contract.ENCODER,
        [inp],
        outputs=[grpcclient.InferRequestedOutput(contract.EMBEDDINGS)],
        client_timeout=300,
    )


def rate(fn, cells: int, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return cells * repeats / (time.perf_counter() - t0)


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-batch", type=int, default=8, help="images per request in the latency test")
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
                inproc = rate(lambda x=images: local.run(None, {contract.IMAGES: x}), b, args.repeats)
                served = rate(lambda x=images: request(client, x), b, args.repeats)
                print(
                    f"  batch {b:>3}: in-process {inproc:6.1f} cells/s, gRPC {served:6.1f} cells/s, "
                    f"ratio {served / inproc:.3f}"
                )
            images = rng.integers(0, 256, (args.latency_batch, pair.size, pair.size, 3), dtype=np.uint8)
            print(f"request latency, {args.latency_batch} images per request:")
            for clients in (1, 4, 16):
                p50, p99 = concurrent_latency(server.grpc_url, images, clients, max(2, 16 // clients))
                print(
                    f"  {clients:>2} concurrent clients: p50 {p50 * 1000:8.1f} ms, p99 {p99 * 1000:8.1f} ms"
                )
        finally:
            stop_server(server.process)


if __name__ == "__main__":
    main()
