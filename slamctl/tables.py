"""The project's CSV files: read with one-line errors, written atomically; labels and the
per-cell truth (cells.csv: bag_id,file,positive), which evaluation and the inference
report read and training never does."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from slamctl.errors import SlamError
from slamctl.files import atomic_path


def read_csv(path: Path, columns: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV whose header holds at least `columns`; one-line error otherwise."""
    columns = tuple(columns)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM is no header
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise SlamError(
                    f"{path}: expected columns {','.join(columns)}, found "
                    f"{','.join(reader.fieldnames or []) or 'no header'}"
                )
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SlamError(f"{path}: cannot read CSV ({e})") from None


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> None:
    """Write a CSV atomically (a crash leaves the old file or the new one, never half)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def parse_label(value: str, path: Path, line: int) -> int:
    if value.strip() not in ("0", "1"):
        raise SlamError(f"{path}:{line}: label must be 0 or 1, got {value!r}")
    return int(value)


def read_truth_file(path: Path) -> dict[tuple[str, str], int]:
    """Per-cell truth {(bag_id, file name): 0/1} from a cells.csv file."""
    rows = read_csv(path, ["bag_id", "file", "positive"])
    return {(r["bag_id"], r["file"]): parse_label(r["positive"], path, i + 2) for i, r in enumerate(rows)}
