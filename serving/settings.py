"""The settings of `slamctl serve` (torch-free and Triton-free: the CLI imports them at start)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    repository: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    threads: int = 0  # ONNX Runtime intra-op threads per model (0: ONNX Runtime decides)
    log_file: Path | None = None  # tritonserver's own log (default: a file in the temp folder)
    log_verbose: int = 0
    # seconds Triton waits for requests in flight at SIGTERM (its default 30 s alone fills
    # Kubernetes' default grace period, before the rest of the shutdown)
    exit_timeout_s: int = 10
    tls_cert: Path | None = None  # gRPC over TLS with this certificate (PEM) ...
    tls_key: Path | None = None  # ... and its private key (PEM)

    def triton_log(self) -> Path:
        return self.log_file or Path(tempfile.gettempdir()) / f"slamctl-triton-{self.grpc_port}.log"
