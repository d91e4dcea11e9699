"""The witness-rate sweep's results: each run's held-out bag scores read back, and the
tables and plot written from them (results.md/csv, intervals.md/csv with 95% bootstrap
intervals over the test bags, paired.md, conflicts.md, results.png)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.tables import read_csv, write_csv
from slamctl.training.experiment_config import SweepConfig
from slamctl.training.metrics import decision_metrics, roc_auc
from slamctl.training.statistics import bootstrap


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


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _f1(label: np.ndarray, prediction: np.ndarray) -> float:
    return decision_metrics(label, prediction)["f1"]


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
        for m in cfg.rows
        for wr in cfg.witness_rates
        for seed in cfg.seeds
    }
    header = "| method | witness rate | test bags per seed | " + " | ".join(f[0] for f in figures) + " |"
    md, table = [header, "|" + "---|" * (3 + len(figures))], []
    for m in cfg.rows:
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
    for m in (x for x in cfg.rows if x != reference and x not in cfg.references):  # methods, foundation
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


FIGURES = ("f1", "top_k_fraction", "auc", "ceiling_auc", "probe_auc")  # results.md's columns, in order


def write_tables(rows: list[dict], cfg: SweepConfig, out: Path) -> None:
    write_csv(out / "runs.csv", list(rows[0]), [list(r.values()) for r in rows])
    table, md = (
        [],
        [
            "| method | witness rate | bag F1 | Top-K retrieval | bag AUC | instance-truth ceiling bag AUC "
            "| encoder probe cell AUC |",
            "|---|---|---|---|---|---|---|",
        ],
    )
    conflicts = [
        "| method | witness rate | steps with conflicting gradients | mean gradient cosine |",
        "|---|---|---|---|",
    ]
    for method in cfg.rows:
        for wr in cfg.witness_rates:
            sel = [r for r in rows if r["method"] == method and r["witness_rate"] == wr]
            stats = {
                k: _mean_std([r[k] for r in sel]) for k in (*FIGURES, "conflict_fraction", "mean_grad_cos")
            }
            table.append([method, wr, len(sel)] + [f"{x:.4f}" for k in FIGURES for x in stats[k]])
            md.append(
                f"| {method} | {wr:.1%} | "
                + " | ".join(f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}" for k in FIGURES)
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
            "ceiling_auc_mean",
            "ceiling_auc_std",
            "probe_auc_mean",
            "probe_auc_std",
        ],
        table,
    )
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "conflicts.md").write_text("\n".join(conflicts) + "\n")


def plot(rows: list[dict], cfg: SweepConfig, out: Path) -> None:
    """results.png: bag AUC and top-K retrieval with their 95% bootstrap intervals over the
    test bags (intervals.csv), and the encoder probe's cell AUC (mean and std over seeds),
    against the witness rate; chance as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = read_csv(out / "intervals.csv", ["method"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    panels = (  # (axis, title, chance, (mean, low, high) of a method at a witness rate)
        (axes[0], "bag AUC (95% bootstrap interval)", 0.5, "auc"),
        (axes[1], "Top-K positive-cell retrieval (95% interval)", 0.4, "top_k"),
        (axes[2], "encoder probe cell AUC (mean ± std over seeds)", 0.5, None),
    )
    rates = [100 * w for w in cfg.witness_rates]
    for ax, title, chance, key in panels:
        for method in cfg.rows:
            if key is None:
                mean, std = zip(
                    *[
                        _mean_std(
                            [
                                r["probe_auc"]
                                for r in rows
                                if r["method"] == method and r["witness_rate"] == wr
                            ]
                        )
                        for wr in cfg.witness_rates
                    ]
                )
                err = np.array([std, std])
            else:
                found = {
                    float(r["witness_rate"]): [float(r[f"{key}_{p}"]) for p in ("mean", "low", "high")]
                    for r in intervals
                    if r["method"] == method
                }
                mean, low, high = np.array([found[wr] for wr in cfg.witness_rates]).T
                err = np.array([mean - low, high - mean])
            ax.errorbar(
                rates,
                mean,
                yerr=err,
                marker="o",
                capsize=3,
                label=method,
                linestyle="-" if method in cfg.methods else "--",
            )
        ax.axhline(chance, color="gray", linestyle=":")
        ax.set_xscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.minorticks_off()
        ax.set_xlabel("witness rate (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.text(0.99, 0.01, "dotted: chance", ha="right", fontsize=8, color="gray")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)
