"""`slamctl serve`: the embedded Triton server for a model repository (no GPU, no Docker)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.console import err
from slamctl.serving.settings import ServerSettings  # numpy only: no Triton, no ONNX Runtime


def serve(
    repository: Annotated[Path, typer.Option(help="Model repository written by `slamctl export`.")] = Path(
        "model_repository"
    ),
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = ServerSettings.host,
    grpc_port: Annotated[
        int, typer.Option(min=1, max=65535, help="gRPC port (the client's --url).")
    ] = ServerSettings.grpc_port,
    http_port: Annotated[
        int, typer.Option(min=1, max=65535, help="HTTP port (health: /v2/health/ready).")
    ] = ServerSettings.http_port,
    metrics_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Prometheus metrics port (/metrics).")
    ] = ServerSettings.metrics_port,
    threads: Annotated[
        int, typer.Option(min=0, help="ONNX Runtime threads per model (0: automatic).")
    ] = ServerSettings.threads,
    log_file: Annotated[
        Path | None, typer.Option(help="tritonserver's log (default: in the temp folder).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve gRPC over TLS with this certificate (PEM); needs --tls-key.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The private key (PEM) of --tls-cert.")] = None,
) -> None:
    """Serve the repository with a real Triton server and ONNX Runtime; stop with Ctrl-C or SIGTERM.

    The repository is validated first; the CUDA execution provider is used when a GPU is
    visible. Production GPU servers run the Docker image instead (see the README).
    """
    from slamctl.serving.server import serve as run

    settings = ServerSettings(
        repository=repository,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        threads=threads,
        log_file=log_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )

    def ready(models) -> None:
        names = ", ".join(f"{m.name} v{m.version}" for m in models)
        err.print(
            f"serving {names}: gRPC{' (TLS)' if tls_cert else ''} {host}:{grpc_port}, HTTP {host}:{http_port}, "
            f"metrics http://{host}:{metrics_port}/metrics, log {settings.triton_log()} (Ctrl-C to stop)"
        )

    run(settings, on_ready=ready)
    err.print("server stopped")
