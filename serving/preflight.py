"""Checks before Triton starts, each a one-line SlamError instead of a failure seconds later in
Triton's log (ports, TLS files, numpy's version), and the python-backend stub's library
path.
"""

from __future__ import annotations

import os
import socket
import sysconfig
from pathlib import Path

import numpy as np

from slamctl.errors import SlamError
from slamctl.serving.settings import ServerSettings


def python_backend_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """LD_LIBRARY_PATH with this interpreter's libpython directory first."""
    environ = os.environ if environ is None else environ
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [p for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    return {"LD_LIBRARY_PATH": ":".join([libdir, *parts]) if libdir else ":".join(parts)}


def check_ports(settings: ServerSettings) -> None:
    """One-line error if a port is taken or given twice (Triton would otherwise fail after
    seconds, or hang)."""
    ports = (settings.grpc_port, settings.http_port, settings.metrics_port)
    if len(set(ports)) < 3:
        raise SlamError(
            f"--grpc-port, --http-port and --metrics-port must differ, got {', '.join(map(str, ports))}"
        )
    for option, port in (
        ("--grpc-port", settings.grpc_port),
        ("--http-port", settings.http_port),
        ("--metrics-port", settings.metrics_port),
    ):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((settings.host, port))
            except OSError:
                raise SlamError(f"{option} {port}: port already in use on {settings.host}") from None


def check_tls(settings: ServerSettings) -> None:
    """Both TLS files or neither, each readable PEM (Triton would fail late, in its log)."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SlamError("--tls-cert and --tls-key go together: give both (PEM certificate and its key)")
    for option, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if path is None:
            continue
        try:
            head = Path(path).read_bytes()[:4096]
        except OSError as e:
            raise SlamError(f"{option} {path}: cannot read ({e.strerror})") from None
        if b"-----BEGIN " not in head:
            raise SlamError(f"{option} {path}: expected a PEM file (-----BEGIN ...)")


def check_numpy() -> None:
    """PyTriton 0.7.0 under numpy 2 sent the model card (a BYTES output) empty, numpy 2.4.6
    seen, and every client stops at the card. Its metadata asks for numpy < 2, which an
    install with --no-deps skips (into a GPU host's own Python, say): refuse to start instead."""
    if int(np.__version__.split(".")[0]) >= 2:
        raise SlamError(
            f"numpy {np.__version__} is installed, but the embedded Triton (PyTriton 0.7.0) needs "
            "numpy < 2 (under numpy 2 it sends the model card empty): pip install 'numpy<2'"
        )
