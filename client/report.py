"""The HTML report of an inference run: one self-contained file (thumbnails embedded as data
URIs, the histogram as inline SVG) that opens from disk with no server, so a cytologist
sees per bag the decision, how attention spreads over the cells, and the cells that drove
the decision."""

from __future__ import annotations

import base64
import html
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from slamctl.client.results import BagResult
from slamctl.files import atomic_path
from slamctl.images import load_rgb
from slamctl.tables import read_truth_file

TRUTH_FILE = "cells.csv"


def read_truth(path: Path | None, inputs: list[Path]) -> dict[str, set[str]] | None:
    """Truly abnormal cells per bag, {bag: {file, ...}}, from `path` or else from a cells.csv
    beside the bags (in a folder of bags, or beside a single bag); None if there is none."""
    if path is None:
        found = [p / TRUTH_FILE for p in inputs if (p / TRUTH_FILE).is_file()]
        found += [p.parent / TRUTH_FILE for p in inputs if (p.parent / TRUTH_FILE).is_file()]
        if not found:
            return None
        path = found[0]
    truth: dict[str, set[str]] = {}
    for (bag, file), positive in read_truth_file(Path(path)).items():
        cells = truth.setdefault(bag, set())
        if positive:
            cells.add(file)
    return truth


def _thumbnail(path: Path, size: int = 96) -> str:
    try:
        img = Image.fromarray(load_rgb(path))
    except Exception:  # a file that vanished since inference: leave the tile empty
        return ""
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _histogram_svg(attention: np.ndarray, bins: int = 30, width: int = 360, height: int = 110) -> str:
    """Histogram of the attention on a log scale: a model that decides gives a few cells most
    of the attention and the rest orders of magnitude less, which a linear scale shows as
    one bar."""
    logs = np.log10(np.clip(np.asarray(attention, dtype=np.float64), 1e-30, None))
    counts, edges = np.histogram(logs, bins=bins)
    peak = max(int(counts.max()), 1)
    bar = width / bins
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - (c / peak) * (height - 30):.1f}" width="{bar - 1:.1f}" '
        f'height="{(c / peak) * (height - 30):.1f}" fill="#6a51a3"><title>{c} cells in '
        f"[{10 ** edges[i]:.2e}, {10 ** edges[i + 1]:.2e})</title></rect>"
        for i, c in enumerate(counts)
    )
    return (
        f'<svg class="hist" width="{width}" height="{height}" role="img" aria-label="attention histogram, log scale">'
        f'{rects}<text x="0" y="{height - 4}" font-size="10">{10 ** edges[0]:.1e}</text>'
        f'<text x="{width / 2}" y="{height - 4}" font-size="10" text-anchor="middle">attention (log scale)</text>'
        f'<text x="{width}" y="{height - 4}" font-size="10" text-anchor="end">{10 ** edges[-1]:.1e}</text></svg>'
    )


def _tile(folder: Path, rank: int, name: str, attention: float, abnormal: bool) -> str:
    """One gallery thumbnail; a truly abnormal cell (cells.csv) is framed and captioned."""
    css, note = (' class="truth"', "<br>abnormal (truth)") if abnormal else ("", "")
    return (
        f'<figure{css}><img src="{_thumbnail(folder / name)}" alt="{html.escape(name)}">'
        f"<figcaption>#{rank} {html.escape(name)}<br>{attention:.3e}{note}</figcaption></figure>"
    )


SECTIONS = "<!-- sections -->"  # where close() puts the spooled sections
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slamctl inference report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.abnormal {{ color: #b30000; }} .normal {{ color: #1a7f37; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; width: 110px; font-size: 11px; text-align: center; }}
figure img {{ width: 96px; height: 96px; object-fit: contain; border: 1px solid #ccc; }}
figure.truth img {{ border: 3px solid #b30000; }} figure.truth figcaption {{ color: #b30000; font-weight: bold; }}
section {{ border-top: 1px solid #ddd; padding-top: 1em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 12px; text-align: left; }}
#thumbs-warning {{ display: none; color: #b30000; }}
</style>
<script>
// After loading, count the thumbnails that rendered; warn if any did not.
window.addEventListener("load", () => {{
  const imgs = [...document.querySelectorAll(".gallery img")];
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.thumbnails = imgs.length;
  document.body.dataset.thumbnailsLoaded = ok;
  if (ok < imgs.length) document.getElementById("thumbs-warning").style.display = "block";
}});
</script></head><body>
<p id="thumbs-warning">Some cell thumbnails could not be shown (files moved or unreadable).</p>
<h1>slamctl inference report</h1>
<p>{reported} bags reported{failed}{reused}.
Attention is the MIL aggregator's attention (higher = more abnormal): the cells shown first drove the decision.</p>
{truth}
<table><tr><th>bag</th><th>decision</th><th>P(abnormal)</th><th>cells</th><th>skipped</th></tr>{rows}</table>
{failures}
{sections}
</body></html>
"""


class Report:
    """The report of one run, written as bags finish: each bag's section (its thumbnails are
    most of the page) is rendered at once and spooled to a temporary file, so the run holds
    one summary row per bag, not every bag's cells; `close` writes the page atomically."""

    def __init__(
        self, path: Path, top_k: int, gallery: int, truth: dict[str, set[str]] | None = None
    ) -> None:
        self.path, self.top_k, self.gallery = Path(path), top_k, gallery  # gallery: thumbnails shown per bag
        self.truth = truth  # truly abnormal cells per bag (cells.csv), marked in the gallery
        self.found = [0, 0]  # over bags with truth: abnormal cells among the top-K, abnormal cells
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)
        self.rows: list[str] = []

    def _truth_line(self, r: BagResult, positives: set[str]) -> str:
        k = min(self.top_k, len(r.cells))
        found = sum(name in positives for _, name, _ in r.top_k(k))
        total = sum(name in positives for name in r.cells)
        self.found[0] += found
        self.found[1] += total
        chance = f"; a random ranking finds {total * k / len(r.cells):.1f} on average" if total else ""
        return f'<p class="truth-line">Truth (cells.csv): {found} of {total} abnormal cells among the top {k}{chance}.</p>'

    def add(self, r: BagResult, folder: Path) -> None:
        shown = min(self.top_k, self.gallery)
        positives = self.truth.get(r.bag) if self.truth is not None else None
        mark = positives or set()
        tiles = "".join(_tile(folder, rank, name, att, name in mark) for rank, name, att in r.top_k(shown))
        skipped = "".join(f"<li>{html.escape(f)}: {html.escape(why)}</li>" for f, why in r.skipped)
        bag = html.escape(r.bag)
        self.spool.write(
            f'<section id="{bag}"><h2>{bag} <span class="{r.label}">{r.label}</span></h2>'
            f"<p>P(abnormal) = {r.probability:.3f} (threshold {r.threshold:.3f}, {r.threshold_source}); {len(r.cells)} cells"
            f"{f', {len(r.skipped)} skipped' if r.skipped else ''}; {r.timings.get('total_s', 0):.1f} s</p>"
            + (self._truth_line(r, positives) if positives is not None else "")
            + f"<h3>Attention over the cells (log scale)</h3>{_histogram_svg(r.attention)}"
            f'<h3>Top {min(shown, len(r.cells))} cells by attention</h3><div class="gallery">{tiles}</div>'
            + (f"<h3>Skipped files</h3><ul>{skipped}</ul>" if skipped else "")
            + "</section>\n"
        )
        self.rows.append(
            f'<tr><td><a href="#{bag}">{bag}</a></td><td class="{r.label}">{r.label}</td>'
            f"<td>{r.probability:.3f}</td><td>{len(r.cells)}</td><td>{len(r.skipped)}</td></tr>"
        )

    def close(self, failed: list[tuple[str, str]], reused: int = 0) -> Path:
        """Write the page (summary table, failures, then the spooled sections) and return its path."""
        failures = "".join(f"<li>{html.escape(b)}: {html.escape(why)}</li>" for b, why in failed)
        rows = "".join(self.rows)
        head, tail = PAGE.format(
            reported=len(self.rows),
            failed=f", {len(failed)} failed" if failed else "",
            reused=f"; {reused} bags done by an earlier run (--resume) are not shown" if reused else "",
            rows=rows,
            failures=f"<h2>Failed bags</h2><ul>{failures}</ul>" if failed else "",
            truth=(
                f'<p id="truth-summary">Truth (cells.csv): {self.found[0]} of {self.found[1]} abnormal cells '
                f"found among the top {self.top_k} of their bags; truly abnormal cells have a red frame.</p>"
                if self.truth is not None
                else ""
            ),
            sections=SECTIONS,
        ).split(SECTIONS)
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(head)
            self.spool.seek(0)
            shutil.copyfileobj(self.spool, f)
            f.write(tail)
        self.spool.close()
        return self.path
