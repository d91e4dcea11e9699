"""Training a MIL aggregator on bag labels from per-bag embeddings.

The train bags of split.csv are split again, seeded and stratified, into fit and
validation bags; the model kept is the one of lowest validation loss (ties: higher
validation F1), never the one of best training accuracy; training stops early after
`patience` epochs without improvement. Test bags are never seen here.

The kept model's decision threshold is chosen on the validation bags (training/
operating_point.py) and its health measured there (training/health.py); both go into
the checkpoint, so `evaluate`, the export and the served model card use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from slamctl.errors import SlamError
from slamctl.tables import write_csv
from slamctl.training.abmil import ABMIL
from slamctl.training.bagset import SPLIT_FILE, assign_splits, read_labels_csv, read_split
from slamctl.training.checkpoint import MIL_KIND, load_checkpoint, save_checkpoint
from slamctl.training.embed import EmbeddedBag, load_embedded, read_meta
from slamctl.training.folds import FoldEnsemble, assign_folds
from slamctl.training.health import model_health
from slamctl.training.instance_loss import WEIGHT as INSTANCE_WEIGHT
from slamctl.training.instance_loss import InstanceClassifiers, negatives_loss, reference_loss
from slamctl.training.maxmil import MaxMIL
from slamctl.training.metrics import binary_metrics
from slamctl.training.mil_config import AGGREGATORS, MilConfig
from slamctl.training.operating_point import choose_threshold
from slamctl.training.pamil import PAMIL

AGGREGATOR_CLASSES = {  # mil_config.AGGREGATORS -> how its model is built from the configuration
    "pamil": lambda cfg, d: PAMIL(
        d, n_proto=cfg.n_proto, standardise=cfg.standardise, proto_pred=cfg.proto_pred
    ),
    "abmil": lambda cfg, d: ABMIL(d, standardise=cfg.standardise),
    "maxmil": lambda cfg, d: MaxMIL(d, standardise=cfg.standardise, top_fraction=cfg.top_fraction),
}
assert tuple(AGGREGATOR_CLASSES) == AGGREGATORS


def build_aggregator(cfg: MilConfig, in_dim: int) -> torch.nn.Module:
    if cfg.aggregator not in AGGREGATOR_CLASSES:
        raise SlamError(f"unknown aggregator {cfg.aggregator!r}: expected one of {', '.join(AGGREGATORS)}")
    return AGGREGATOR_CLASSES[cfg.aggregator](cfg, in_dim)


def load_split_bags(
    emb_dir: Path, labels_path: Path, split: str | None
) -> tuple[list[EmbeddedBag], list[int], dict]:
    """Embedded bags (and labels) of one split; split.csv beside labels.csv decides it."""
    emb_dir, labels_path = Path(emb_dir), Path(labels_path)
    meta = read_meta(emb_dir)
    labels = read_labels_csv(labels_path)
    splits = read_split(labels_path.parent)
    bags, ys = [], []
    for bag_id, y in sorted(labels.items()):
        if split is not None and splits is not None:
            if bag_id not in splits:  # as pretraining: never dropped without a word
                raise SlamError(f"{labels_path.parent / SPLIT_FILE}: bag {bag_id!r} has no split")
            if splits[bag_id] != split:
                continue
        path = emb_dir / f"{bag_id}.npz"
        if not path.exists():
            raise SlamError(f"{labels_path}: bag {bag_id!r} has no embeddings ({path} missing)")
        bags.append(load_embedded(path, meta["dim"]))
        ys.append(y)
    if len(set(ys)) < 2:
        raise SlamError(
            f"{labels_path}: split {split!r} needs bags of both labels, found labels {sorted(set(ys))}"
        )
    return bags, ys, meta


@torch.no_grad()
def predict(model: torch.nn.Module, bags: list[EmbeddedBag]) -> tuple[np.ndarray, list[np.ndarray]]:
    """P(abnormal) per bag and the attention over each bag's cells."""
    model.eval()
    probs, attention = [], []
    for bag in bags:
        out = model(torch.from_numpy(bag.features))
        probs.append(float(torch.softmax(out.logits, dim=0)[1]))
        attention.append(out.attention.numpy())
    return np.array(probs), attention


@torch.no_grad()
def _validate(model, pairs: list[tuple[torch.Tensor, int]], instance_loss) -> tuple[float, np.ndarray]:
    """Mean loss (bag cross-entropy plus the instance loss, as trained) and P(abnormal) of the
    validation bags, one forward pass each."""
    model.eval()
    outputs = [(model(x), y) for x, y in pairs]
    losses = [F.cross_entropy(o.logits[None], torch.tensor([y])) + instance_loss(o, y) for o, y in outputs]
    probs = [float(torch.softmax(o.logits, dim=0)[1]) for o, _ in outputs]
    return float(torch.stack(losses).mean()), np.array(probs)


class _Fit(NamedTuple):
    state: dict  # the model's parameters at its best validation epoch
    best: dict  # val_loss, val_f1, epoch
    history: list[dict]  # one row per epoch


def _instance_loss(cfg: MilConfig, output, label: int, head: InstanceClassifiers | None) -> torch.Tensor:
    if cfg.instance_loss == "reference":
        return INSTANCE_WEIGHT * reference_loss(output, label, head)
    if cfg.instance_loss == "negatives":
        return INSTANCE_WEIGHT * negatives_loss(output, label)
    return output.logits.new_zeros(())


FROZEN_PREFIXES = ("proto", "fc.")  # frozen first in curriculum, as PAMIL.py's "proto" and "fc"


def _fit_one(
    cfg: MilConfig, seed: int, in_dim: int, fit: list, val: list, on_epoch, init: dict | None
) -> _Fit:
    """Train one model from `seed` (or from the weights `init`) on the (features, label) pairs
    of `fit`; keep its epoch of lowest validation loss (ties: higher validation F1)."""
    torch.manual_seed(seed)
    model = build_aggregator(cfg, in_dim)
    if init is not None:
        model.load_state_dict(init)
    frozen = [p for n, p in model.named_parameters() if init is not None and n.startswith(FROZEN_PREFIXES)]
    head = InstanceClassifiers(model.hidden_dim)
    params = list(model.parameters()) + (list(head.parameters()) if cfg.instance_loss == "reference" else [])
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    augment = np.random.default_rng([seed, 1])  # its own stream: subsample 1 leaves rng's draws as they were
    best, state, history = {"val_loss": math.inf, "val_f1": -1.0, "epoch": -1}, None, []
    for epoch in range(cfg.epochs):
        for p in frozen:
            p.requires_grad_(epoch >= cfg.freeze_epochs)
        model.train()
        train_loss = 0.0
        for i in rng.permutation(len(fit)):
            features, label = fit[i]
            if cfg.subsample < 1:
                keep = max(1, round(cfg.subsample * len(features)))
                features = features[torch.from_numpy(np.sort(augment.permutation(len(features))[:keep]))]
            output = model(features)
            loss = F.cross_entropy(output.logits[None], torch.tensor([label])) + output.aux_loss
            loss = loss + _instance_loss(cfg, output, label, head)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() / len(fit)
        val_loss, val_probs = _validate(model, val, lambda o, y: _instance_loss(cfg, o, y, head))
        val_f1 = binary_metrics(np.array([y for _, y in val]), val_probs)["f1"]
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_f1": val_f1}
        history.append(row)
        if (val_loss, -val_f1) < (best["val_loss"], -best["val_f1"]):
            best = {"val_loss": val_loss, "val_f1": val_f1, "epoch": epoch}
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch:
            on_epoch(epoch + 1, cfg.epochs, row)
        if epoch - best["epoch"] >= cfg.patience:
            break
    return _Fit(state, best, history)


def _train_split(
    cfg: MilConfig, dim: int, fit: list, val: list, on_epoch, init: dict | None
) -> tuple[torch.nn.Module, dict, list]:
    """`cfg.restarts` models on one fit/validation split; the one of lowest validation loss
    (ties: higher F1), its best epoch, and every start's history."""
    fits = []
    for r in range(cfg.restarts):
        seed = cfg.seed if r == 0 else cfg.seed * 1000 + r  # restart 0 is the plain run of --seed
        fits.append(_fit_one(cfg, seed, dim, fit, val, on_epoch, init))
    chosen = min(range(len(fits)), key=lambda r: (fits[r].best["val_loss"], -fits[r].best["val_f1"]))
    model = build_aggregator(cfg, dim)
    model.load_state_dict(fits[chosen].state)
    history = [{"restart": r, **row} for r, f in enumerate(fits) for row in f.history]
    return model.eval(), {**fits[chosen].best, "restart": chosen}, history


def _splits(cfg: MilConfig, ys: list[int], labels_path: Path) -> list[list[bool]]:
    """Per split, which train bags are held out for validation: one seeded split, or K folds."""
    if cfg.folds > 1:
        folds = assign_folds(ys, cfg.folds, cfg.seed)
        return [[f == k for f in folds] for k in range(cfg.folds)]
    held = [r == "test" for r in assign_splits(ys, cfg.val_fraction, cfg.seed, at_least_one=True)]
    val_labels = sorted({y for y, h in zip(ys, held) if h})
    if all(held) or val_labels != [0, 1]:
        raise SlamError(
            f"{labels_path}: the validation split ({sum(held)} of {len(ys)} train bags) needs a bag of each "
            f"label, found labels {val_labels}: add train bags or raise --val-fraction"
        )
    return [held]


def train_mil(
    cfg: MilConfig,
    emb_dir: Path,
    labels_path: Path,
    out: Path,
    *,
    on_epoch: Callable[[int, int, dict], None] | None = None,
) -> Path:
    """Train on the train split, select on validation; returns OUT/mil.pt.

    With restarts R > 1, R models are trained from seeds (seed, r) on the same fit and
    validation bags and the one of lowest validation loss is kept. With folds K > 1, one such
    model per fold (training/folds.py), saved as their ensemble; the threshold and health
    come from the out-of-fold predictions, written to OUT/oof.csv."""
    cfg.check()
    bags, ys, meta = load_split_bags(emb_dir, labels_path, "train")
    pairs = [(torch.from_numpy(b.features), y) for b, y in zip(bags, ys)]
    init = _curriculum_start(cfg, meta["dim"]) if cfg.init_from else None
    members, bests, history, fit_sizes = [], [], [], []
    held_probs, held_attention = [None] * len(bags), [None] * len(bags)
    for k, held in enumerate(_splits(cfg, ys, labels_path)):
        fit = [p for p, h in zip(pairs, held) if not h]
        val = [p for p, h in zip(pairs, held) if h]
        model, best, rows = _train_split(cfg, meta["dim"], fit, val, on_epoch, init)
        members.append(model)
        bests.append(best)
        fit_sizes.append(len(fit))
        history += [{"fold": k, **row} for row in rows]
        held_index = [i for i, h in enumerate(held) if h]
        for i, p, a in zip(held_index, *predict(model, [bags[i] for i in held_index])):
            held_probs[i], held_attention[i] = p, a
    index = [i for i, p in enumerate(held_probs) if p is not None]
    val_ys, val_probs = np.array([ys[i] for i in index]), np.array([held_probs[i] for i in index])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "mil_history.csv", list(history[0]), [row.values() for row in history])
    if cfg.folds > 1:
        write_csv(
            out / "oof.csv",
            ["bag_id", "label", "prob_abnormal"],
            [(bags[i].bag_id, ys[i], f"{held_probs[i]:.6f}") for i in index],
        )
    model = members[0] if cfg.folds == 1 else FoldEnsemble(members)
    path = out / "mil.pt"
    save_checkpoint(
        {
            "kind": MIL_KIND,
            "model": model.state_dict(),
            "config": asdict(cfg),
            "in_dim": meta["dim"],
            "embedding": meta,
            "best": bests[0] if cfg.folds == 1 else _mean_best(bests),
            "fit_bags": round(float(np.mean(fit_sizes))),  # a fold ensemble: its members' mean
            "val_bags": len(index),
            "threshold": choose_threshold(val_ys, val_probs, cfg.target_sensitivity),
            "threshold_rule": threshold_rule(cfg.target_sensitivity, out_of_fold=cfg.folds > 1),
            "health": model_health(val_probs, [held_attention[i] for i in index]).as_dict(),
        },
        path,
    )
    return path


def _curriculum_start(cfg: MilConfig, dim: int) -> dict:
    """The weights of a model trained at a higher witness rate (PAMIL.py's --resume_path),
    checked to fit this run's aggregator."""
    ckpt = load_checkpoint(Path(cfg.init_from), MIL_KIND)
    made = MilConfig(**ckpt["config"])
    have = (made.aggregator, made.standardise, made.proto_pred, ckpt["in_dim"], made.folds)
    if have != (cfg.aggregator, cfg.standardise, cfg.proto_pred, dim, 1):
        raise SlamError(
            f"--init-from {cfg.init_from}: a {made.aggregator} of D={ckpt['in_dim']} (standardise "
            f"{made.standardise}, proto pred {made.proto_pred}, folds {made.folds}); this run trains a "
            f"{cfg.aggregator} of D={dim} (standardise {cfg.standardise}, proto pred {cfg.proto_pred}, one model)"
        )
    return ckpt["model"]


def _mean_best(bests: list[dict]) -> dict:
    """The folds' selections in one: mean validation loss and F1, the latest best epoch."""
    return {
        "val_loss": float(np.mean([b["val_loss"] for b in bests])),
        "val_f1": float(np.mean([b["val_f1"] for b in bests])),
        "epoch": max(b["epoch"] for b in bests),
        "restart": [b["restart"] for b in bests],
        "folds": bests,
    }


def threshold_rule(target_sensitivity: float | None, *, out_of_fold: bool = False) -> str:
    """How the stored threshold was chosen, in words (for summaries and model cards)."""
    bags = "out-of-fold predictions of the train bags" if out_of_fold else "validation bags"
    if target_sensitivity is None:
        return f"best F1 on the {bags}"
    return f"highest threshold with sensitivity >= {target_sensitivity:g} on the {bags}"


def load_mil(path: Path) -> tuple[torch.nn.Module, dict]:
    """The aggregator of a MIL checkpoint, in eval mode, and the checkpoint."""
    ckpt = load_checkpoint(path, MIL_KIND)
    missing = sorted(set(asdict(MilConfig())) - set(ckpt["config"]))
    if missing:  # its defaults would be today's, not those it was trained with
        raise SlamError(
            f"{path}: made by an older slamctl (its configuration has no {', '.join(missing)}): train it again"
        )
    cfg = MilConfig(**ckpt["config"])
    model = build_aggregator(cfg, ckpt["in_dim"])
    if cfg.folds > 1:
        model = FoldEnsemble([model] + [build_aggregator(cfg, ckpt["in_dim"]) for _ in range(cfg.folds - 1)])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def stored_threshold(ckpt: dict) -> tuple[float, str]:
    """(threshold, how it was chosen) of a MIL checkpoint; 0.5 for checkpoints without one."""
    if "threshold" in ckpt:
        return float(ckpt["threshold"]), ckpt["threshold_rule"]
    return 0.5, "default 0.5 (the checkpoint stores no threshold)"
