"""The witness-rate sweep's configuration and presets, and the cell-difficulty check's:
torch-free, so the command line reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass, field

from slamctl.training.mil_config import MilConfig
from slamctl.training.pretrain_config import METHODS, PretrainConfig
from slamctl.training.synthetic import SynthConfig


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
    # a frozen foundation encoder's row (`--foundation dinobloom-s --weights FILE`): its
    # embeddings under the same MIL, on the same bags; absent without a weights file
    foundation: str | None = None
    foundation_weights: str | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        """Every row of the tables: the methods, the references, the foundation encoder."""
        return (*self.methods, *self.references, *((self.foundation,) if self.foundation else ()))


BAGS_CPU = 240  # chosen on the learning curve (docs/results/wr-sweep-cpu/README.md)

PRESETS = {
    # 2 CPU cores: synthetic bags of 200 cells, 40 px cells cropped to 32, a narrow ResNet18,
    # 4 epochs on at most 16,000 training cells (every abnormal one kept for the cell
    # classifier). Sized so that 1% (two abnormal cells in a bag) is testable: at difficulty
    # 0.6 even the instance-truth ceiling of the cell-supervised encoder stays near chance at
    # 1% (bag AUC 0.55 with 360 training bags, scripts/learning_curve.py), at 0.1 its cells
    # probe 0.98. MIL without per-bag standardisation: on these image embeddings it cost bag
    # AUC (0.90 -> 0.74 at difficulty 0.1, 0.71 -> 0.38 at 0.3, cell-supervised, 180 bags),
    # unlike on the oracle controls with slide effects (docs/results/wr-sweep-cpu/README.md).
    # Top-1% pooling and a 5-fold ensemble (5 restarts each): on the same embeddings at 1% they
    # closed most of the gap to the instance-truth ceiling (scripts/mil_on_sweep.py).
    "cpu": SweepConfig(
        witness_rates=(0.10, 0.01),
        synth=SynthConfig(
            bags=BAGS_CPU,
            cells_per_bag=200,
            image_size=40,
            difficulty=0.1,
            bag_size_jitter=0.0,
            test_fraction=0.25,
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
            max_cells=16_000,
        ),
        mil=MilConfig(epochs=40, patience=10, standardise=False, top_fraction=0.01, folds=5),
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


# `slamctl experiment cell-auc`: 20 bags of 100 cells at 72 px (20% abnormal in abnormal bags,
# 30% of the bags held out), and the sweep's cell-supervised reference as the classifier
CELL_AUC_SYNTH = SynthConfig(bags=20, cells_per_bag=100, witness_rate=0.2, test_fraction=0.3)
CELL_AUC_PRETRAIN = PretrainConfig(
    method="cell-supervised",
    epochs=6,
    batch_size=32,
    warmup_epochs=1,
    width=16,
    proj_dim=8,
    lr=0.1,
    num_workers=0,
)
