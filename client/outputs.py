"""Per-bag results on disk: `DIR/<bag>.json` or `DIR/<bag>.csv`, written atomically so a
crash never leaves half a file, and a finished bag is recognised by `--resume`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from client.pipeline import BagResult
from slamctl.files import write_atomic

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
        write_atomic(path, json.dumps(data, indent=2) + "\n")
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
        writer.writerow([result.bag, d["label"], f"{d['probability_abnormal']:.6f}", d["threshold"],
                         d["threshold_source"], data["cells"],
                         len(data["skipped"]), cell["rank"], cell["file"], f"{cell['attention']:.6g}"])  # fmt: skip
    write_atomic(path, buf.getvalue())
    return path
