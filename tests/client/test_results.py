"""Result files (client/results.py): sealed, and safe to open in a spreadsheet."""

import csv
import io

import numpy as np
import pytest

from slamctl.client.results import BagResult, read_written, render_result, spreadsheet_safe

PROVENANCE = {"model_id": "m" * 64, "run_id": "r"}


def result(bag="bag", cells=("a.png", "b.png")):
    return BagResult(bag, 0.7, 0.5, "server", list(cells), np.array([0.9, 0.1]), input_sha256="i" * 64)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_written_result_reads_back_and_any_edit_breaks_its_seal(tmp_path, fmt):
    path = tmp_path / f"bag.{fmt}"
    path.write_bytes(render_result(result(), fmt, 2, "src", PROVENANCE))
    assert read_written(path, fmt).model_id == "m" * 64 and read_written(path, fmt).input_sha256 == "i" * 64
    path.write_text(path.read_text().replace("0.7", "0.2", 1))
    assert read_written(path, fmt) is None


@pytest.mark.parametrize("name", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_names_that_a_spreadsheet_would_run_are_quoted_in_csv(tmp_path, name):
    """OWASP's CSV injection advice: a leading = + - @ tab or CR gets a quote before it."""
    data = render_result(result(bag=name, cells=(name, "b.png")), "csv", 2, "src", PROVENANCE).decode()
    rows = list(csv.DictReader(io.StringIO(data, newline="")))
    assert rows[0]["bag"] == "'" + name and rows[0]["file"] == "'" + name and rows[1]["file"] == "b.png"
    assert spreadsheet_safe("plain-name") == "plain-name"
