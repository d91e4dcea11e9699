"""One `slamctl infer` run: bags in, one result file per bag, a summary, the report and the
client metrics out. The command line only parses options and renders what this returns.

The run holds one bag's cells at a time (a summary row per finished bag); results are
written per bag, atomically, so an interrupted run resumes with `resume=True`; a bag that
fails is recorded and the run goes on with the next.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from slamctl.client import metrics
from slamctl.client.audit import AuditLog
from slamctl.client.bag_inference import infer_bag, utc_now
from slamctl.client.bags import bag_digest, find_bags
from slamctl.client.report import Report, read_truth
from slamctl.client.results import (
    BagFailure,
    BagResult,
    bag_provenance,
    output_path,
    read_written,
    render_result,
)
from slamctl.client.settings import (
    CONTROL_TIMEOUT,
    LOCK_FILE,
    RUN_FILES,
    ClientSettings,
    Progress,
    RunOptions,
)
from slamctl.client.triton import TritonModels
from slamctl.errors import SlamError
from slamctl.files import write_atomic


def new_run_id() -> str:
    """A run's identifier: UTC start time and a random suffix (no host, user or bag name)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class RunSummary:
    run_id: str = field(default_factory=new_run_id)  # in run_summary.json and the Pushgateway's group
    rows: list[tuple[str, ...]] = field(default_factory=list)  # bag, decision, P, cells, skipped, seconds
    failed: list[tuple[str, str]] = field(default_factory=list)  # (bag, "kind: message")
    reused: list[str] = field(default_factory=list)  # bags done by an earlier run (resume)
    report: Path | None = None
    metrics_file: Path | None = None
    push_error: str | None = None  # the results are saved even when the push failed
    interrupted: list[str] = field(default_factory=list)  # bags not done because of Ctrl-C/SIGTERM
    written_late: list[str] = field(default_factory=list)  # a bag whose file was written as Ctrl-C came
    redone: list[str] = field(default_factory=list)  # --resume: results of another model, inferred again


def find_all_bags(paths: list[Path]) -> list[Path]:
    """Every bag under PATHS; two bags of one name are refused (their results would collide)."""
    bags = [b.resolve() if b.name in ("", ".", "..") else b for p in paths for b in find_bags(p)]
    names = [b.name for b in bags]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SlamError(f"PATHS: two bags share the name {dup[0]!r}: results would overwrite each other")
    return bags


def run(
    paths: list[Path], settings: ClientSettings, options: RunOptions, progress: Progress | None = None
) -> RunSummary:
    """Infer every bag under `paths`; returns the summary (failed bags included, never raised)."""
    progress = progress or Progress()
    bags = find_all_bags(paths)
    out = Path(options.out).resolve()
    for place in [*paths, *bags]:  # results written there would be read as a bag by the next run
        if out == Path(place).resolve() or Path(place).resolve() in out.parents:
            raise SlamError(
                f"--out {options.out}: lies inside {place}, which holds the bags: choose a folder outside them"
            )
    for bag in bags:  # a bag's result must never overwrite (or be taken for) the run's own files
        result = output_path(options.out, bag.name, options.format)
        if result.name in RUN_FILES:
            raise SlamError(
                f"{bag}: its result would be {result}, a file of the run itself: rename the bag folder"
            )
    models = TritonModels(settings)
    try:  # from here every way out closes the connection (and unlinks its shared memory)
        models.check_pins(options.expect_model, options.model_version)
        if options.metrics_port is not None:
            start_metrics_server(options)
        return _run_bags(bags, paths, models, options, progress)
    except OSError as e:  # --out read-only, full, or a result path taken by a folder
        raise SlamError(
            f"{e.filename or options.out}: cannot write the results ({e.strerror}); the bags written so far "
            "are kept: free the space or choose --out, then rerun with --resume"
        ) from None
    finally:
        models.close()


def start_metrics_server(options: RunOptions) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(options.metrics_port, addr=options.metrics_host, registry=metrics.REGISTRY)
    except OSError as e:
        raise SlamError(
            f"--metrics-port {options.metrics_port}: cannot listen on {options.metrics_host} ({e.strerror})"
        ) from None


def lock_out(out: Path):
    """Hold OUT's lock file for this run; SlamError if another run holds it (two runs on one
    --out would overwrite each other's run_summary.json, report and metrics)."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SlamError(
            f"--out {out}: another slamctl infer is writing there; wait for it or choose another --out"
        ) from None
    return fd


def _run_bags(
    bags: list[Path], paths: list[Path], models: TritonModels, options: RunOptions, progress: Progress
) -> RunSummary:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_out(out)
    try:
        return _run_locked(bags, paths, models, options, progress)
    finally:
        os.close(lock)  # the lock goes with the descriptor


def _run_locked(
    bags: list[Path], paths: list[Path], models: TritonModels, options: RunOptions, progress: Progress
) -> RunSummary:
    out = options.out
    summary = RunSummary()
    provenance = {**models.provenance(), "run_id": summary.run_id}
    started = utc_now()
    page = None
    if options.report:
        page = Report(
            out / RUN_FILES[1], options.top_k, options.report_cells, truth=read_truth(options.truth, paths)
        )
    audit = AuditLog(options.audit_log) if options.audit_log else None
    progress.start(models, len(bags))
    try:
        _infer_bags(bags, _Run(models, options, progress, summary, provenance, page, audit))
    finally:
        if audit:
            audit.close()
    record = {
        "run_id": summary.run_id,
        "started_at": started,
        "finished_at": utc_now(),
        "provenance": provenance,
        "done": [row[0] for row in summary.rows] + summary.written_late,
        "reused": summary.reused,
        "redone": summary.redone,
        "failed": dict(summary.failed),
        "interrupted": summary.interrupted,
    }
    write_atomic(out / RUN_FILES[0], json.dumps(record, indent=2) + "\n")
    if page:
        summary.report = page.close(summary.failed, len(summary.reused))
    from prometheus_client import push_to_gateway, write_to_textfile

    summary.metrics_file = out / RUN_FILES[2]
    write_to_textfile(str(summary.metrics_file), metrics.REGISTRY)  # this run's client metrics
    if options.pushgateway:
        try:
            push_to_gateway(  # one group per run: a push never replaces another run's metrics
                options.pushgateway,
                job="slamctl_infer",
                grouping_key={"run": summary.run_id},
                registry=metrics.REGISTRY,
                timeout=CONTROL_TIMEOUT,
            )
        except OSError as e:  # URLError, HTTPError, refused connection
            summary.push_error = (
                f"--pushgateway {options.pushgateway}: could not push the client metrics "
                f"({getattr(e, 'reason', e)}); the results are saved in {out}"
            )
    return summary


@dataclass
class _Run:
    """What every bag of one run shares."""

    models: TritonModels
    options: RunOptions
    progress: Progress
    summary: RunSummary
    provenance: dict
    page: Report | None
    audit: AuditLog | None


def _infer_bags(bags: list[Path], run: _Run) -> None:
    """The per-bag loop. Ctrl-C or SIGTERM, wherever it lands, ends the loop: what is done
    is kept, the bags not done are listed in `summary.interrupted`."""
    summary, options = run.summary, run.options
    current = bags[0] if bags else None
    with ThreadPoolExecutor(run.models.settings.decode_threads) as pool:
        try:
            for current in bags:
                _infer_one(current, pool, run)
        except KeyboardInterrupt:
            done = (
                {row[0] for row in summary.rows} | {name for name, _ in summary.failed} | set(summary.reused)
            )
            if current.name not in done and output_path(options.out, current.name, options.format).exists():
                summary.written_late.append(current.name)  # interrupted between its file and its row
                done.add(current.name)
            summary.interrupted = [b.name for b in bags if b.name not in done]


def _infer_one(bag: Path, pool: ThreadPoolExecutor, run: _Run) -> None:
    """One bag: its result is logged (audit), then written, then added to the report."""
    models, options, progress, summary = run.models, run.options, run.progress, run.summary
    provenance, page, audit = run.provenance, run.page, run.audit
    result_path = output_path(options.out, bag.name, options.format)
    if options.resume and os.path.lexists(result_path):
        written = read_written(result_path, options.format)
        if written and written.model_id == models.model_id and written.input_sha256 == bag_digest(bag):
            summary.reused.append(bag.name)
            progress.bag_done(bag.name, len(summary.failed))
            return
        # another model's, of cells changed since, edited or damaged: inferred again
        summary.redone.append(bag.name)
    on_batch = progress.bag(bag.name)
    t0 = time.perf_counter()
    try:
        result = infer_bag(bag, models, pool, threshold=options.threshold, on_batch=on_batch)
    except BagFailure as e:
        metrics.BAGS.labels("failed").inc()
        summary.failed.append((bag.name, f"{e.kind}: {e}"))
        if audit:
            audit.append(
                {
                    "event": "failure",
                    "bag": bag.name,
                    "source": str(bag),
                    "kind": e.kind,
                    "message": str(e),
                    "run_id": summary.run_id,
                    "at": utc_now(),
                }
            )
    else:
        data = render_result(result, options.format, options.top_k, str(bag), provenance)
        if audit:  # logged first: a crash in between leaves a line whose result --resume redoes
            audit.append(audit_record(result, bag, result_path, data, provenance, options.out))
        write_atomic(result_path, data)
        metrics.BAGS.labels("ok").inc()
        metrics.BAG_LATENCY.observe(time.perf_counter() - t0)
        summary.rows.append(
            (
                result.bag,
                result.label,
                f"{result.probability:.3f}",
                str(len(result.cells)),
                str(len(result.skipped)),
                f"{result.timings['total_s']:.1f}",
            )
        )
        if page:
            page.add(result, bag)
    progress.bag_done(bag.name, len(summary.failed))


def audit_record(result: BagResult, bag: Path, path: Path, data: bytes, provenance: dict, out: Path) -> dict:
    """A decision's audit line (client/audit.py): what the result file records, and its sha256."""
    return {
        "event": "decision",
        "bag": result.bag,
        "source": str(bag),
        "label": result.label,
        "probability_abnormal": result.probability,
        "threshold": result.threshold,
        "threshold_source": result.threshold_source,
        "result_file": path.name,
        "results_dir": str(Path(out).resolve()),
        "result_sha256": hashlib.sha256(data).hexdigest(),
        "provenance": bag_provenance(result, provenance),
    }
