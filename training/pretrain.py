"""SLAM-AGS pretraining of the cell encoder, and the baselines on the same loop.

Per step: one forward per view, one `torch.autograd.grad` per task loss (the task losses
depend on disjoint sub-batches, so this is no more backward work than the plain sum),
the flat task gradients are combined (plain sum, PCGrad or AGS), written back into
`.grad`, and the optimizer steps once.

Exact resume: batches are seeded by (seed, epoch), augmentations by (seed, step), and the
checkpoint holds model, optimizer and step, so a resumed run continues the same run.
Under torchrun each rank takes a shard of every batch, per-task gradients are averaged
across ranks before surgery, and the task order (seeded by the step) is equal on all ranks.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from slamctl.errors import SlamError
from slamctl.training.augment import StrongView, weak_view
from slamctl.training.bagset import load_bags, read_cell_truth
from slamctl.training.cellpool import BatchImages, CellPools, epoch_batches
from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint, save_checkpoint
from slamctl.training.encoder import Encoder, uint8_to_input
from slamctl.training.losses import nt_xent, similarity_loss
from slamctl.training.pretrain_config import CLASSIFIERS, METHODS, PretrainConfig
from slamctl.training.surgery import WEIGHTS, combine, gram

log = logging.getLogger(__name__)

TELEMETRY_COLUMNS = [
    "step",
    "epoch",
    "lr",
    "loss_a",
    "loss_b",
    "grad_cos",
    "conflict",
    "grad_norm",
    "cells",
    "skipped",
    "seconds",
]


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to 0 at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def trainable_parameters(model: Encoder, method: str) -> list[torch.nn.Parameter]:
    """The parameters the method's losses reach: the head it uses, never an unused one."""
    head = model.classifier if method in CLASSIFIERS else model.projection
    return list(model.backbone.parameters()) + list(head.parameters())


def task_losses(
    model: Encoder, pos: torch.Tensor, neg: torch.Tensor, cfg: PretrainConfig, strong: StrongView
) -> list[torch.Tensor]:
    """The method's task losses on one batch; pos, neg: float (B, 3, S, S) in [0, 1]."""
    t = cfg.temperature
    if METHODS[cfg.method] is not None:  # self-supervised on P + similarity on N
        _, zp1 = model(strong(pos))
        _, zp2 = model(strong(pos))
        _, zn1 = model(weak_view(neg, cfg.crop_size))
        _, zn2 = model(strong(neg))
        return [nt_xent(zp1, zp2, t), similarity_loss(zn1, zn2, t)]
    cells = torch.cat([pos, neg])
    if cfg.method == "simclr":
        _, z1 = model(strong(cells))
        _, z2 = model(strong(cells))
        return [nt_xent(z1, z2, t)]
    # supervised: every cell carries its slide's label (cell-supervised: its own true label)
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).long().to(cells.device)
    h, _ = model(strong(cells))
    return [F.cross_entropy(model.classify(h), labels)]


class GradientBuffers:
    """Persistent flat buffers: one per task gradient and one for the combined gradient.

    Reusing them saves a fresh full-size allocation per task and step (on a CPU mostly
    page faults, as costly as the surgery itself); `.grad` of each parameter becomes a
    view into the combined buffer, which the optimizer reads in place.
    """

    def __init__(self, params: list[torch.nn.Parameter], n_tasks: int) -> None:
        self.params = params
        n = sum(p.numel() for p in params)
        like = params[0]
        self.tasks = [torch.zeros(n, dtype=torch.float32, device=like.device) for _ in range(n_tasks)]
        self.combined = torch.zeros(n, dtype=torch.float32, device=like.device)

    def task_grad(self, i: int, loss: torch.Tensor) -> torch.Tensor:
        """Gradient of `loss` w.r.t. the parameters, flattened into buffer i."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        flat = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, self.params)]
        return torch.cat(flat, out=self.tasks[i])

    def write_back(self) -> None:
        """Point every parameter's .grad at its slice of the combined gradient."""
        offset = 0
        for p in self.params:
            p.grad = self.combined[offset : offset + p.numel()].view_as(p)
            offset += p.numel()


def step_seed(seed: int, step: int) -> int:
    """The seed of one step (augmentations, task order): a resumed run draws the same."""
    return seed * 1_000_003 + step


def task_order(n_tasks: int, seed: int, step: int) -> list[int]:
    """Random task order for surgery, a function of (seed, step): equal on every rank."""
    g = torch.Generator().manual_seed(step_seed(seed, step))
    return torch.randperm(n_tasks, generator=g).tolist()


@dataclass
class StepStats:
    losses: list[float]
    grad_cos: float  # cosine between the two task gradients (nan for one task)
    conflict: bool
    grad_norm: float  # norm of the combined gradient


def train_step(
    model: Encoder,
    optimizer: torch.optim.Optimizer,
    buffers: GradientBuffers,
    pos: torch.Tensor,
    neg: torch.Tensor,
    cfg: PretrainConfig,
    strong: StrongView,
    step: int,
) -> StepStats:
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and pos.is_cuda)
    with autocast:
        losses = task_losses(model, pos, neg, cfg, strong)
    grads = [buffers.task_grad(i, loss.float()) for i, loss in enumerate(losses)]
    if dist.is_initialized():
        for g in grads:
            dist.all_reduce(g)
            g /= dist.get_world_size()
    g = gram(grads)  # (n, n) float64: every dot product the surgery and telemetry need
    combiner = METHODS[cfg.method]
    if combiner is None:
        weights, cos = torch.ones(1, dtype=torch.float64), float("nan")
    else:
        weights = WEIGHTS[combiner](g, task_order(len(grads), cfg.seed, step))
        cos = float(g[0, 1] / (g[0, 0] * g[1, 1]).sqrt().clamp_min(1e-30))
    combine(grads, weights, out=buffers.combined)
    buffers.write_back()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    norm = float((weights @ g @ weights).clamp_min(0).sqrt())
    return StepStats([loss.item() for loss in losses], cos, cos < 0, norm)


def _shard(batches, rank: int, world: int):
    return [(p[rank::world], n[rank::world]) for p, n in batches]


def _open_telemetry(path: Path, start_step: int):
    """Telemetry CSV opened for appending, rows past the checkpoint's step dropped first."""
    rows = []
    if start_step > 0 and path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if int(r[0]) < start_step]
    f = open(path, "w", newline="")
    writer = csv.writer(f)
    writer.writerow(TELEMETRY_COLUMNS)
    writer.writerows(rows)
    return f, writer


def _init_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = torch.device("cuda", local)
    else:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
    return dist.get_rank(), world, device


def training_pools(cfg: PretrainConfig, bags_dir: Path) -> CellPools:
    """The cells pretraining draws from: of the train bags, by slide label (or by the true cell
    label for cell-supervised), at most cfg.max_cells of them."""
    bags = load_bags(bags_dir, split="train")
    if cfg.method == "cell-supervised":
        pools = CellPools.from_cell_truth(bags, read_cell_truth(bags_dir), Path(bags_dir))
    else:
        pools = CellPools.from_bags(bags, Path(bags_dir))
    return pools.subset(cfg.max_cells, cfg.seed)


def resumed_step(ckpt_path: Path, cfg: PretrainConfig, model, optimizer, dev) -> int:
    """The step to continue from: the checkpoint's, with its weights and optimizer state loaded
    (0 without one); a checkpoint of another configuration is refused."""
    if not ckpt_path.exists():
        log.debug("no checkpoint in %s: starting from scratch", ckpt_path.parent)
        return 0
    ckpt = load_checkpoint(ckpt_path, ENCODER_KIND, map_location=dev)
    saved = PretrainConfig(**ckpt["config"])
    if replace(saved, num_workers=cfg.num_workers) != cfg:
        diff = [f.name for f in fields(cfg) if getattr(saved, f.name) != getattr(cfg, f.name)]
        raise SlamError(f"{ckpt_path}: cannot resume, configuration differs in {', '.join(diff)}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["step"])


def telemetry_row(
    step: int, epoch: int, lr: float, stats: StepStats, cells: int, skipped: int, seconds: float
):
    """One row of telemetry.csv (columns: _open_telemetry)."""
    return [
        step,
        epoch,
        f"{lr:.6g}",
        f"{stats.losses[0]:.6g}",
        f"{stats.losses[1]:.6g}" if len(stats.losses) > 1 else "",
        "" if math.isnan(stats.grad_cos) else f"{stats.grad_cos:.6g}",
        int(stats.conflict),
        f"{stats.grad_norm:.6g}",
        cells,
        skipped,
        f"{seconds:.4f}",
    ]


def save_encoder(path: Path, model, optimizer, cfg: PretrainConfig, position: dict, bags_dir: Path) -> None:
    """The pretraining checkpoint: weights, optimizer state, where in the schedule (step, epoch,
    total_steps), the configuration and the bags it trained on."""
    save_checkpoint(
        {
            "kind": ENCODER_KIND,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            **position,
            "config": asdict(cfg),
            "encoder_config": asdict(cfg.encoder_config()),
            "bags": str(bags_dir),
        },
        path,
    )


def pretrain(
    cfg: PretrainConfig,
    bags_dir: Path,
    out: Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
    on_step: Callable[[int, int, StepStats], None] | None = None,
) -> Path:
    """Pretrain an encoder on the train split of `bags_dir`; returns the checkpoint path.

    `max_steps` stops this invocation after that many steps in total (the schedule still
    spans cfg.epochs), leaving a checkpoint that `resume=True` continues exactly.
    """
    cfg.check()
    out = Path(out)
    pools = training_pools(cfg, bags_dir)
    rank, world, default_device = _init_distributed()
    dev = torch.device(device) if device else default_device
    steps_per_epoch = len(
        epoch_batches(len(pools.positive), len(pools.negative), cfg.batch_size, seed=0, epoch=0)
    )
    total_steps = cfg.epochs * steps_per_epoch
    ckpt_path = out / "checkpoint.pt"

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = Encoder(cfg.encoder_config()).to(dev)
    params = trainable_parameters(model, cfg.method)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    buffers = GradientBuffers(params, n_tasks=1 if METHODS[cfg.method] is None else 2)
    step = resumed_step(ckpt_path, cfg, model, optimizer, dev) if resume else 0

    out.mkdir(parents=True, exist_ok=True)
    telemetry, writer = _open_telemetry(out / "telemetry.csv", step) if rank == 0 else (None, None)
    strong = StrongView(cfg.crop_size).to(dev)
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    stop = total_steps if max_steps is None else min(total_steps, step + max_steps)
    model.train()
    try:
        while step < stop:
            epoch, first = divmod(step, steps_per_epoch)
            batches = epoch_batches(
                len(pools.positive), len(pools.negative), cfg.batch_size, seed=cfg.seed, epoch=epoch
            )
            data = BatchImages(pools, _shard(batches, rank, world)[first:], cfg.image_size)
            loader = DataLoader(
                data, batch_size=None, num_workers=cfg.num_workers, pin_memory=dev.type == "cuda"
            )
            for pos_u8, neg_u8, skipped in loader:
                t0 = time.perf_counter()
                if len(pos_u8) == 0 or len(neg_u8) == 0:
                    raise SlamError(f"{bags_dir}: a batch had no readable positive or negative cell")
                lr = learning_rate(step, total_steps, warmup_steps, cfg.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(step_seed(cfg.seed, step))  # augmentations
                pos = uint8_to_input(pos_u8.to(dev, non_blocking=True))
                neg = uint8_to_input(neg_u8.to(dev, non_blocking=True))
                stats = train_step(model, optimizer, buffers, pos, neg, cfg, strong, step)
                if writer is not None:
                    n, seconds = len(pos_u8) + len(neg_u8), time.perf_counter() - t0
                    writer.writerow(telemetry_row(step, epoch, lr, stats, n, skipped, seconds))
                    telemetry.flush()
                step += 1
                if on_step is not None and rank == 0:
                    on_step(step, stop, stats)
                if rank == 0 and (step % steps_per_epoch == 0 or step >= stop):
                    position = {"step": step, "epoch": step / steps_per_epoch, "total_steps": total_steps}
                    save_encoder(ckpt_path, model, optimizer, cfg, position, bags_dir)
                if step >= stop:
                    break
    finally:
        if telemetry is not None:
            telemetry.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    return ckpt_path
