"""Synthetic stained-smear cytology bags, a stand-in for the Bone Marrow set.

Each cell is drawn from a handful of parameters: a pale background, an elliptical
cytoplasm disc, a nucleus (round or lobed) whose chromatin texture is low-pass filtered
noise. Abnormal (blast-like) cells differ subtly from the lymphocyte-like normal cells:
a larger nucleus-to-cytoplasm ratio, finer and paler chromatin, sometimes a nucleolus.
`difficulty` moves the blast towards the lymphocyte (1.0 = identical); per-cell jitter
makes the classes overlap. Slide-level nuisance (stain, brightness, blur, scale,
cell-type mix, bag size) is drawn independently of the label, so it cannot leak it.
`null=True` draws abnormal cells exactly like normal ones: bag AUC must then be ~0.5.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from slamctl.errors import SlamError
from slamctl.tables import write_csv
from slamctl.training.bagset import CELLS_FILE, LABELS_FILE, SPLIT_FILE, assign_splits

BACKGROUND = np.array([238.0, 228.0, 232.0])


@dataclass(frozen=True)
class CellType:
    radius: float  # cell radius as a fraction of the image size
    nc_ratio: float  # nucleus radius / cell radius
    grain: float  # chromatin grain size as a fraction of the image size (small = fine)
    darkness: float  # 0 pale .. 1 dark nucleus
    lobes: int  # 1 = round nucleus, >1 = segmented
    nucleolus: float  # probability of a visible nucleolus
    cytoplasm: tuple[float, float, float]  # RGB

    def toward(self, other: CellType, t: float) -> CellType:
        """Linear interpolation of the continuous parameters (t=0: self, t=1: other)."""
        mix = lambda a, b: a + (b - a) * t  # noqa: E731
        return CellType(
            radius=mix(self.radius, other.radius),
            nc_ratio=mix(self.nc_ratio, other.nc_ratio),
            grain=mix(self.grain, other.grain),
            darkness=mix(self.darkness, other.darkness),
            lobes=other.lobes if t >= 0.5 else self.lobes,
            nucleolus=mix(self.nucleolus, other.nucleolus),
            cytoplasm=tuple(mix(a, b) for a, b in zip(self.cytoplasm, other.cytoplasm)),
        )


NORMAL_TYPES = {
    "lymphocyte": CellType(0.22, 0.80, 0.09, 0.85, 1, 0.0, (178, 186, 228)),
    "neutrophil": CellType(0.30, 0.42, 0.08, 0.80, 3, 0.0, (226, 206, 216)),
    "erythroblast": CellType(0.23, 0.58, 0.07, 0.95, 1, 0.0, (204, 172, 200)),
    "myelocyte": CellType(0.31, 0.55, 0.07, 0.70, 1, 0.0, (216, 196, 214)),
}
BLAST = CellType(0.27, 0.88, 0.03, 0.55, 1, 0.6, (172, 182, 230))


@dataclass(frozen=True)
class SynthConfig:
    bags: int = 40
    cells_per_bag: int = 100
    witness_rate: float = 0.05  # fraction of abnormal cells in an abnormal bag
    image_size: int = 72  # px; the real data set has 250
    seed: int = 0
    difficulty: float = 0.6  # 0 distinct .. 1 identical; 0.6: cell classifier AUC 0.934 (cell-auc)
    null: bool = False  # abnormal cells drawn exactly like normal ones
    bag_size_jitter: float = 0.2  # bag size drawn uniformly in cells_per_bag * (1 +- jitter)
    test_fraction: float = 0.25  # bags held out for testing, stratified by label

    def check(self) -> None:
        if self.bags < 2:
            raise SlamError(f"--bags: need at least 2 (one per label), got {self.bags}")
        if self.cells_per_bag < 1:
            raise SlamError(f"--cells-per-bag: need at least 1, got {self.cells_per_bag}")
        if not 0 < self.witness_rate <= 1:
            raise SlamError(f"--witness-rate: expected 0 < rate <= 1, got {self.witness_rate}")
        if self.image_size < 16:
            raise SlamError(f"--image-size: expected at least 16 px, got {self.image_size}")
        if not 0 <= self.difficulty <= 1:
            raise SlamError(f"--difficulty: expected 0..1, got {self.difficulty}")
        if not 0 <= self.bag_size_jitter < 1:
            raise SlamError(f"--bag-size-jitter: expected 0..1, got {self.bag_size_jitter}")
        if not 0 <= self.test_fraction < 1:
            raise SlamError(f"--test-fraction: expected 0..1, got {self.test_fraction}")


@dataclass(frozen=True)
class SlideStyle:
    """Label-independent nuisance shared by every cell of one slide."""

    stain: np.ndarray  # (3,) per-channel gain
    brightness: float  # added to every channel, in 0..255 units
    blur: float  # Gaussian blur radius in px
    scale: float  # cell size multiplier
    mix: np.ndarray  # (len(NORMAL_TYPES),) probabilities of the normal cell types


def draw_style(rng: np.random.Generator, image_size: int) -> SlideStyle:
    return SlideStyle(
        stain=1.0 + rng.normal(0.0, 0.05, size=3),
        brightness=float(rng.normal(0.0, 8.0)),
        blur=float(rng.uniform(0.0, 0.012 * image_size)),
        scale=float(rng.uniform(0.88, 1.12)),
        mix=rng.dirichlet(np.full(len(NORMAL_TYPES), 2.0)),
    )


def _texture(rng: np.random.Generator, size: int, grain: float) -> np.ndarray:
    """Zero-mean, unit-variance noise low-pass filtered to blobs of about `grain * size` px."""
    k = int(np.clip(round(1.0 / max(grain, 1e-3)), 2, size))
    low = Image.fromarray(rng.normal(size=(k, k)).astype(np.float32), mode="F")
    tex = np.asarray(low.resize((size, size), Image.BICUBIC), dtype=np.float32)
    return (tex - tex.mean()) / (tex.std() + 1e-6)


def _soft_disc(dist: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (dist < 1), 0 outside, with a soft edge of width `edge` in distance units."""
    return np.clip((1.0 - dist) / edge, 0.0, 1.0)


def render_cell(rng: np.random.Generator, kind: CellType, style: SlideStyle, size: int) -> np.ndarray:
    """One cell image, uint8 (size, size, 3)."""
    jit = lambda v, sd: v * (1.0 + rng.normal(0.0, sd))  # noqa: E731
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2.0
    cx, cy = rng.normal(0.0, 0.03 * size, size=2)
    x, y = xx - cx, yy - cy

    radius = jit(kind.radius, 0.08) * style.scale * size
    theta = rng.uniform(0, np.pi)
    ecc = rng.uniform(0.85, 1.0)
    xr = x * np.cos(theta) + y * np.sin(theta)
    yr = -x * np.sin(theta) + y * np.cos(theta)
    cell = _soft_disc(np.sqrt((xr / radius) ** 2 + (yr / (radius * ecc)) ** 2), 0.06)

    nc = float(np.clip(jit(kind.nc_ratio, 0.07), 0.2, 0.97))
    r_nuc = nc * radius
    slack = (1.0 - nc) * radius * 0.6
    nx, ny = rng.uniform(-slack, slack, size=2) if slack > 0 else (0.0, 0.0)
    if kind.lobes == 1:
        nucleus = _soft_disc(np.hypot(x - nx, y - ny) / r_nuc, 0.08)
    else:
        phase = rng.uniform(0, 2 * np.pi)
        nucleus = np.zeros_like(x)
        for i in range(kind.lobes):
            a = phase + 2 * np.pi * i / kind.lobes
            lx, ly = nx + 0.55 * r_nuc * np.cos(a), ny + 0.55 * r_nuc * np.sin(a)
            nucleus = np.maximum(nucleus, _soft_disc(np.hypot(x - lx, y - ly) / (0.45 * r_nuc), 0.1))
    nucleus *= cell

    darkness = float(np.clip(jit(kind.darkness, 0.08), 0.2, 1.0))
    chroma = _texture(rng, size, jit(kind.grain, 0.1))
    nuc_rgb = np.array([150.0, 110.0, 190.0]) - darkness * np.array([80.0, 70.0, 60.0])
    nuc_img = nuc_rgb[None, None, :] * (1.0 + 0.12 * chroma[..., None])
    if rng.random() < kind.nucleolus:
        ox, oy = rng.uniform(-0.4, 0.4, size=2) * r_nuc
        spot = _soft_disc(np.hypot(x - nx - ox, y - ny - oy) / (0.18 * r_nuc), 0.3)
        nuc_img = nuc_img + (spot * 35.0)[..., None]

    cyto_rgb = np.array(kind.cytoplasm) * (1.0 + rng.normal(0.0, 0.03, size=3))
    cyto_img = cyto_rgb[None, None, :] * (1.0 + 0.03 * _texture(rng, size, 0.1)[..., None])

    img = BACKGROUND[None, None, :] * (1.0 - cell[..., None]) + cyto_img * cell[..., None]
    img = img * (1.0 - nucleus[..., None]) + nuc_img * nucleus[..., None]
    img = img * style.stain[None, None, :] + style.brightness
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if style.blur > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(style.blur))
    noisy = np.asarray(out, dtype=np.float32) + rng.normal(0.0, 2.0, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def abnormal_type(config: SynthConfig) -> CellType | None:
    """The blast-like type at this difficulty, or None in the null setting."""
    if config.null:
        return None
    return BLAST.toward(NORMAL_TYPES["lymphocyte"], config.difficulty)


def positives_in_bag(n_cells: int, witness_rate: float) -> int:
    """Abnormal cells in an abnormal bag of n_cells: round(wr * n), at least one."""
    return int(min(n_cells, max(1, round(witness_rate * n_cells))))


def plan_bags(config: SynthConfig) -> list[tuple[str, int, int, str]]:
    """(bag_id, label, n_cells, split) per bag; half the bags abnormal, split stratified."""
    rng = np.random.default_rng([config.seed, 1])
    labels = [1 if i < config.bags // 2 else 0 for i in range(config.bags)]
    splits = assign_splits(labels, config.test_fraction, config.seed)
    lo = config.cells_per_bag * (1 - config.bag_size_jitter)
    hi = config.cells_per_bag * (1 + config.bag_size_jitter)
    sizes = [max(1, int(round(rng.uniform(lo, hi)))) for _ in labels]
    return [(f"bag_{i:04d}", labels[i], sizes[i], splits[i]) for i in range(config.bags)]


def generate(
    config: SynthConfig,
    out: Path,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> bool:
    """Write the bags to `out`; returns False if the same data set is already there.

    `labels.csv` is written last, so an interrupted run is detected and redone.
    """
    config.check()
    out = Path(out)
    meta_path = out / "synth.json"
    meta = {"generator": "slamctl synthetic v1", **asdict(config)}
    if (out / LABELS_FILE).exists():
        if meta_path.exists() and json.loads(meta_path.read_text()) == meta:
            return False
        if not force:
            raise SlamError(f"{out}: holds another data set (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    (out / LABELS_FILE).unlink(missing_ok=True)

    plan = plan_bags(config)
    blast = abnormal_type(config)
    names = list(NORMAL_TYPES)
    cell_rows = []
    for b, (bag_id, label, n_cells, _) in enumerate(plan):
        rng = np.random.default_rng([config.seed, 2, b])
        style = draw_style(rng, config.image_size)
        n_pos = positives_in_bag(n_cells, config.witness_rate) if label else 0
        positive = np.zeros(n_cells, dtype=bool)
        positive[rng.choice(n_cells, size=n_pos, replace=False)] = True
        folder = out / bag_id
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for c in range(n_cells):
            if positive[c] and blast is not None:
                kind = blast
            else:
                kind = NORMAL_TYPES[names[rng.choice(len(names), p=style.mix)]]
            img = render_cell(rng, kind, style, config.image_size)
            name = f"cell_{c:05d}.png"
            Image.fromarray(img).save(folder / name, compress_level=1)
            cell_rows.append((bag_id, name, int(positive[c])))
        if progress:
            progress(b + 1, len(plan))

    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    write_csv(out / CELLS_FILE, ["bag_id", "file", "positive"], cell_rows)
    write_csv(out / SPLIT_FILE, ["bag_id", "split"], [(p[0], p[3]) for p in plan])
    write_csv(out / LABELS_FILE, ["bag_id", "label"], [(p[0], p[1]) for p in plan])
    return True
