"""Options and range checks shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Url = Annotated[
    str, typer.Option("--url", envvar="SLAMCTL_URL", help="Triton gRPC address host:port (env SLAMCTL_URL).")
]


def _positive_seconds(value: float) -> float:
    if not value > 0 or value == float("inf"):  # NaN fails every comparison
        raise typer.BadParameter(f"expected seconds > 0, got {value:g}")
    return value


def positive(value: float | None) -> float | None:
    """A callback for a float that must be finite and > 0 (a learning rate)."""
    if value is not None and not 0 < value < float("inf"):
        raise typer.BadParameter(f"expected a number > 0, got {value:g}")
    return value


def probability(value: float | None) -> float | None:
    """A callback for a float in [0, 1] (a threshold); NaN refused."""
    if value is not None and not 0 <= value <= 1:
        raise typer.BadParameter(f"expected 0 <= value <= 1, got {value:g}")
    return value


Seed = Annotated[int, typer.Option(min=0, help="Random seed (>= 0).")]


Timeout = Annotated[
    float, typer.Option(callback=_positive_seconds, help="Seconds per request before it counts as failed.")
]
Ssl = Annotated[bool, typer.Option("--ssl", help="Use TLS for gRPC.")]
RootCertificates = Annotated[str | None, typer.Option(help="With --ssl: CA certificates (PEM) to trust.")]
PrivateKey = Annotated[str | None, typer.Option(help="With --ssl: client private key (PEM), for mutual TLS.")]
CertificateChain = Annotated[str | None, typer.Option(help="With --ssl: client certificate chain (PEM).")]

# The encoder of `train embed`, `export` and `export validate`: a checkpoint path, or the name
# of a foundation encoder (training/foundation.py) whose weights file --weights names.
EncoderOption = Annotated[
    str,
    typer.Option(
        "--encoder",
        help="Pretraining checkpoint (RUN/checkpoint.pt), or a foundation encoder: dinobloom-s, "
        "dinobloom-b, dinobloom-l or dinobloom-g with --weights.",
    ),
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="With a dinobloom-* encoder (--encoder, or --foundation in experiment wr-sweep): "
        "its weights file (DinoBloom-S.pth ...), from disk."
    ),
]
