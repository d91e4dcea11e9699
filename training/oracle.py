"""Oracle embeddings: bags whose cell embeddings are built from the per-cell truth.

The MIL aggregator's controls (`write_oracle`): cells built from the truth, with the
slide-level effects of real embeddings (OracleConfig), so a MIL that fails here fails on
its own. `null=True` draws abnormal cells like normal ones (no signal: bag AUC must be about
0.5). The folder is laid out like a bag
folder and an embedding folder at once (labels.csv, split.csv, cells.csv, embedding.json,
<bag_id>.npz), so `slamctl train mil` and `slamctl evaluate` run on it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.tables import write_csv
from slamctl.training.bagset import CELLS_FILE, LABELS_FILE, SPLIT_FILE, assign_splits
from slamctl.training.embed import META_FILE, save_npz
from slamctl.training.synthetic import positives_in_bag


@dataclass(frozen=True)
class OracleConfig:
    """Oracle bags that look like real embeddings: every cell is a normal cell type (one of
    `clusters` centres) plus unit Gaussian noise; an abnormal cell is a normal one moved
    `separation` sds along one random direction; every bag then gets slide-level effects that
    real encoders carry (stain, scanner, cell mix): its own offset, its own scale and its own
    proportions of the cell types. The defaults put a cell probe (logistic regression across
    bags, as `evaluate` runs it) near 0.95, like the encoders of the study, while within a bag
    the abnormal cells stand `separation` sds apart."""

    bags: int = 80
    cells_per_bag: int = 300
    witness_rate: float = 0.01  # 300 cells at 1%: 3 abnormal cells per abnormal bag
    dim: int = 48
    separation: float = 6.5  # abnormal cells: sds along one random unit direction (probe ~0.95)
    clusters: int = 4  # normal cell types
    cluster_sd: float = 2.0  # sd per dimension of the cell types' centres
    mix: float = 2.0  # Dirichlet concentration of a bag's cell-type proportions (lower: more varied)
    bag_offset: float = 2.0  # sd per dimension of a bag's own offset
    bag_scale: float = 0.2  # sd of the log of a bag's own scale
    outliers: int = 0  # normal cells per bag moved `outlier_distance` sds along their own random direction
    outlier_distance: float = 30.0  # (debris, doublets: far from every cell type, in no common direction)
    test_fraction: float = 0.25
    null: bool = False  # abnormal cells drawn exactly like normal ones: no signal
    seed: int = 0

    def check(self) -> None:
        if self.bags < 4 or self.dim < 2 or self.cells_per_bag < 1 or self.clusters < 1:
            raise SlamError(f"oracle: expected bags >= 4, dim >= 2, cells >= 1, clusters >= 1, got {self}")
        if not 0 < self.witness_rate <= 1:
            raise SlamError(f"oracle: expected 0 < witness rate <= 1, got {self.witness_rate}")
        if min(self.separation, self.cluster_sd, self.bag_offset, self.bag_scale) < 0 or self.mix <= 0:
            raise SlamError(f"oracle: expected separation, sds and scales >= 0 and mix > 0, got {self}")


def truth_features(abnormal: np.ndarray, dim: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """(N, dim) float32: feature 0 = 1 for an abnormal cell, feature 1 = 1 for a normal one,
    Gaussian noise of sd `noise` on every feature (the sweep's reference row on real bags)."""
    x = rng.normal(0.0, noise, size=(len(abnormal), dim)).astype(np.float32)
    x[abnormal, 0] += 1.0
    x[~abnormal, 1] += 1.0
    return x


class OracleCells:
    """The data set's fixed parts (cell-type centres, the abnormal direction), drawn once."""

    def __init__(self, config: OracleConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.centres = rng.normal(0.0, config.cluster_sd, size=(config.clusters, config.dim))
        direction = rng.normal(size=config.dim)
        self.direction = direction / np.linalg.norm(direction)

    def bag(self, abnormal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, dim) float32 embeddings of one bag whose cells `abnormal` marks."""
        c = self.config
        mix = rng.dirichlet(np.full(c.clusters, c.mix))
        types = rng.choice(c.clusters, size=len(abnormal), p=mix)
        x = self.centres[types] + rng.normal(size=(len(abnormal), c.dim))  # (N, D)
        if not c.null:
            x[abnormal] += c.separation * self.direction
        if c.outliers:
            odd = rng.choice(
                np.flatnonzero(~abnormal), size=min(c.outliers, int((~abnormal).sum())), replace=False
            )
            away = rng.normal(size=(len(odd), c.dim))
            x[odd] += c.outlier_distance * away / np.linalg.norm(away, axis=1, keepdims=True)
        scale = np.exp(rng.normal(0.0, c.bag_scale))
        offset = rng.normal(0.0, c.bag_offset, size=c.dim)
        return (scale * x + offset).astype(np.float32)


def oracle_embeddings(bags_dir: Path, out: Path, *, dim: int = 32, noise: float = 0.3, seed: int = 0) -> Path:
    """An embedding folder for an existing bag folder, built from its cell truth (cells.csv):
    the witness-rate sweep's reference row, what the aggregator reaches with a perfect encoder
    on the same bags."""
    from slamctl.training.bagset import load_bags, read_cell_truth

    out = Path(out)
    if (out / META_FILE).exists():
        return out
    truth = read_cell_truth(bags_dir)
    rng = np.random.default_rng([seed, 13])
    out.mkdir(parents=True, exist_ok=True)
    for bag in load_bags(bags_dir):
        names = np.array([f.name for f in bag.files])
        positive = np.array([bool(truth.get((bag.bag_id, n), 0)) for n in names])
        x = truth_features(positive, dim, noise, rng)
        save_npz(out / f"{bag.bag_id}.npz", features=x, names=names, skipped=np.array([], dtype=str))
    meta = {"dim": dim, "features": "oracle", "method": "oracle", "encoder_sha256": None, "noise": noise}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # last: it marks the folder complete
    return out


def write_oracle(config: OracleConfig, out: Path) -> Path:
    """Write the oracle bags to `out` (bag folder and embedding folder in one)."""
    config.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 11])
    cells = OracleCells(config, rng)
    labels = [1 if i < config.bags // 2 else 0 for i in range(config.bags)]
    splits = assign_splits(labels, config.test_fraction, config.seed)
    cell_rows = []
    for i, label in enumerate(labels):
        bag_id = f"bag_{i:04d}"
        n = config.cells_per_bag
        positive = np.zeros(n, dtype=bool)
        if label:
            positive[rng.choice(n, size=positives_in_bag(n, config.witness_rate), replace=False)] = True
        x = cells.bag(positive, rng)
        names = np.array([f"cell_{c:05d}.png" for c in range(n)])
        save_npz(out / f"{bag_id}.npz", features=x, names=names, skipped=np.array([], dtype=str))
        cell_rows += [(bag_id, name, int(p)) for name, p in zip(names, positive)]
    meta = {
        "dim": config.dim,
        "features": "oracle",
        "method": "oracle",
        "encoder_sha256": None,
        "oracle": asdict(config),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    write_csv(out / CELLS_FILE, ["bag_id", "file", "positive"], cell_rows)
    write_csv(out / SPLIT_FILE, ["bag_id", "split"], [(f"bag_{i:04d}", s) for i, s in enumerate(splits)])
    write_csv(out / LABELS_FILE, ["bag_id", "label"], [(f"bag_{i:04d}", y) for i, y in enumerate(labels)])
    return out
