"""What one bag yields: a result (decision, attention over its cells, files skipped) or a
failure of a named kind; and the per-bag result files, `DIR/<bag>.json` or `DIR/<bag>.csv`,
written atomically so a crash never leaves half a file and `--resume` knows a finished bag."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
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


MAX_RESULT_BYTES = 16 * 1024 * 1024  # a result file larger than this was not written by slamctl


def seal(content: object) -> str:
    """The sha256 of a result's content in canonical JSON: a result file carries it, so that
    `--resume` can tell a file as written from one edited by hand or damaged since."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Written:
    """What `--resume` needs of an earlier result file: the model and the input it decided on."""

    model_id: str
    input_sha256: str


def read_written(path: Path, fmt: str) -> Written | None:
    """The model id and input digest an earlier result file records, or None when it cannot be
    trusted: not a regular file (a FIFO would block), too large, unparsable, nested too deep,
    without provenance, or whose seal does not match its content."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) or os.stat(path).st_size > MAX_RESULT_BYTES:
            return None
        text = Path(path).read_text(encoding="utf-8")
        if fmt == "json":
            data = json.loads(text)
            content = {k: v for k, v in data.items() if k != "seal"}
            if data.get("seal") != seal(content):
                return None
            return Written(data["provenance"]["model_id"], data["provenance"]["input_sha256"])
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header, body = rows[0], rows[1:]
        if not body or header[-1] != "seal" or any(r[-1] != seal([header[:-1], r[:-1]]) for r in body):
            return None
        first = dict(zip(header, body[0]))
        return Written(first["model_id"], first["input_sha256"])
    except (OSError, ValueError, RecursionError, AttributeError, KeyError, IndexError, TypeError, csv.Error):
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


def spreadsheet_safe(text: str) -> str:
    """A name as a CSV field that a spreadsheet shows as text, never runs as a formula: a
    leading = + - @ tab or carriage return gets a quote before it (OWASP's CSV injection advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_result(result: BagResult, fmt: str, top_k: int, source: str, provenance: dict) -> bytes:
    """A result file's bytes (json or csv)."""
    data = as_dict(result, top_k, source, provenance)
    if fmt == "json":
        data["seal"] = seal(data)
        return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode()  # valid JSON or an error
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = [
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
    writer.writerow([*header, "seal"])
    d = data["decision"]
    for cell in data["top_k"]:
        row = [
            str(v)
            for v in (
                spreadsheet_safe(result.bag),
                d["label"],
                f"{d['probability_abnormal']:.6f}",
                d["threshold"],
                d["threshold_source"],
                data["cells"],
                len(data["skipped"]),
                cell["rank"],
                spreadsheet_safe(cell["file"]),
                f"{cell['attention']:.6g}",
                provenance["model_id"],
                result.input_sha256,
            )
        ]
        writer.writerow([*row, seal([header, row])])
    return buf.getvalue().encode()
