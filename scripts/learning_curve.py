"""How many training bags does the study need at a witness rate? A learning curve of its
cell-supervised reference row.

For each seed: one synthetic data set of the study's kind (`experiment wr-sweep --preset cpu`
cells, --bags bags, a quarter held out). For each number of training bags, nested and
stratified subsets of its train bags: the study's cell-supervised encoder pretrained on that
subset (on at most --max-cells cells, every abnormal one kept), every cell embedded, `train
mil` with the preset's settings, evaluated on the same held-out bags beside the
instance-truth ceiling (training/ceiling.py) trained on the same subset. One JSON file per
point under OUT, so a stopped run resumes. Prints a Markdown table: mean and worst over seeds.

    .venv/bin/python scripts/learning_curve.py --out runs/learning-curve
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from slamctl.tables import read_csv, write_csv
from slamctl.training.bagset import CELLS_FILE, LABELS_FILE, SPLIT_FILE, read_cell_truth
from slamctl.training.ceiling import ceiling_scores
from slamctl.training.embed import embed_bags
from slamctl.training.experiment_config import PRESETS
from slamctl.training.metrics import default_top_k, roc_auc, top_k_retrieval
from slamctl.training.mil import load_mil, load_split_bags, predict, train_mil
from slamctl.training.pretrain import pretrain
from slamctl.training.probe import probe_auc
from slamctl.training.synthetic import generate


def labelled(emb: Path, data: Path, split: str):
    bags, ys, _ = load_split_bags(emb, data / LABELS_FILE, split)
    truth = read_cell_truth(data)
    return bags, np.array(ys), [np.array([truth[(b.bag_id, n)] for n in b.names], bool) for b in bags]


def scores(ys, probs, attention, cells) -> dict:
    fracs = [top_k_retrieval(a, c, default_top_k(len(a)))[1] for y, a, c in zip(ys, attention, cells) if y]
    return {"auc": roc_auc(ys, probs), "top_k": float(np.mean(fracs))}


def subset(data: Path, n_train: int, seed: int, out: Path) -> Path:
    """A bag folder of the first n_train/2 train bags of each label (a fixed seeded order, so
    subsets are nested) and every test bag: links to data's bag folders, its tables cut."""
    rows = read_csv(data / LABELS_FILE, ("bag_id", "label"))
    split = {r["bag_id"]: r["split"] for r in read_csv(data / SPLIT_FILE, ("bag_id", "split"))}
    rng = np.random.default_rng([seed, 7])
    keep = {r["bag_id"] for r in rows if split[r["bag_id"]] == "test"}
    for label in ("0", "1"):
        train = [r["bag_id"] for r in rows if r["label"] == label and split[r["bag_id"]] == "train"]
        if len(train) < n_train // 2:
            raise SystemExit(f"{data}: {len(train)} train bags of label {label}, {n_train // 2} asked")
        keep |= {train[i] for i in rng.permutation(len(train))[: n_train // 2]}
    out.mkdir(parents=True, exist_ok=True)
    for bag in keep:
        if not (out / bag).exists():
            (out / bag).symlink_to((data / bag).resolve(), target_is_directory=True)
    cells = read_csv(data / CELLS_FILE, ("bag_id",))
    write_csv(out / CELLS_FILE, list(cells[0]), [list(r.values()) for r in cells if r["bag_id"] in keep])
    write_csv(out / SPLIT_FILE, ["bag_id", "split"], [(b, split[b]) for b in sorted(keep)])
    write_csv(
        out / LABELS_FILE,
        ["bag_id", "label"],
        [(r["bag_id"], r["label"]) for r in rows if r["bag_id"] in keep],
    )
    return out


def point(out: Path, data: Path, n_train: int, seed: int, max_cells: int) -> dict:
    path = out / f"n{n_train}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    preset = PRESETS["cpu"]
    run = out / "runs" / path.stem
    bags = subset(data, n_train, seed, run / "bags")
    pcfg = replace(preset.pretrain, method="cell-supervised", seed=seed, max_cells=max_cells)
    emb = run / "embeddings"
    ckpt = pretrain(pcfg, bags, run, resume=True)
    embed_bags(ckpt, bags, emb, features=preset.features, batch_size=preset.embed_batch, num_workers=0)
    if not (run / "mil.pt").exists():  # a rerun (after removing the JSON) re-scores without retraining
        train_mil(replace(preset.mil, seed=seed), emb, bags / LABELS_FILE, run)
    model, _ = load_mil(run / "mil.pt")
    test, train = labelled(emb, bags, "test"), labelled(emb, bags, "train")
    probs, attention = predict(model, test[0])
    bag_scores, cell_scores = ceiling_scores(
        [b.features for b in train[0]],
        train[2],
        [b.features for b in test[0]],
        standardised=preset.mil.standardise,
    )
    result = {
        "n_train": n_train,
        "seed": seed,
        **scores(test[1], probs, attention, test[2]),
        **{f"ceiling_{k}": v for k, v in scores(test[1], bag_scores, cell_scores, test[2]).items()},
        "probe_auc": probe_auc([b.features for b in test[0]], test[2]),
    }
    path.write_text(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bags", type=int, default=480)
    parser.add_argument("--witness-rate", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-bags", type=int, nargs="+", default=[90, 180, 360])
    parser.add_argument("--difficulty", type=float, default=PRESETS["cpu"].synth.difficulty)
    parser.add_argument("--max-cells", type=int, default=16000)
    args = parser.parse_args()
    synth = replace(
        PRESETS["cpu"].synth,
        bags=args.bags,
        test_fraction=0.25,
        witness_rate=args.witness_rate,
        difficulty=args.difficulty,
    )
    results = {}
    for seed in range(args.seeds):
        data = args.out / "data" / f"wr{args.witness_rate:g}_seed{seed}"
        generate(replace(synth, seed=seed), data)
        for n in args.train_bags:
            results.setdefault(n, []).append(point(args.out, data, n, seed, args.max_cells))
            print(json.dumps(results[n][-1]), flush=True)
    print(
        "| train bags | bag AUC mean | worst | top-K mean | worst | ceiling AUC mean | worst | probe cell AUC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, rows in results.items():
        auc, top, ceiling, probe = (
            [r[k] for r in rows] for k in ("auc", "top_k", "ceiling_auc", "probe_auc")
        )
        print(
            f"| {n} | {np.mean(auc):.3f} | {min(auc):.3f} | {np.mean(top):.3f} | {min(top):.3f} | "
            f"{np.mean(ceiling):.3f} | {min(ceiling):.3f} | {np.mean(probe):.3f} |"
        )


if __name__ == "__main__":
    main()
