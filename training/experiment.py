"""The witness-rate sweep: every pretraining method x witness rate x seed, PAMIL on top.

For each (witness rate, seed) one data set is made (synthetic, or bags from a class-folder
data set) and shared by every method, so methods differ only in pretraining; every
method gets the same budget (epochs, batch, model, MIL training). Each run is
synth/bags -> pretrain -> embed -> MIL -> evaluate and leaves its summary.json, so an
interrupted sweep resumes where it stopped.

Outputs under OUT: runs.csv (one row per run, with the gradient-conflict telemetry),
results.csv and results.md (mean +- std over seeds of bag F1, Top-K retrieval and bag AUC per
method and witness rate), intervals.csv and intervals.md (the same figures with 95% bootstrap
intervals over the test bags, training/statistics.py), paired.md (SLAM-AGS minus each other
method on the same data: bag AUC per seed and a paired bootstrap interval), conflicts.md, and
results.png (the metrics against witness rate).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.tables import read_csv, write_csv
from training.bag_generation import BagSpec, make_bags
from training.embed import embed_bags
from training.evaluate import evaluate
from training.metrics import binary_metrics, roc_auc
from training.mil import MilConfig, train_mil
from training.pretrain import METHODS, PretrainConfig, pretrain
from training.statistics import bootstrap
from training.synthetic import SynthConfig, generate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepConfig:
    methods: tuple[str, ...] = tuple(m for m in METHODS if m != "cell-supervised")
    witness_rates: tuple[float, ...] = (0.10, 0.05, 0.01, 0.005)
    seeds: tuple[int, ...] = (0, 1, 2)
    synth: SynthConfig = field(default_factory=SynthConfig)  # witness_rate and seed set per run
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # method and seed set per run
    mil: MilConfig = field(default_factory=MilConfig)
    features: str = "h"  # the reference code embeds with z; h probes better (docs/results/pretrain-recipe)
    embed_batch: int = 256
    # reference rows on the same data: "oracle" embeds every cell from its truth (the
    # aggregator's ceiling: what MIL reaches with a perfect encoder); "cell-supervised"
    # trains the encoder as a classifier of the true cell labels (the encoder's ceiling)
    references: tuple[str, ...] = ("oracle", "cell-supervised")


PRESETS = {
    # 2 CPU cores, about 75 minutes: 120 bags of 200 cells (41 held out per witness rate and
    # seed, so a bag AUC's standard error is <= 0.05; 0.5% is one cell, 1% two), 40 px cells
    # cropped to 32, a narrow ResNet18, 4 epochs. Measured: a data set 26 s, a SLAM-AGS run
    # 80 s, SimCLR 63 s, the oracle row 15 s; 3 witness rates x 3 seeds x 6 pretrained rows.
    "cpu": SweepConfig(
        witness_rates=(0.10, 0.01, 0.005),
        synth=SynthConfig(
            bags=120, cells_per_bag=200, image_size=40, bag_size_jitter=0.0, test_fraction=0.34
        ),
        pretrain=PretrainConfig(
            epochs=4,
            batch_size=128,
            warmup_epochs=1,
            image_size=40,
            crop_size=32,
            width=8,
            proj_dim=64,
            lr=0.05,
            num_workers=0,
        ),
        mil=MilConfig(epochs=40, patience=10),
    ),
    # Seconds: checks that the sweep runs end to end (tests), says nothing about the method.
    "smoke": SweepConfig(
        synth=SynthConfig(bags=8, cells_per_bag=12, image_size=40, bag_size_jitter=0.0, test_fraction=0.5),
        pretrain=PretrainConfig(
            epochs=1,
            batch_size=16,
            warmup_epochs=0,
            image_size=40,
            crop_size=32,
            width=4,
            proj_dim=8,
            num_workers=0,
        ),
        mil=MilConfig(epochs=3, patience=3),
    ),
    # The paper's sizes for GPU servers: 1000-cell bags of 250 px cells, full ResNet18, 150 epochs.
    "paper": SweepConfig(
        synth=SynthConfig(
            bags=200, cells_per_bag=1000, image_size=250, bag_size_jitter=0.0, test_fraction=0.25
        ),
        pretrain=PretrainConfig(num_workers=8),
        mil=MilConfig(epochs=100, patience=20),
    ),
}


def conflict_stats(telemetry: Path) -> tuple[float, float]:
    """(fraction of steps whose task gradients conflicted, mean gradient cosine); nan for one task."""
    if not Path(telemetry).exists():  # a reference row: no pretraining
        return float("nan"), float("nan")
    rows = [r for r in read_csv(telemetry, ("conflict", "grad_cos")) if r["grad_cos"] != ""]
    if not rows:
        return float("nan"), float("nan")
    return float(np.mean([int(r["conflict"]) for r in rows])), float(
        np.mean([float(r["grad_cos"]) for r in rows])
    )


def make_data(
    cfg: SweepConfig, out: Path, wr: float, seed: int, cells_root: Path | None, spec: BagSpec | None
) -> Path:
    data = out / "data" / f"wr{wr:g}_seed{seed}"
    if cells_root is None:
        generate(replace(cfg.synth, witness_rate=wr, seed=seed), data)
    elif not (data / "labels.csv").exists():
        make_bags(cells_root, replace(spec or BagSpec(), witness_rate=wr, seed=seed), data)
    return data


def run_one(cfg: SweepConfig, data: Path, run: Path, method: str, seed: int) -> dict:
    """pretrain -> embed -> MIL -> evaluate for one method on one data set (resumable)."""
    summary_path = run / "eval" / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    pcfg = replace(cfg.pretrain, method=method, seed=seed)
    ckpt = pretrain(pcfg, data, run, resume=True)
    emb = run / "embeddings"
    embed_bags(ckpt, data, emb, features=cfg.features, batch_size=cfg.embed_batch, num_workers=0)
    mil = train_mil(replace(cfg.mil, seed=seed), emb, data / "labels.csv", run)
    return evaluate(mil, emb, data, run / "eval")


def run_reference(cfg: SweepConfig, data: Path, run: Path, reference: str, seed: int) -> dict:
    """A reference row on one data set (resumable): the cell classifier's encoder, or MIL and
    evaluation on oracle embeddings."""
    from training.oracle import oracle_embeddings

    if reference == "cell-supervised":
        return run_one(cfg, data, run, reference, seed)
    summary_path = run / "eval" / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    if reference != "oracle":
        raise SlamError(f"reference {reference!r}: expected oracle or cell-supervised")
    emb = oracle_embeddings(data, run / "embeddings", seed=seed)
    mil = train_mil(replace(cfg.mil, seed=seed), emb, data / "labels.csv", run)
    return evaluate(mil, emb, data, run / "eval")


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_sweep(
    cfg: SweepConfig,
    out: Path,
    *,
    cells_root: Path | None = None,
    bag_spec: BagSpec | None = None,
    on_run: Callable[[int, int, str], None] | None = None,
) -> list[dict]:
    """Run every (method, witness rate, seed); write the tables and the plot; return the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    rows_of = (*cfg.methods, *cfg.references)
    total = len(rows_of) * len(cfg.witness_rates) * len(cfg.seeds)
    rows, done = [], 0
    for wr in cfg.witness_rates:
        for seed in cfg.seeds:
            data = make_data(cfg, out, wr, seed, cells_root, bag_spec)
            for method in rows_of:
                run = run_dir(out, method, wr, seed)
                if method in cfg.references:
                    s = run_reference(cfg, data, run, method, seed)
                else:
                    s = run_one(cfg, data, run, method, seed)
                frac, cos = conflict_stats(run / "telemetry.csv")
                rows.append(
                    {
                        "method": method,
                        "witness_rate": wr,
                        "seed": seed,
                        "f1": s["f1"],
                        "auc": s["auc"],
                        "top_k_fraction": s["top_k_fraction_mean"],
                        "probe_auc": s.get("probe_auc"),
                        "conflict_fraction": frac,
                        "mean_grad_cos": cos,
                    }
                )
                done += 1
                if on_run:
                    on_run(done, total, f"{method} wr={wr:g} seed={seed}")
    write_tables(rows, cfg, out)
    write_intervals(cfg, out)
    return rows


def run_dir(out: Path, method: str, wr: float, seed: int) -> Path:
    return Path(out) / "runs" / method / f"wr{wr:g}_seed{seed}"


def bag_scores(out: Path, method: str, wr: float, seed: int) -> dict[str, np.ndarray]:
    """One run's held-out bags (evaluate's bags.csv), sorted by bag: labels, P(abnormal),
    decisions at the stored threshold, and the top-K fraction (NaN for a negative bag)."""
    rows = sorted(
        read_csv(run_dir(out, method, wr, seed) / "eval" / "bags.csv", ["bag_id"]), key=lambda r: r["bag_id"]
    )
    return {
        "bag": np.array([r["bag_id"] for r in rows]),
        "label": np.array([int(r["label"]) for r in rows]),
        "prob": np.array([float(r["prob_abnormal"]) for r in rows]),
        "prediction": np.array([int(r["prediction"]) for r in rows]),
        "top_k": np.array([float(r["top_k_fraction"]) if r["label"] == "1" else np.nan for r in rows]),
    }


def _f1(label: np.ndarray, prediction: np.ndarray) -> float:
    return binary_metrics(label, prediction.astype(float), threshold=0.5)["f1"]


def _mean_of_known(x: np.ndarray) -> float:
    """The mean of the values that are not NaN (the positive bags' top-K fractions); NaN if none."""
    known = x[~np.isnan(x)]
    return float(known.mean()) if len(known) else float("nan")


def _auc_difference(label: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return roc_auc(label, a) - roc_auc(label, b)


def write_intervals(cfg: SweepConfig, out: Path, reference: str = "slam-ags") -> None:
    """intervals.md / intervals.csv: per method and witness rate, bag F1 at the calibrated
    threshold, bag AUC and top-K retrieval with 95% bootstrap intervals over bags (the mean
    over seeds); paired.md: `reference` minus each other method's bag AUC, per seed and with
    a paired bootstrap interval (the same bags score both)."""
    figures = (  # (title, column, the arrays of one run, the statistic of those arrays)
        ("bag F1", "f1", lambda s: [s["label"], s["prediction"]], _f1),
        ("bag AUC", "auc", lambda s: [s["label"], s["prob"]], roc_auc),
        ("top-K retrieval", "top_k", lambda s: [s["top_k"]], _mean_of_known),
    )
    scores = {
        (m, wr, seed): bag_scores(out, m, wr, seed)
        for m in (*cfg.methods, *cfg.references)
        for wr in cfg.witness_rates
        for seed in cfg.seeds
    }
    header = "| method | witness rate | test bags per seed | " + " | ".join(f[0] for f in figures) + " |"
    md, table = [header, "|" + "---|" * (3 + len(figures))], []
    for m in (*cfg.methods, *cfg.references):
        for wr in cfg.witness_rates:
            runs = [scores[(m, wr, seed)] for seed in cfg.seeds]
            cells, row = [], [m, wr, len(runs[0]["bag"])]
            for _, _, arrays, statistic in figures:
                est, low, high = bootstrap([arrays(r) for r in runs], statistic)
                cells.append(f"{est:.3f} [{low:.3f}, {high:.3f}]")
                row += [f"{est:.4f}", f"{low:.4f}", f"{high:.4f}"]
            md.append(f"| {m} | {wr:.1%} | {len(runs[0]['bag'])} | " + " | ".join(cells) + " |")
            table.append(row)
    columns = ["method", "witness_rate", "test_bags"]
    columns += [f"{f[1]}_{part}" for f in figures for part in ("mean", "low", "high")]
    write_csv(out / "intervals.csv", columns, table)
    (out / "intervals.md").write_text("\n".join(md) + "\n")
    if reference not in cfg.methods:
        return
    paired = [
        f"| {reference} minus | witness rate | bag AUC difference per seed | mean [95% paired bootstrap] |",
        "|---|---|---|---|",
    ]
    for m in (x for x in cfg.methods if x != reference):
        for wr in cfg.witness_rates:
            groups, per_seed = [], []
            for seed in cfg.seeds:
                a, b = scores[(reference, wr, seed)], scores[(m, wr, seed)]
                if not np.array_equal(a["bag"], b["bag"]):
                    raise SlamError(
                        f"{out}: {reference} and {m} were tested on different bags (wr {wr:g}, seed {seed})"
                    )
                groups.append([a["label"], a["prob"], b["prob"]])
                per_seed.append(_auc_difference(*groups[-1]))
            est, low, high = bootstrap(groups, _auc_difference)
            seeds = ", ".join(f"{d:+.3f}" for d in per_seed)
            paired.append(f"| {m} | {wr:.1%} | {seeds} | {est:+.3f} [{low:+.3f}, {high:+.3f}] |")
    (out / "paired.md").write_text("\n".join(paired) + "\n")


def write_tables(rows: list[dict], cfg: SweepConfig, out: Path) -> None:
    write_csv(out / "runs.csv", list(rows[0]), [list(r.values()) for r in rows])
    table, md = (
        [],
        [
            "| method | witness rate | bag F1 | Top-K retrieval | bag AUC | encoder probe cell AUC |",
            "|---|---|---|---|---|---|",
        ],
    )
    conflicts = [
        "| method | witness rate | steps with conflicting gradients | mean gradient cosine |",
        "|---|---|---|---|",
    ]
    for method in (*cfg.methods, *cfg.references):
        for wr in cfg.witness_rates:
            sel = [r for r in rows if r["method"] == method and r["witness_rate"] == wr]
            stats = {
                k: _mean_std([r[k] for r in sel])
                for k in ("f1", "top_k_fraction", "auc", "probe_auc", "conflict_fraction", "mean_grad_cos")
            }
            table.append(
                [method, wr, len(sel)]
                + [f"{x:.4f}" for k in ("f1", "top_k_fraction", "auc", "probe_auc") for x in stats[k]]
            )
            md.append(
                f"| {method} | {wr:.1%} | "
                + " | ".join(
                    f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}"
                    for k in ("f1", "top_k_fraction", "auc", "probe_auc")
                )
                + " |"
            )
            if not math.isnan(stats["conflict_fraction"][0]):
                conflicts.append(
                    f"| {method} | {wr:.1%} | {stats['conflict_fraction'][0]:.1%} ± {stats['conflict_fraction'][1]:.1%} | {stats['mean_grad_cos'][0]:+.3f} |"
                )
    write_csv(
        out / "results.csv",
        [
            "method",
            "witness_rate",
            "runs",
            "f1_mean",
            "f1_std",
            "top_k_mean",
            "top_k_std",
            "auc_mean",
            "auc_std",
            "probe_auc_mean",
            "probe_auc_std",
        ],
        table,
    )
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "conflicts.md").write_text("\n".join(conflicts) + "\n")
    plot(rows, cfg, out / "results.png")


def plot(rows: list[dict], cfg: SweepConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in (
        (axes[0], "f1", "bag F1"),
        (axes[1], "top_k_fraction", "Top-K positive-cell retrieval"),
    ):
        for method in (*cfg.methods, *cfg.references):
            means, stds = zip(
                *[
                    _mean_std([r[key] for r in rows if r["method"] == method and r["witness_rate"] == wr])
                    for wr in cfg.witness_rates
                ]
            )
            ax.errorbar(
                [100 * w for w in cfg.witness_rates],
                means,
                yerr=stds,
                marker="o",
                capsize=3,
                label=method,
                linestyle="--" if method in cfg.references else "-",
            )
        if key == "top_k_fraction":  # K = 0.4 x bag size: a random ranking finds 40% of the positives
            ax.axhline(0.4, color="gray", linestyle=":", label="chance (random ranking)")
        ax.set_xscale("log")
        ax.set_xlabel("witness rate (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend(handles=axes[1].get_legend_handles_labels()[0][:1], loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cell_classifier_auc(
    synth: SynthConfig, out: Path, *, width: int = 16, epochs: int = 5, crop: int | None = None, seed: int = 0
) -> float:
    """Test AUC of a ResNet18 cell classifier trained on *true cell labels* (cells.csv).

    Measures how hard the synthetic abnormal cells are to tell apart from normal ones, one
    cell at a time (the synthetic set aims at an AUC of about 0.85 to 0.9): positives of the train
    bags, an equal number of their negatives, tested on the test bags' cells.
    """
    import torch
    import torch.nn.functional as F

    from slamctl.images import load_rgb
    from training.augment import StrongView
    from training.bagset import load_bags, read_cell_truth
    from training.encoder import Encoder, EncoderConfig, center_crop, uint8_to_input
    from training.metrics import roc_auc

    generate(synth, out)
    truth = read_cell_truth(out)
    crop = crop or synth.image_size - synth.image_size // 8

    def cells(split: str, balance: bool) -> tuple[torch.Tensor, torch.Tensor]:
        files = [(f, truth[(b.bag_id, f.name)]) for b in load_bags(out, split) for f in b.files]
        pos = [f for f, t in files if t]
        neg = [f for f, t in files if not t]
        if balance:
            neg = list(np.random.default_rng(seed).permutation(neg)[: len(pos)])
        x = torch.from_numpy(np.stack([load_rgb(f) for f in pos + neg]))
        return uint8_to_input(x), torch.tensor([1] * len(pos) + [0] * len(neg))

    x_train, y_train = cells("train", balance=True)
    x_test, y_test = cells("test", balance=False)
    torch.manual_seed(seed)
    model = Encoder(EncoderConfig(width=width, proj_dim=8, num_classes=2))
    strong = StrongView(crop)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_train)).split(64):
            h, _ = model(strong(x_train[idx]))
            loss = F.cross_entropy(model.classify(h), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        scores = torch.cat(
            [
                torch.softmax(model.classify(model(center_crop(x, crop))[0]), 1)[:, 1]
                for x in x_test.split(256)
            ]
        )
    return roc_auc(y_test.numpy(), scores.numpy())
