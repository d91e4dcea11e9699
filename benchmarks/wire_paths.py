"""Bytes on the wire: `slamctl infer --wire pixels` (cells decoded by the client, sent as
uint8 S x S x 3) against `--wire encoded` (the files' own bytes, decoded by the server).

1. Bytes per cell: a 224 px model's pixel tensor against the synthetic 250 px cells as
   written (PNG) and re-encoded as JPEG (quality 90, what slide scanners' crops usually are).
2. Cells per second on loopback, full-size models (ResNet18 at 224 px) on the embedded
   server, median of `--repeats` runs of `slamctl infer` on one bag each way.
3. The cells per second a 1 Gb/s and a 10 Gb/s link allows each path (link / bytes per
   cell), beside the loopback figure: the lower of the two is what a hospital would see.

What could flatter or hide it: loopback has no network, so part 2 shows the cost of moving
decoding to the server (on 2 shared cores, server and client compete); the link figures
assume the link carries nothing else and ignore gRPC framing (under 1%).

    python benchmarks/wire_paths.py
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from random_models import make_repository

from slamctl.serving.launcher import start_server, stop_server
from slamctl.training.synthetic import SynthConfig, generate

SLAMCTL = shutil.which("slamctl", path=str(Path(sys.executable).parent)) or "slamctl"


def infer_seconds(bag: Path, url: str, out: Path, wire: str) -> float:
    subprocess.run(
        [SLAMCTL, "infer", str(bag), "--url", url, "--out", str(out), "--wire", wire, "--top-k", "10"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads((out / f"{bag.name}.json").read_text())["timings"]["total_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(
            SynthConfig(bags=2, cells_per_bag=args.cells, bag_size_jitter=0, image_size=250, null=True),
            tmp / "bags",
        )
        bag = tmp / "bags" / "bag_0000"
        files = sorted(bag.iterdir())
        png = statistics.mean(f.stat().st_size for f in files)
        jpeg_bag = tmp / "jpeg" / "bag_0000"
        jpeg_bag.mkdir(parents=True)
        for f in files:
            buf = io.BytesIO()
            Image.open(f).convert("RGB").save(buf, "JPEG", quality=90)
            (jpeg_bag / f"{f.stem}.jpg").write_bytes(buf.getvalue())
        jpeg = statistics.mean(f.stat().st_size for f in jpeg_bag.iterdir())
        pair, repo = make_repository(tmp / "full")
        pixels = pair.size * pair.size * 3
        server = start_server(repo, tmp, threads=0)
        rates = {}
        try:
            for name, folder, wire in (
                ("pixels", bag, "pixels"),
                ("encoded PNG", bag, "encoded"),
                ("encoded JPEG", jpeg_bag, "encoded"),
            ):
                times = [
                    infer_seconds(folder, server.grpc_url, tmp / f"out-{name}-{i}".replace(" ", "_"), wire)
                    for i in range(args.repeats)
                ]
                rates[name] = len(files) / statistics.median(times)
        finally:
            stop_server(server.process)
    sizes = {"pixels": pixels, "encoded PNG": png, "encoded JPEG": jpeg}
    print(
        f"{len(files)} cells of 250 px, model input {pair.size} px, median of {args.repeats} runs of slamctl infer:"
    )
    print(
        f"{'path':<14} {'bytes/cell':>11} {'loopback cells/s':>17} {'1 Gb/s allows':>14} {'10 Gb/s allows':>15}"
    )
    for name, size in sizes.items():
        print(
            f"{name:<14} {size:>11,.0f} {rates[name]:>17.1f} {1e9 / 8 / size:>14,.0f} {1e10 / 8 / size:>15,.0f}"
        )
    print(f"pixels / encoded bytes: PNG {pixels / png:.1f}x, JPEG {pixels / jpeg:.1f}x")


if __name__ == "__main__":
    main()
