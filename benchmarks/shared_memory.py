"""Same-host shared memory: `slamctl infer --shm` against plain gRPC messages, side by side.

1. Cells per second on loopback, full-size models (ResNet18 at 224 px, D = 512) on the
   embedded server: `--wire pixels` and `--wire encoded`, each over gRPC and with `--shm`;
   the bag's own time (`timings.total_s` of its result), median of `--repeats` runs.
2. Peak memory (max RSS) of the `slamctl infer` process for bags of 1,000 and 10,000 cells
   at D = 512 (small 72 px cells and a narrow backbone, so a run takes seconds), gRPC against
   `--shm`; target: the 10,000-cell bag within 1.2x the 1,000-cell bag's.

What could flatter it: the client's RSS does not count the pages of the shared segment that
it never touches. With --shm the embeddings live once, in /dev/shm (written by the
server's encoder, read by its aggregator), instead of in the client's array and its request
as well; the host still holds them once (the 10,000-cell bag's: 20 MiB). On loopback gRPC's
copies are memory copies, so part 1 shows their cost, not a network's; server and client
share the same cores.

    python benchmarks/shared_memory.py
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from client_pipeline import infer_with_rss
from random_models import make_repository

from slamctl import contract
from slamctl.serving.launcher import start_server, stop_server
from slamctl.training.pretrain_config import PRESETS, PretrainConfig
from slamctl.training.synthetic import SynthConfig, generate

PATHS = {  # name: extra options of slamctl infer
    "pixels, gRPC": ("--wire", "pixels"),
    "pixels, --shm": ("--wire", "pixels", "--shm"),
    "encoded, gRPC": ("--wire", "encoded"),
    "encoded, --shm": ("--wire", "encoded", "--shm"),
}


def bag_seconds(bag: Path, url: str, out: Path, extra: tuple[str, ...]) -> float:
    infer_with_rss(bag, url, out, *extra)
    return json.loads((out / f"{bag.name}.json").read_text())["timings"]["total_s"]


def served_provider(log: Path) -> str:
    """The execution provider of the server's encoder session, as `slamctl serve` logged it."""
    found = re.search(rf"loaded {contract.ENCODER} version \d+ \(.*\) on (\w+)", log.read_text())
    return found.group(1) if found else "unknown (no load line in the server's log)"


def speed(tmp: Path, cells: int, repeats: int, cfg: PretrainConfig | None = None) -> str:
    """1. The bag's time each way (full-size models unless `cfg`; the server uses the GPU where
    there is one). Returns the execution provider the server's encoder ran on."""
    tmp.mkdir(parents=True, exist_ok=True)
    generate(
        SynthConfig(bags=2, cells_per_bag=cells, bag_size_jitter=0, image_size=250, null=True), tmp / "bags"
    )
    bag = tmp / "bags" / "bag_0000"
    pair, repo = make_repository(tmp / "full", cfg)
    server = start_server(repo, tmp, threads=0)
    try:
        times = {name: [] for name in PATHS}
        for i in range(repeats):  # interleaved, so drift hits every path alike
            for name, extra in PATHS.items():
                out = tmp / f"out-{i}-{name}".replace(" ", "").replace(",", "-")
                times[name].append(bag_seconds(bag, server.grpc_url, out, extra))
    finally:
        stop_server(server.process)
    provider = served_provider(server.log)
    print(
        f"   {cells} cells of 250 px, encoder at {pair.size} px (D={pair.dim}) on the server's {provider}, "
        f"median of {repeats} runs (bag time):"
    )
    for wire in ("pixels", "encoded"):
        grpc, shm = (statistics.median(times[f"{wire}, {how}"]) for how in ("gRPC", "--shm"))
        print(
            f"   {wire:<8} gRPC {grpc:6.2f} s ({cells / grpc:6.1f} cells/s)   "
            f"--shm {shm:6.2f} s ({cells / shm:6.1f} cells/s)   cells/s ratio --shm / gRPC {grpc / shm:.3f}"
        )
    return provider


def memory(tmp: Path) -> None:
    cfg = replace(PRESETS["tiny"], proj_dim=512)
    for n, bags in ((1000, 2), (10000, 2)):
        generate(
            SynthConfig(bags=bags, cells_per_bag=n, bag_size_jitter=0, image_size=cfg.image_size, null=True),
            tmp / f"small{n}",
        )
    server = start_server(make_repository(tmp / "small", cfg)[1], tmp, threads=0)
    try:
        rss = {
            (name, n): infer_with_rss(
                tmp / f"small{n}" / "bag_0000", server.grpc_url, tmp / f"m{n}{i}", *extra
            )[1]
            for i, (name, extra) in enumerate((("gRPC", ()), ("--shm", ("--shm",))))
            for n in (1000, 10000)
        }
    finally:
        stop_server(server.process)
    print(
        f"2. peak memory of slamctl infer ({cfg.crop_size} px cells, D={cfg.proj_dim}), target ratio <= 1.2:"
    )
    for name in ("gRPC", "--shm"):
        small, large = rss[(name, 1000)], rss[(name, 10000)]
        print(f"   {name:<6} 1,000 cells {small} MiB, 10,000 cells {large} MiB, ratio {large / small:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("speed", "memory"), help="Run part 1 or part 2 alone.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "memory":
            print("1. Cells per second, gRPC against --shm:")
            speed(Path(tmp), args.cells, args.repeats)
        if args.only != "speed":
            memory(Path(tmp))


if __name__ == "__main__":
    main()
