"""What one bag yields: a result (decision, attention over its cells, files skipped) or a
failure of a named kind; and the per-bag result files, `DIR/<bag>.json` or `DIR/<bag>.csv`,
written atomically so a crash never leaves half a file and `--resume` knows a finished bag."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class BagFailure(Exception):
    # unreadable_image, unreadable_bag, too_large, timeout, unavailable, server_error, invalid_output
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class BagResult:
    bag: str
    probability: float  # P(abnormal)
    threshold: float
    threshold_source: str  # "server" (the model card's) or "--threshold"
    cells: list[str]  # file names of the embedded cells, in order
    attention: np.ndarray  # (N,) the aggregator's attention, higher = more abnormal
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    timings: dict[str, float] = field(default_factory=dict)
    input_sha256: str = ""  # slamctl.client.bags.input_digest of every cell file, in order
    decided_at: str = ""  # UTC, ISO 8601

    @property
    def label(self) -> str:
        return "abnormal" if self.probability >= self.threshold else "normal"

    def top_k(self, k: int) -> list[tuple[int, str, float]]:
        """(rank, file, attention) of the k cells of highest attention."""
        order = np.argsort(-self.attention, kind="stable")[:k]
        return [(r + 1, self.cells[i], float(self.attention[i])) for r, i in enumerate(order)]


FORMATS = ("json", "csv")


def output_path(out: Path, bag: str, fmt: str) -> Path:
    return Path(out) / f"{bag}.{fmt}"


def made_by(path: Path, fmt: str) -> str | None:
    """The model id a result file records (None: unreadable, or written before provenance):
    `--resume` reuses only the results of the model being served."""
    try:
        if fmt == "json":
            return json.loads(path.read_text()).get("provenance", {}).get("model_id")
        with open(path, newline="") as f:
            row = next(csv.DictReader(f), None)
        return row.get("model_id") if row else None
    except (OSError, ValueError, AttributeError):
        return None


def as_dict(result: BagResult, top_k: int, source: str, provenance: dict) -> dict:
    """A result file's content; `provenance` is the run's (TritonModels.provenance + run id)."""
    return {
        "bag": result.bag,
        "source": source,
        "decision": {
            "label": result.label,
            "probability_abnormal": result.probability,
            "threshold": result.threshold,
            "threshold_source": result.threshold_source,
        },
        "cells": len(result.cells),
        "top_k": [{"rank": r, "file": f, "attention": a} for r, f, a in result.top_k(top_k)],
        "skipped": [{"file": f, "reason": why} for f, why in result.skipped],
        "timings": result.timings,
        "provenance": bag_provenance(result, provenance),
    }


def bag_provenance(result: BagResult, provenance: dict) -> dict:
    """The run's provenance with what is the bag's own: its input digest and decision time."""
    return {**provenance, "input_sha256": result.input_sha256, "decided_at": result.decided_at}


def render_result(result: BagResult, fmt: str, top_k: int, source: str, provenance: dict) -> bytes:
    """A result file's bytes (json or csv)."""
    data = as_dict(result, top_k, source, provenance)
    if fmt == "json":
        return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode()  # valid JSON or an error
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "bag",
            "label",
            "probability_abnormal",
            "threshold",
            "threshold_source",
            "cells",
            "skipped",
            "rank",
            "file",
            "attention",
            "model_id",
            "input_sha256",
        ]
    )
    d = data["decision"]
    for cell in data["top_k"]:
        writer.writerow(
            [
                result.bag,
                d["label"],
                f"{d['probability_abnormal']:.6f}",
                d["threshold"],
                d["threshold_source"],
                data["cells"],
                len(data["skipped"]),
                cell["rank"],
                cell["file"],
                f"{cell['attention']:.6g}",
                provenance["model_id"],
                result.input_sha256,
            ]
        )
    return buf.getvalue().encode()
