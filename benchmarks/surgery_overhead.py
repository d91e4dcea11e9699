"""Cost of Adaptive Gradient Surgery over the plain-sum step, full ResNet18, same process.

The plain-sum step is what a weighted-sum multi-task trainer does: (L_simclr + L_sim)
.backward(), optimizer.step(). The AGS step is slamctl's: one autograd.grad per task,
flatten, surgery, write back, optimizer.step(). Both see the same batch and the same
augmentations (seeded); the two kinds of step alternate so that drift hits both alike.
Target: median(AGS) / median(plain) <= 1.05.

    python benchmarks/surgery_overhead.py                 # 224 px, batch 32, 7 steps each
    python benchmarks/surgery_overhead.py --batch 256 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slamctl.training.augment import StrongView
from slamctl.training.encoder import Encoder
from slamctl.training.pretrain import GradientBuffers, task_losses, train_step, trainable_parameters
from slamctl.training.pretrain_config import PretrainConfig


def plain_sum_step(model, optimizer, pos, neg, cfg, strong) -> None:
    loss = sum(task_losses(model, pos, neg, cfg, strong))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32, help="cells per step (half positive)")
    parser.add_argument("--size", type=int, default=224, help="crop size (the model input)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps of each kind")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = PretrainConfig(
        method="slam-ags", image_size=args.size + args.size // 8, crop_size=args.size, amp=False
    )
    torch.manual_seed(0)
    model = Encoder(cfg.encoder_config()).to(device).train()
    params = trainable_parameters(model, cfg.method)
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    buffers = GradientBuffers(params, n_tasks=2)
    strong = StrongView(cfg.crop_size).to(device)
    half = args.batch // 2
    pos = torch.rand(half, 3, cfg.image_size, cfg.image_size, device=device)
    neg = torch.rand(args.batch - half, 3, cfg.image_size, cfg.image_size, device=device)
    n_params = sum(p.numel() for p in params)
    print(
        f"ResNet18 + head: {n_params / 1e6:.2f} M parameters, batch {args.batch} at {args.size} px, {device}"
    )

    times = {"plain": [], "ags": []}
    for i in range(args.steps + 1):  # the first round is warm-up
        for kind in ("plain", "ags"):
            torch.manual_seed(i)  # the same augmentations for both kinds of step
            sync(device)
            t0 = time.perf_counter()
            if kind == "plain":
                plain_sum_step(model, optimizer, pos, neg, cfg, strong)
            else:
                train_step(model, optimizer, buffers, pos, neg, cfg, strong, step=i)
            sync(device)
            if i > 0:
                times[kind].append(time.perf_counter() - t0)

    plain, ags = statistics.median(times["plain"]), statistics.median(times["ags"])
    print(f"plain-sum step median: {plain * 1000:.1f} ms")
    print(f"AGS step median:       {ags * 1000:.1f} ms")
    print(f"ratio AGS / plain-sum: {ags / plain:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
