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

from client.pipeline import BagResult
from slamctl.files import atomic_path
from slamctl.images import load_rgb


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
    counts, edges = np.histogram(attention, bins=bins)
    peak = max(int(counts.max()), 1)
    bar = width / bins
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - (c / peak) * (height - 30):.1f}" width="{bar - 1:.1f}" '
        f'height="{(c / peak) * (height - 30):.1f}" fill="#6a51a3"><title>{c} cells in [{edges[i]:.2e}, {edges[i + 1]:.2e})</title></rect>'
        for i, c in enumerate(counts)
    )
    return (
        f'<svg class="hist" width="{width}" height="{height}" role="img" aria-label="attention histogram">{rects}'
        f'<text x="0" y="{height - 4}" font-size="10">{edges[0]:.1e}</text>'
        f'<text x="{width}" y="{height - 4}" font-size="10" text-anchor="end">{edges[-1]:.1e}</text></svg>'
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
Attention is the abnormal class's attention of the MIL aggregator: the cells shown first drove the decision.</p>
<table><tr><th>bag</th><th>decision</th><th>P(abnormal)</th><th>cells</th><th>skipped</th></tr>{rows}</table>
{failures}
{sections}
</body></html>
"""


class Report:
    """The report of one run, written as bags finish: each bag's section (its thumbnails are
    most of the page) is rendered at once and spooled to a temporary file, so the run holds
    one summary row per bag, not every bag's cells; `close` writes the page atomically."""

    def __init__(self, path: Path, top_k: int, gallery: int) -> None:
        self.path, self.top_k, self.gallery = Path(path), top_k, gallery  # gallery: thumbnails shown per bag
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)
        self.rows: list[str] = []

    def add(self, r: BagResult, folder: Path) -> None:
        shown = min(self.top_k, self.gallery)
        tiles = "".join(
            f'<figure><img src="{_thumbnail(folder / name)}" alt="{html.escape(name)}">'
            f"<figcaption>#{rank} {html.escape(name)}<br>{att:.3e}</figcaption></figure>"
            for rank, name, att in r.top_k(shown)
        )
        skipped = "".join(f"<li>{html.escape(f)}: {html.escape(why)}</li>" for f, why in r.skipped)
        bag = html.escape(r.bag)
        self.spool.write(
            f'<section id="{bag}"><h2>{bag} <span class="{r.label}">{r.label}</span></h2>'
            f"<p>P(abnormal) = {r.probability:.3f} (threshold {r.threshold}); {len(r.cells)} cells"
            f"{f', {len(r.skipped)} skipped' if r.skipped else ''}; {r.timings.get('total_s', 0):.1f} s</p>"
            f"<h3>Abnormal-class attention over the cells</h3>{_histogram_svg(r.attention)}"
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
            sections=SECTIONS,
        ).split(SECTIONS)
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(head)
            self.spool.seek(0)
            shutil.copyfileobj(self.spool, f)
            f.write(tail)
        self.spool.close()
        return self.path
