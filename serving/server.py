"""The embedded Triton server: a real Triton (PyTriton's bundled tritonserver) serving the
model repository with one ONNX Runtime session per model.

Names, tensors, max_batch_size and dynamic-batching settings are read from each model's
config.pbtxt, after the repository passed `export validate`. Same gRPC/HTTP protocol and
metrics as the production image, so the same client works against both. No torch.

The python-backend stub links the system libpython, so with a pyenv
interpreter it must find the interpreter's own libpython first; `python_backend_env`
puts the interpreter's LIBDIR at the front of LD_LIBRARY_PATH before Triton starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from slamctl import contract, shm_token
from slamctl.card import ServedCard
from slamctl.errors import SlamError
from slamctl.serving import proxy_fix
from slamctl.serving.inference import (
    bag_infer,
    batched_infer,
    card_infer,
    files_infer,
    gpu_visible,
    make_session,
)
from slamctl.serving.models import ServedModel, read_card, read_models
from slamctl.serving.preflight import check_numpy, check_ports, check_tls, python_backend_env
from slamctl.serving.settings import ServerSettings
from slamctl.serving.shared_memory import remove_stale_shm, shm_segments

log = logging.getLogger(__name__)


def triton_config(settings: ServerSettings):
    """PyTriton's TritonConfig for `settings`: addresses, ports, metrics, log, TLS on gRPC."""
    from pytriton.triton import TritonConfig

    tls = {}  # PyTriton talks to its Triton over HTTP: unaffected by gRPC TLS
    if settings.tls_cert is not None:
        tls = {
            "grpc_use_ssl": True,
            "grpc_server_cert": str(Path(settings.tls_cert).resolve()),
            "grpc_server_key": str(Path(settings.tls_key).resolve()),
        }
    return TritonConfig(
        http_address=settings.host,
        http_port=settings.http_port,
        grpc_address=settings.host,
        grpc_port=settings.grpc_port,
        metrics_address=settings.host,
        metrics_port=settings.metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=True,
        allow_gpu_metrics=gpu_visible(),
        log_verbose=settings.log_verbose,
        log_file=settings.triton_log(),
        exit_timeout_secs=settings.exit_timeout_s,
        **tls,
    )


def bind_models(triton, models: list[ServedModel], card: bytes, threads: int) -> None:
    """Bind every served model as its config says: its tensors, its batching, and its inference
    callable (serving/inference.py): an ONNX model on its own session, the file encoder on the
    encoder's, the model card on the card."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    by_name = {m.name: m for m in models}
    sessions = {m.name: make_session(m, threads) for m in models if m.onnx_path is not None}
    for m in models:
        if m.onnx_path is not None:
            log.info(
                "loaded %s version %d (%s) on %s",
                m.name,
                m.version,
                m.onnx_path,
                sessions[m.name].get_providers()[0],
            )
    image_size = ServedCard.from_json(card, contract.MODEL_CARD).image_size
    python_callables = {  # the Python-backend models' PyTriton side (export/triton_models/ for stock Triton)
        contract.FILE_ENCODER: lambda m: files_infer(
            sessions[contract.ENCODER], by_name[contract.ENCODER], image_size
        ),
        contract.MODEL_CARD: lambda m: card_infer(card),
    }

    def infer_func(m: ServedModel):
        if m.onnx_path is not None:  # an ONNX model: whole batches, or one item (a bag) per request
            return (
                batched_infer(sessions[m.name], m) if m.max_batch_size > 0 else bag_infer(sessions[m.name], m)
            )
        return python_callables[m.name](m)

    for m in models:
        batcher = None
        if m.dynamic:
            batcher = DynamicBatcher(
                max_queue_delay_microseconds=m.max_queue_delay_us,
                preferred_batch_size=m.preferred_batch_sizes or None,
            )
        triton.bind(
            model_name=m.name,
            model_version=m.version,
            infer_func=infer_func(m),
            inputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in m.inputs],
            outputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in m.outputs],
            # a batch dimension without the batcher (the file encoder, export/model_config.py):
            # a request with a malformed element would fail every request merged with it
            config=ModelConfig(
                batching=m.max_batch_size > 0, max_batch_size=max(m.max_batch_size, 1), batcher=batcher
            ),
            strict=True,
        )


def serve(settings: ServerSettings, *, on_ready: Callable[[list[ServedModel]], None] | None = None) -> None:
    """Start Triton, bind the served models (encoder, aggregator, file encoder, model card),
    serve until SIGTERM or Ctrl-C, then stop cleanly.

    SlamError if tritonserver exits on its own (crashed or killed): the caller must not
    report a clean stop then. PyTriton starts tritonserver with PR_SET_PDEATHSIG, so a
    killed `slamctl serve` takes its Triton with it.
    """
    check_numpy()
    from pytriton.triton import Triton, TritonSecurityConfig

    models = read_models(settings.repository)
    card = read_card(settings.repository)
    check_ports(settings)
    check_tls(settings)
    proxy_fix.install()
    for path in remove_stale_shm():
        log.info("removed %s (left by a server that no longer runs)", path)
    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        stop_requested = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)  # SIGTERM stops like Ctrl-C
    signal.signal(signal.SIGINT, request_stop)
    os.environ.update(python_backend_env())
    logging.getLogger("pytriton").setLevel(logging.WARNING)  # its INFO lines repeat what we log
    # shared memory (and model control, statistics, trace, logging) only with the token that
    # `slamctl infer --shm` reads from a file of this user: clients on this host
    security = TritonSecurityConfig(access_token=shm_token.write_token(settings.grpc_port))
    try:  # SIGTERM/Ctrl-C may come at any moment, also while the models load; `with` stops Triton
        with Triton(config=triton_config(settings), security_config=security) as triton:
            bind_models(triton, models, card, settings.threads)
            triton.run()
            if on_ready:
                on_ready(models)
            triton.serve()  # returns on SIGINT/SIGTERM (it catches KeyboardInterrupt itself) or when Triton dies
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        shm_token.remove_token(settings.grpc_port)
        for path in shm_segments(os.getpid()):  # PyTriton leaves them when tritonserver dies
            with contextlib.suppress(OSError):
                path.unlink()
    if not stop_requested:
        raise SlamError(
            f"tritonserver exited unexpectedly (crashed or killed); its log: {settings.triton_log()}"
        )
