"""The audit log (client/audit.py) on real files: append-only, chained, verified."""

import json

import pytest

from slamctl.client.audit import AuditLog, verify
from slamctl.errors import SlamError


def decision(bag, result, results):
    import hashlib

    return {
        "event": "decision",
        "bag": bag,
        "result_file": result.name,
        "results_dir": str(results.resolve()),
        "result_sha256": hashlib.sha256(result.read_bytes()).hexdigest(),
        "provenance": {"decided_at": "2026-11-30T00:00:00+00:00"},
    }


@pytest.fixture
def logged(tmp_path):
    results = tmp_path / "out"
    results.mkdir()
    log_path = tmp_path / "audit.jsonl"
    for run in range(2):  # two runs append to one log
        log = AuditLog(log_path)
        for bag in (f"a{run}", f"b{run}"):
            (results / f"{bag}.json").write_text(json.dumps({"bag": bag}))
            log.append(decision(bag, results / f"{bag}.json", results))
        log.close()
    return log_path, results


def files(results):
    return sorted(results.glob("*.json"))


def test_a_clean_log_verifies(logged):
    log, results = logged
    report = verify(log, results, files(results))
    assert report.problems == [] and report.lines == 4 and report.results == 4


def test_a_changed_result_is_reported(logged):
    log, results = logged
    (results / "b1.json").write_text('{"bag": "b1", "label": "normal"}')
    assert verify(log, results, files(results)).problems == [
        f"{results / 'b1.json'}: changed since it was logged (bag b1, decided 2026-11-30T00:00:00+00:00)"
    ]


def test_unlogged_and_missing_results_are_reported(logged):
    log, results = logged
    (results / "a0.json").unlink()
    (results / "new.json").write_text("{}")
    problems = verify(log, results, files(results)).problems
    assert f"{results / 'new.json'}: not in the audit log" in problems
    assert f"{results / 'a0.json'}: logged for bag a0 but missing" in problems


def test_an_edited_or_removed_line_breaks_the_chain(logged):
    log, results = logged
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[2] + lines[3])  # line 2 removed
    problems = verify(log, results, files(results)).problems
    assert any("line 2: the chain is broken" in p for p in problems)


def test_a_torn_last_line_is_refused_for_appending_and_reported(logged):
    log, results = logged
    with open(log, "ab") as f:
        f.write(b'{"event": "deci')
    with pytest.raises(SlamError, match="its last line is not whole"):
        AuditLog(log)
    assert "line 5: not a whole JSON line" in verify(log, results, files(results)).problems
