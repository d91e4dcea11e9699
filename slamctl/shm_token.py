"""The shared-memory handshake between `slamctl serve` and `slamctl infer --shm` on one host.

Triton lets a client that may register system shared memory map any key of the server's
host, so the embedded server keeps that API behind a token (PyTriton's access header) and
writes the token to a file that only the user who runs the server can read. A client that
reads it runs on the same host as the same user; no other client can register a region.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from slamctl.errors import SlamError

# PyTriton restricts those APIs to requests with its header TRITON_ACCESS_HEADER; over gRPC
# Triton reads the header from the metadata key prefixed with triton-grpc-protocol-
GRPC_HEADER = "triton-grpc-protocol-triton-access-token"


def token_path(grpc_port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"slamctl-serve-{grpc_port}.token"


def write_token(grpc_port: int) -> str:
    """A new token for the server on `grpc_port`, in a file only this user can read."""
    token = secrets.token_urlsafe(32)
    path = token_path(grpc_port)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that was killed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def remove_token(grpc_port: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        token_path(grpc_port).unlink()


def read_headers(url: str) -> dict[str, str]:
    """The request headers that open the shared-memory API of the `slamctl serve` at `url`."""
    port = url.rsplit(":", 1)[-1]
    path = token_path(int(port)) if port.isdigit() else None
    try:
        token = path.read_text().strip() if path else ""
    except OSError:
        token = ""
    if not token:
        raise SlamError(
            f"--shm: no shared-memory token for {url} at {path}: --shm needs a `slamctl serve` "
            "running on this host as this user"
        )
    return {GRPC_HEADER: token}
