"""What a run of `slamctl infer` is told: the client's settings, the run's options, the run's
own file names, and the progress interface; grpc-free, so the command line reads its defaults
(and `slamctl --help` starts) without loading gRPC or Triton's client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slamctl import contract

if TYPE_CHECKING:
    from slamctl.client.triton import TritonModels

CONTROL_TIMEOUT = 10.0  # seconds for health and model-configuration calls
WIRES = ("pixels", "encoded")  # how cells travel: decoded uint8 pixels, or the files' own bytes
MAX_RETRIES = 4  # gRPC caps a retry policy at 5 attempts (client/channel.py)


@dataclass(frozen=True)
class ClientSettings:
    url: str = "localhost:8001"
    batch_size: int = 64
    concurrency: int = 4  # encoder requests in flight
    decode_threads: int = 4
    timeout: float = 60.0  # seconds per request, its retries included
    retries: int = 3  # of a request the server could not take (unavailable, model reloading)
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    encoder_model: str = contract.ENCODER
    aggregator_model: str = contract.AGGREGATOR
    # encoded: the files' own bytes, decoded by the server (slam_encoder_files); pixels:
    # decoded here, sent as uint8 S x S x 3. benchmarks/wire_paths.py chose the default.
    wire: str = "encoded"
    shm: bool = False  # pixels and embeddings through system shared memory (client/shm.py)


RUN_FILES = ("run_summary.json", "report.html", "metrics.prom")  # the run's own files in OUT
LOCK_FILE = ".slamctl-infer.lock"  # held (flock) by the run writing into OUT


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("slamctl-results")  # one result file per bag
    format: str = "json"  # json or csv (slamctl.client.results.FORMATS)
    top_k: int = 400  # most abnormal cells reported per bag
    threshold: float | None = None  # None: the served threshold (the model card's)
    report: bool = False  # OUT/report.html
    report_cells: int = 48  # thumbnails per bag in the report
    truth: Path | None = None  # cells.csv for the report (None: one beside the bags, if any)
    resume: bool = False  # skip bags whose result file exists
    metrics_port: int | None = None  # serve client metrics during the run
    metrics_host: str = "127.0.0.1"  # its address (0.0.0.0: every interface)
    pushgateway: str | None = None  # push client metrics there at the end
    audit_log: Path | None = None  # append one line per bag (client/audit.py)
    expect_model: str | None = None  # refuse to run unless the server serves this model id (or prefix)
    model_version: int | None = None  # ... or this model version


class Progress:
    """What a run tells its caller as it goes; the default says nothing."""

    def start(self, models: TritonModels, bags: int) -> None: ...

    def bag(self, name: str) -> Callable[[int, int], None]:
        """A bag starts; returns the callback for its cells done (n, total)."""
        return lambda n, total: None

    def bag_done(self, name: str, failed: int) -> None: ...
