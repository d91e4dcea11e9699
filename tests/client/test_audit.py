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


def _append_many(log_path, prefix, results, n, start):
    start.wait()
    log = AuditLog(log_path)
    for i in range(n):
        log.append(decision(f"{prefix}{i}", results / f"{prefix}{i}.json", results))
    log.close()


def test_two_processes_appending_at_once_keep_the_chain_whole(tmp_path):
    """Two writers opened on one log at the same time (as two `slamctl infer --audit-log`
    runs are): every line chains to the line before it in the file, none is torn."""
    import multiprocessing

    results = tmp_path / "out"
    results.mkdir()
    for prefix in ("x", "y"):
        for i in range(150):
            (results / f"{prefix}{i}.json").write_text(json.dumps({"bag": f"{prefix}{i}"}))
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    log_path = tmp_path / "audit.jsonl"
    writers = [ctx.Process(target=_append_many, args=(log_path, p, results, 150, start)) for p in ("x", "y")]
    for w in writers:
        w.start()
    start.set()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    report = verify(log_path, results, files(results))
    assert report.problems == [] and report.lines == 300 and report.results == 300
    bags = [json.loads(line)["bag"][0] for line in log_path.read_text().splitlines()]
    assert bags.count("x") == bags.count("y") == 150
