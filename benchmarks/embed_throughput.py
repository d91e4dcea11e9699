"""Embedding throughput: batched (slamctl) vs one image at a time (the reference code).

Both runs use the same encoder (full-size ResNet18 at 224 px from 250 px cells), the same
bag and the same function, `slamctl.training.embed.embed_bags`, in one process; only the batch
size differs. Prints cells per second for each and their ratio.

    python benchmarks/embed_throughput.py              # 256 cells, batch 64 vs 1
    python benchmarks/embed_throughput.py --cells 1000 --batch 256 --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from random_models import make_checkpoints

from slamctl.training.embed import embed_bags
from slamctl.training.synthetic import SynthConfig, generate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(
            SynthConfig(bags=2, cells_per_bag=args.cells // 2, bag_size_jitter=0, image_size=250),
            tmp / "bags",
        )
        ckpt, _ = make_checkpoints(tmp)  # the paper's encoder: ResNet18, 250 px cells, 224 px crops
        print(
            f"{args.cells} cells of 250 px -> ResNet18 at 224 px on {args.device}, {torch.get_num_threads()} threads"
        )
        rates = {}
        for name, batch in (("batched", args.batch), ("one at a time", 1)):
            t0 = time.perf_counter()
            embed_bags(
                ckpt,
                tmp / "bags",
                tmp / f"emb_{batch}",
                batch_size=batch,
                num_workers=args.workers,
                device=args.device,
            )
            rates[name] = args.cells / (time.perf_counter() - t0)
            print(f"{name:>14} (batch {batch:>3}): {rates[name]:7.1f} cells/s")
        print(f"ratio batched / one at a time: {rates['batched'] / rates['one at a time']:.2f}")


if __name__ == "__main__":
    main()
