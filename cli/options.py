"""Options shared by the commands that talk to a server, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

Url = Annotated[
    str, typer.Option("--url", envvar="SLAMCTL_URL", help="Triton gRPC address host:port (env SLAMCTL_URL).")
]


def _positive_seconds(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"expected seconds > 0, got {value:g}")
    return value


Timeout = Annotated[
    float, typer.Option(callback=_positive_seconds, help="Seconds per request before it counts as failed.")
]
Ssl = Annotated[bool, typer.Option("--ssl", help="Use TLS for gRPC.")]
RootCertificates = Annotated[str | None, typer.Option(help="With --ssl: CA certificates (PEM) to trust.")]
PrivateKey = Annotated[str | None, typer.Option(help="With --ssl: client private key (PEM), for mutual TLS.")]
CertificateChain = Annotated[str | None, typer.Option(help="With --ssl: client certificate chain (PEM).")]
