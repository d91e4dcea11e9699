"""`slamctl infer`: bags of cell images -> slide decision and the most abnormal cells."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from client import metrics
from client.console import err, progress_bar
from client.options import CertificateChain, PrivateKey, RootCertificates, Ssl, Timeout, Url
from client.outputs import FORMATS, output_path, write_result
from client.pipeline import CONTROL_TIMEOUT, BagFailure, ClientSettings, TritonModels, find_bags, infer_bag
from client.report import Report, read_truth
from slamctl import contract
from slamctl.errors import SlamError
from slamctl.files import write_atomic


def infer(
    paths: Annotated[list[Path], typer.Argument(help="Bag folders, or folders of bag folders.")],
    url: Url = "localhost:8001",
    batch_size: Annotated[int, typer.Option(help="Cells per encoder request.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Encoder requests in flight.")] = 4,
    decode_threads: Annotated[int, typer.Option(help="Image-decoding threads.")] = 4,
    top_k: Annotated[int, typer.Option(help="Most abnormal cells to report per bag.")] = 400,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Decision threshold on P(abnormal) (default: the server's, chosen on validation bags)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder: one result file per bag.")] = Path(
        "slamctl-results"
    ),
    format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    report: Annotated[
        bool, typer.Option("--report", help="Also write OUT/report.html with thumbnails.")
    ] = False,
    report_cells: Annotated[int, typer.Option(help="Thumbnails per bag in the report.")] = 48,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Per-cell truth (cells.csv: bag_id,file,positive) for the report to mark the truly "
            "abnormal cells (default: cells.csv beside the bags, if there is one)."
        ),
    ] = None,  # fmt: skip
    timeout: Timeout = 60.0,
    retries: Annotated[
        int, typer.Option(help="Retries of a request when the server is unavailable or slow.")
    ] = 3,
    resume: Annotated[bool, typer.Option("--resume", help="Skip bags whose result file exists.")] = False,
    ssl: Ssl = False,
    root_certificates: RootCertificates = None,
    private_key: PrivateKey = None,
    certificate_chain: CertificateChain = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve client metrics on this port during the run.")
    ] = None,
    pushgateway: Annotated[
        str | None, typer.Option(help="Push client metrics to this Pushgateway at the end.")
    ] = None,
    encoder_model: Annotated[str, typer.Option(help="Encoder model name on the server.")] = contract.ENCODER,
    aggregator_model: Annotated[
        str, typer.Option(help="Aggregator model name on the server.")
    ] = contract.AGGREGATOR,
) -> None:
    """Send the cells of each bag in batches over gRPC; report the decision and the top-K cells.

    Cells (PNG, JPEG, TIFF) are converted to RGB, resized so the shorter side equals the
    training image size the server declares, center-cropped exactly as in training, and
    sent as uint8. Unreadable files are skipped and listed. Results are written per bag,
    atomically; a bag that fails (server gone, deadline) is retried, then marked failed
    while the other bags go on; the exit status is 1 if any bag failed.
    """
    if format not in FORMATS:
        raise typer.BadParameter(f"expected json or csv, got {format!r}", param_hint="--format")
    if threshold is not None and not 0 <= threshold <= 1:
        raise typer.BadParameter(f"expected 0 <= threshold <= 1, got {threshold}", param_hint="--threshold")
    bags = [b for p in paths for b in find_bags(p)]
    names = [b.name for b in bags]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise typer.BadParameter(
            f"two bags share the name {dup[0]!r}: results would overwrite each other", param_hint="PATHS"
        )
    settings = ClientSettings(
        url=url, batch_size=batch_size, concurrency=concurrency, decode_threads=decode_threads, timeout=timeout,
        retries=retries, ssl=ssl, root_certificates=root_certificates, private_key=private_key,
        certificate_chain=certificate_chain, encoder_model=encoder_model, aggregator_model=aggregator_model,
    )  # fmt: skip
    models = TritonModels(settings)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.REGISTRY)
    out.mkdir(parents=True, exist_ok=True)
    model_info = {
        "url": url,
        "encoder": encoder_model,
        "aggregator": aggregator_model,
        "input_size": models.size,
        "card_version": models.card["version"],
        "server_threshold": models.threshold,
        "threshold_rule": models.card["threshold_rule"],
    }
    if models.card["degenerate"]:
        err.print(
            f"[yellow]warning:[/yellow] the served model is flagged degenerate: {models.card['health']}"
        )
    err.print(
        f"threshold {threshold if threshold is not None else models.threshold:.3f} "
        + ("(--threshold)" if threshold is not None else f"(served: {models.card['threshold_rule']})")
    )

    rows, failed, reused = [], [], 0  # one summary row per bag: the run holds no bag's cells
    page = (
        Report(out / "report.html", top_k, report_cells, truth=read_truth(truth, paths)) if report else None
    )
    with ThreadPoolExecutor(decode_threads) as pool, progress_bar() as bar:
        overall = bar.add_task("bags", total=len(bags), info="")
        for bag in bags:
            if resume and output_path(out, bag.name, format).exists():
                reused += 1
                bar.update(overall, advance=1)
                continue
            task = bar.add_task(bag.name, total=None, info="")
            t0 = time.perf_counter()
            try:
                result = infer_bag(bag, models, pool, threshold=threshold,
                                   on_batch=lambda n, total, t=task: bar.update(t, completed=n, total=total))  # fmt: skip
            except BagFailure as e:
                metrics.BAGS.labels("failed").inc()
                failed.append((bag.name, f"{e.kind}: {e}"))
            else:
                write_result(result, out, format, top_k, str(bag), model_info)
                metrics.BAGS.labels("ok").inc()
                metrics.BAG_LATENCY.observe(time.perf_counter() - t0)
                rows.append((result.bag, result.label, f"{result.probability:.3f}", str(len(result.cells)),
                             str(len(result.skipped)), f"{result.timings['total_s']:.1f}"))  # fmt: skip
                if page:
                    page.add(result, bag)
                del result  # before the next bag: the run holds one bag's cells at a time
            bar.remove_task(task)  # the summary table lists every bag at the end
            bar.update(overall, advance=1, info=f"{len(failed)} failed" if failed else "")

    table = Table(title=f"slamctl infer: {len(rows)} done, {reused} already done, {len(failed)} failed")
    for col in ("bag", "decision", "P(abnormal)", "cells", "skipped", "seconds"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    for name, why in failed:
        table.add_row(name, "[red]failed[/red]", "", "", "", why)
    err.print(table)
    summary = {"done": [row[0] for row in rows], "reused": reused, "failed": dict(failed)}
    write_atomic(out / "run_summary.json", json.dumps(summary, indent=2) + "\n")
    if page:
        err.print(f"report: {page.close(failed, reused)}")
    err.print(f"results: {out}")
    from prometheus_client import write_to_textfile

    write_to_textfile(str(out / "metrics.prom"), metrics.REGISTRY)  # this run's client metrics
    err.print(f"client metrics: {out / 'metrics.prom'}")
    if pushgateway:
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(
                pushgateway, job="slamctl_infer", registry=metrics.REGISTRY, timeout=CONTROL_TIMEOUT
            )
        except OSError as e:  # URLError, HTTPError, refused connection
            raise SlamError(
                f"--pushgateway {pushgateway}: could not push the client metrics ({getattr(e, 'reason', e)}); "
                f"the results are saved in {out}"
            ) from None
        err.print(f"client metrics pushed to {pushgateway} (job slamctl_infer)")
    if failed:
        raise typer.Exit(code=1)
