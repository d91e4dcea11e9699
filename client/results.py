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

from slamctl.files import write_atomic


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


def as_dict(result: BagResult, top_k: int, source: str, models: dict) -> dict:
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
        "models": models,
    }


def write_result(result: BagResult, out: Path, fmt: str, top_k: int, source: str, models: dict) -> Path:
    path = output_path(out, result.bag, fmt)
    data = as_dict(result, top_k, source, models)
    if fmt == "json":
        write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")  # valid JSON or an error
        return path
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
            ]
        )
    write_atomic(path, buf.getvalue())
    return path
