"""The client's gRPC channels: TLS credentials, message sizes, keepalive, and the one retry
policy of every model's requests, as gRPC's own service config (DESIGN section 4).

gRPC retries a request that failed with a retryable status (the server unavailable, or a
model checked ready at the start and NOT_FOUND later: being reloaded) with exponential
backoff and jitter, inside the request's deadline: `--timeout` bounds a request with its
retries, and a request that ran out of it (DEADLINE_EXCEEDED) is not retried. After the last
attempt the bag fails (BagFailure) and the run goes on. Each request is held in gRPC's retry
buffer until answered, so the buffer is sized for the largest request.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import tritonclient.grpc as grpcclient

from slamctl.client.settings import MAX_RETRIES, ClientSettings
from slamctl.errors import SlamError

SERVICE = "inference.GRPCInferenceService"  # Triton's gRPC service (grpc_service.proto)
RETRIED_METHODS = ("ModelInfer",)  # inference; the control calls have their own short deadlines
RETRYABLE = {  # gRPC status -> the failure's kind in results and metrics
    "UNAVAILABLE": "unavailable",
    "NOT_FOUND": "model_unavailable",
}


def failure_kind(status: str) -> str:
    """The kind of a failed request from its gRPC status ("StatusCode.UNAVAILABLE", ...)."""
    name = status.removeprefix("StatusCode.")
    if name == "DEADLINE_EXCEEDED":
        return "timeout"
    return RETRYABLE.get(name, "server_error")


def service_config(retries: int, backoff: float) -> dict:
    """gRPC's service config: `retries` retries of inference requests, the first after up
    to `backoff` s (gRPC draws each wait at random below the current backoff), doubling."""
    if not 0 <= retries <= MAX_RETRIES:  # gRPC would lower a larger maxAttempts to 5 silently
        raise SlamError(f"--retries: expected 0 to {MAX_RETRIES} (gRPC's limit of 5 attempts), got {retries}")
    method = {"name": [{"service": SERVICE, "method": m} for m in RETRIED_METHODS]}
    if retries > 0:  # gRPC refuses a retry policy of fewer than 2 attempts
        method["retryPolicy"] = {
            "maxAttempts": retries + 1,
            "initialBackoff": f"{backoff:g}s",
            "maxBackoff": f"{backoff * 2 ** (retries - 1):g}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(RETRYABLE),
        }
    return {"methodConfig": [method]}


def channel_options(settings: ClientSettings) -> list[tuple[str, int | str]]:
    """Channel arguments of every channel to the server: tritonclient's own defaults (message
    sizes, keepalive) and the retry policy."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(settings.retries, settings.backoff))),
        # a request larger than the per-call buffer is never retried: room for the largest
        ("grpc.per_rpc_retry_buffer_size", grpcclient.MAX_GRPC_MESSAGE_SIZE),
    ]


def open_channel(settings: ClientSettings, creds: grpc.ChannelCredentials | None) -> grpc.Channel:
    options = channel_options(settings)
    if creds is not None:
        return grpc.secure_channel(settings.url, creds, options)
    return grpc.insecure_channel(settings.url, options)


def channel_credentials(
    root_certificates: str | None, private_key: str | None, certificate_chain: str | None
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files (None: gRPC's default roots, no client certificate)."""

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise SlamError(f"{path}: cannot read ({e.strerror})") from None

    return grpc.ssl_channel_credentials(read(root_certificates), read(private_key), read(certificate_chain))
