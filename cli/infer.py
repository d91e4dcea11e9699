"""`slamctl infer`: bags of cell images -> slide decision and the most abnormal cells."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from slamctl import contract
from slamctl.cli.choices import Format, Wire
from slamctl.cli.console import err, progress_bar, styled
from slamctl.cli.options import CertificateChain, PrivateKey, RootCertificates, Ssl, Timeout, Url
from slamctl.client.settings import MAX_RETRIES, RUN_FILES, ClientSettings, Progress, RunOptions
from slamctl.errors import SlamError

if TYPE_CHECKING:
    from slamctl.client.triton import TritonModels

_CLIENT, _RUN = ClientSettings(), RunOptions()  # the defaults, defined once


def _model_id(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{12,64}", value):
        raise typer.BadParameter(f"expected 12 to 64 hexadecimal digits of a model id, got {value!r}")
    return value


def infer(
    paths: Annotated[list[Path], typer.Argument(help="Bag folders, or folders of bag folders.")],
    url: Url = _CLIENT.url,
    batch_size: Annotated[int, typer.Option(min=1, help="Cells per encoder request.")] = _CLIENT.batch_size,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Encoder requests in flight.")
    ] = _CLIENT.concurrency,
    decode_threads: Annotated[
        int, typer.Option(min=1, help="Image-decoding threads.")
    ] = _CLIENT.decode_threads,
    top_k: Annotated[int, typer.Option(min=0, help="Most abnormal cells to report per bag.")] = _RUN.top_k,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Decision threshold on P(abnormal) (default: the server's, chosen on validation bags)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder: one result file per bag.")] = _RUN.out,
    format: Annotated[Format, typer.Option("--format", help="Result files: json or csv.")] = _RUN.format,
    report: Annotated[
        bool, typer.Option("--report", help="Also write OUT/report.html with thumbnails.")
    ] = False,
    report_cells: Annotated[
        int, typer.Option(min=0, help="Thumbnails per bag in the report.")
    ] = _RUN.report_cells,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Per-cell truth (cells.csv: bag_id,file,positive) for the report to mark the truly "
            "abnormal cells (default: cells.csv beside the bags, if there is one)."
        ),
    ] = None,
    timeout: Timeout = _CLIENT.timeout,
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_RETRIES,
            help="Retries of a request the server could not take (unavailable, model reloading), by "
            "gRPC's retry policy with exponential backoff, within --timeout.",
        ),
    ] = _CLIENT.retries,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Skip bags whose result file exists and was made by the model being served."
        ),
    ] = False,
    ssl: Ssl = False,
    root_certificates: RootCertificates = None,
    private_key: PrivateKey = None,
    certificate_chain: CertificateChain = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve client metrics on this port during the run.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of --metrics-port (0.0.0.0 to let another host scrape it).")
    ] = _RUN.metrics_host,
    pushgateway: Annotated[
        str | None,
        typer.Option(
            help="Push client metrics to this Pushgateway at the end (grouped by run: label run=RUN_ID)."
        ),
    ] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="Append one JSON line per bag (decision, result checksum, provenance) to this file; "
            "check it with `slamctl audit verify`. It holds bag names: keep it with the results."
        ),
    ] = None,
    expect_model: Annotated[
        str | None,
        typer.Option(
            help="Refuse to run unless the server serves this model id (sha256, or its first 12+ "
            "hex digits; `slamctl health` and `slamctl export` print it).",
            callback=_model_id,
        ),
    ] = None,
    model_version: Annotated[
        int | None, typer.Option(help="Refuse to run unless the server serves this model version.")
    ] = None,
    wire: Annotated[
        Wire,
        typer.Option(
            help="How cells travel: encoded (the files' own bytes, decoded by the server as here: "
            "1.4x to 22x fewer bytes than pixels in benchmarks/wire_paths.py) or pixels (decoded "
            "here, uint8 S x S x 3 each)."
        ),
    ] = _CLIENT.wire,
    shm: Annotated[
        bool,
        typer.Option(
            "--shm",
            help="Same host as a `slamctl serve` run by this user: pixels (with --wire pixels) and "
            "embeddings travel through system shared memory instead of gRPC messages.",
        ),
    ] = _CLIENT.shm,
    encoder_model: Annotated[str, typer.Option(help="Encoder model name on the server.")] = contract.ENCODER,
    aggregator_model: Annotated[
        str, typer.Option(help="Aggregator model name on the server.")
    ] = contract.AGGREGATOR,
) -> None:
    """Send the cells of each bag in batches over gRPC; report the decision and the top-K cells.

    Cells (PNG, JPEG, TIFF, BMP) are converted to RGB, resized so the shorter side equals the
    training image size the server declares, center-cropped exactly as in training, and
    sent as uint8. Unreadable files are skipped and listed. Results are written per bag,
    atomically; a bag that fails (server gone, deadline) is retried, then marked failed
    while the other bags go on; the exit status is 1 if any bag failed.
    """
    if threshold is not None and not 0 <= threshold <= 1:
        raise typer.BadParameter(f"expected 0 <= threshold <= 1, got {threshold}", param_hint="--threshold")
    settings = ClientSettings(
        url=url,
        batch_size=batch_size,
        concurrency=concurrency,
        decode_threads=decode_threads,
        timeout=timeout,
        retries=retries,
        ssl=ssl,
        root_certificates=root_certificates,
        private_key=private_key,
        certificate_chain=certificate_chain,
        encoder_model=encoder_model,
        wire=wire.value,
        shm=shm,
        aggregator_model=aggregator_model,
    )
    options = RunOptions(
        out=out,
        format=format.value,
        top_k=top_k,
        threshold=threshold,
        report=report,
        report_cells=report_cells,
        truth=truth,
        resume=resume,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        pushgateway=pushgateway,
        audit_log=audit_log,
        expect_model=expect_model,
        model_version=model_version,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    with progress_bar() as bar:
        from slamctl.client.run import run  # gRPC and Triton's client load here, not for --help

        summary = run(paths, settings, options, BarProgress(bar, threshold))

    table = Table(
        title=f"slamctl infer: {len(summary.rows)} done, {len(summary.reused)} already done, "
        f"{len(summary.failed)} failed"
    )
    for col in ("bag", "decision", "P(abnormal)", "cells", "skipped", "seconds"):
        table.add_column(col)
    for row in summary.rows:
        table.add_row(*row)
    for name, why in summary.failed:
        table.add_row(name, Text("failed", "red"), "", "", "", why)
    err.print(table)
    if summary.redone:
        err.print(
            f"--resume: {len(summary.redone)} results were inferred again (made by another model, of cells changed since, or failing their seal)"
        )
    if summary.report:
        err.print(f"report: {summary.report}")
    err.print(f"results: {out}")
    err.print(f"client metrics: {summary.metrics_file}")
    if summary.push_error:
        raise SlamError(summary.push_error)
    if pushgateway:
        err.print(f"client metrics pushed to {pushgateway} (job slamctl_infer, run {summary.run_id})")
    if summary.interrupted:
        err.print(
            f"interrupted: {len(summary.interrupted)} bags not done (listed in {out / RUN_FILES[0]}); "
            "rerun with --resume to finish"
        )
        raise typer.Exit(code=130)
    if summary.failed:
        raise typer.Exit(code=1)


class BarProgress(Progress):
    """The run's progress as rich bars: one for the bags, one for the bag in flight."""

    def __init__(self, bar, threshold: float | None) -> None:
        self.bar, self.threshold, self.overall, self.task = bar, threshold, None, None

    def start(self, models: TritonModels, bags: int) -> None:
        if models.card.degenerate:
            err.print(
                styled(
                    "warning:",
                    "yellow",
                    " the served model is flagged degenerate: "
                    + "; ".join(models.card.health.get("reasons", [])),
                )
            )
        chosen, source = models.decision_threshold(self.threshold)
        rule = f"served: {models.card.threshold_rule}" if source == "server" else source
        err.print(f"threshold {chosen:.3f} ({rule})")
        self.overall = self.bar.add_task("bags", total=bags, info="")

    def bag(self, name: str):
        self.task = self.bar.add_task(name, total=None, info="")
        return lambda n, total, t=self.task: self.bar.update(t, completed=n, total=total)

    def bag_done(self, name: str, failed: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)  # the summary table lists every bag at the end
            self.task = None
        self.bar.update(self.overall, advance=1, info=f"{failed} failed" if failed else "")
