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
import functools
import json
import logging
import os
import signal
import socket
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slamctl import contract, segments, shm_token
from slamctl.errors import SlamError
from slamctl.serving import proxy_fix

log = logging.getLogger(__name__)


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


@dataclass
class ServedModel:
    name: str
    version: int
    onnx_path: Path
    inputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    outputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    max_batch_size: int
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 0
    max_bag_cells: int | None = None


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


def read_models(repository: Path) -> list[ServedModel]:
    """Validate the repository (no checkpoints needed), then read what each config says."""
    from slamctl.export.repository import dtype_name, existing_versions, parse_config
    from slamctl.export.validate import validate_repository

    repository = Path(repository)
    if not repository.is_dir():
        raise SlamError(f"{repository}: model repository does not exist")
    failures = validate_repository(repository, run_models=False).failures  # structure and checksums
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more; see slamctl export validate)" if len(failures) > 1 else ""
        raise SlamError(
            f"{repository}: invalid repository: {first.model}: {first.name}: {first.detail}{more}"
        )
    models = []
    for name in (contract.ENCODER, contract.AGGREGATOR):
        config = parse_config(repository / name / "config.pbtxt")
        version = existing_versions(repository / name)[-1]
        tensors = lambda entries: [  # noqa: E731
            (e.name, np.dtype(contract.TRITON_TO_NUMPY[dtype_name(e.data_type)]), tuple(e.dims))
            for e in entries
        ]
        max_bag = (
            config.parameters[contract.MAX_BAG_PARAMETER].string_value if name == contract.AGGREGATOR else ""
        )
        models.append(
            ServedModel(
                name=name,
                version=version,
                onnx_path=repository / name / str(version) / "model.onnx",
                inputs=tensors(config.input),
                outputs=tensors(config.output),
                max_batch_size=config.max_batch_size,
                preferred_batch_sizes=list(config.dynamic_batching.preferred_batch_size),
                max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
                max_bag_cells=int(max_bag) if max_bag else None,
            )
        )
    return models


def gpu_visible() -> bool:
    return os.path.exists("/dev/nvidiactl")


@functools.cache
def providers() -> tuple[str, ...]:
    """CUDA when a GPU is visible and onnxruntime-gpu offers it (asking otherwise prints a
    long error before falling back); CPU always last. With CUDA, CUDA's and cuDNN's libraries
    are loaded first from the nvidia-* wheels beside onnxruntime-gpu, as `import torch` would
    load them (this process imports no torch); without them ONNX Runtime falls back to the
    CPU, and the log line of each model names the provider in use."""
    import onnxruntime as ort

    if not (gpu_visible() and "CUDAExecutionProvider" in ort.get_available_providers()):
        return ("CPUExecutionProvider",)
    if hasattr(ort, "preload_dlls"):  # ONNX Runtime >= 1.21
        ort.preload_dlls()
    return ("CUDAExecutionProvider", "CPUExecutionProvider")


def make_session(model: ServedModel, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model.onnx_path), sess_options=options, providers=list(providers()))
    except Exception as e:  # ONNX Runtime raises its own exception types
        raise SlamError(f"{model.onnx_path}: ONNX Runtime cannot load it ({type(e).__name__})") from None


def batched_infer(session, model: ServedModel) -> Callable:
    """Inference callable of a batching model: Triton's dynamic batcher hands it whole batches."""
    from pytriton.decorators import batch

    names = [n for n, _, _ in model.outputs]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs)))

    return infer


def files_infer(session, encoder: ServedModel, image_size: int | None) -> Callable:
    """Inference callable of the file encoder: cell files decoded here as the client would,
    then the encoder's session (slamctl/file_encoder.py)."""
    from pytriton.decorators import batch

    from slamctl.file_encoder import encode_files

    (size,) = {d for d in encoder.inputs[0][2][:2]}
    dim = encoder.outputs[0][2][-1]

    def encode(images: np.ndarray) -> np.ndarray:
        return session.run([contract.EMBEDDINGS], {contract.IMAGES: images})[0]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        files = [bytes(f[0]) for f in inputs[contract.CELL_FILES]]
        embeddings, errors = encode_files(files, encode, dim, image_size, size)
        return {contract.EMBEDDINGS: embeddings, contract.CELL_ERRORS: errors}

    return infer


def bag_infer(session, model: ServedModel) -> Callable:
    """Inference callable of the aggregator: one bag per request, bags above the maximum refused."""
    from pytriton.exceptions import PyTritonBadParameterError

    names = [n for n, _, _ in model.outputs]
    (input_name, _, _) = model.inputs[0]

    def infer(requests) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            cells = request[input_name]
            if model.max_bag_cells is not None and cells.shape[0] > model.max_bag_cells:
                raise PyTritonBadParameterError(
                    f"bag of {cells.shape[0]} cells exceeds the maximum of {model.max_bag_cells} "
                    f"({contract.MAX_BAG_PARAMETER} in {model.name}/config.pbtxt)"
                )
            if cells.shape[0] == 0:
                raise PyTritonBadParameterError("bag of 0 cells: send at least one cell's embedding")
            responses.append(dict(zip(names, session.run(names, {input_name: cells}))))
        return responses

    return infer


def card_infer(card: bytes) -> Callable:
    """Inference callable of the model card model: every request gets the card (export/card.py)."""
    answer = {contract.CARD: np.array([card], dtype=np.bytes_)}

    def infer(requests) -> list[dict[str, np.ndarray]]:
        return [answer for _ in requests]

    return infer


def read_card(repository: Path) -> bytes:
    """card.json of the newest version (the repository was validated by read_models)."""
    from slamctl.export.card import newest_card_path

    return newest_card_path(repository).read_bytes()


SHM_DIR = segments.SHM_DIR
PYTRITON_PREFIX = "pytrtion"  # PyTriton's segments: pytrtion<pid>-... (its spelling)


def shm_segments(pid: int) -> list[Path]:
    """PyTriton's shared-memory segments of process `pid` (those of every dead process:
    remove_stale_shm)."""
    return sorted(SHM_DIR.glob(f"{PYTRITON_PREFIX}{pid}-*")) if SHM_DIR.is_dir() else []


def remove_stale_shm() -> list[Path]:
    """Remove the segments of `slamctl serve` processes that no longer exist (one killed with
    SIGKILL cannot clean up after itself); the segments of live servers are kept."""
    return segments.remove_orphans(PYTRITON_PREFIX, "-", SHM_DIR)


def check_numpy() -> None:
    """PyTriton 0.7.0 under numpy 2 sent the model card (a BYTES output) empty, numpy 2.4.6
    seen, and every client stops at the card. Its metadata asks for numpy < 2, which an
    install with --no-deps skips (into a GPU host's own Python, say): refuse to start instead."""
    if int(np.__version__.split(".")[0]) >= 2:
        raise SlamError(
            f"numpy {np.__version__} is installed, but the embedded Triton (PyTriton 0.7.0) needs "
            "numpy < 2 (under numpy 2 it sends the model card empty): pip install 'numpy<2'"
        )


def serve(settings: ServerSettings, *, on_ready: Callable[[list[ServedModel]], None] | None = None) -> None:
    """Start Triton, bind the served models (encoder, aggregator, file encoder, model card),
    serve until SIGTERM or Ctrl-C, then stop cleanly.

    SlamError if tritonserver exits on its own (crashed or killed): the caller must not
    report a clean stop then. PyTriton starts tritonserver with PR_SET_PDEATHSIG, so a
    killed `slamctl serve` takes its Triton with it.
    """
    check_numpy()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    models = read_models(settings.repository)
    card = read_card(settings.repository)
    image_size = json.loads(card).get("image_size")
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
    tls = {}  # PyTriton talks to its Triton over HTTP: unaffected by gRPC TLS
    if settings.tls_cert is not None:
        tls = {
            "grpc_use_ssl": True,
            "grpc_server_cert": str(Path(settings.tls_cert).resolve()),
            "grpc_server_key": str(Path(settings.tls_key).resolve()),
        }
    config = TritonConfig(
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
    logging.getLogger("pytriton").setLevel(logging.WARNING)  # its INFO lines repeat what we log
    # shared memory (and model control, statistics, trace, logging) only with the token that
    # `slamctl infer --shm` reads from a file of this user: clients on this host
    security = TritonSecurityConfig(access_token=shm_token.write_token(settings.grpc_port))
    try:  # SIGTERM/Ctrl-C may come at any moment, also while the models load; `with` stops Triton
        with Triton(config=config, security_config=security) as triton:
            sessions = {}
            for m in models:
                session = sessions[m.name] = make_session(m, settings.threads)
                batching = m.max_batch_size > 0
                model_config = ModelConfig(
                    batching=batching,
                    max_batch_size=max(m.max_batch_size, 1),
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=m.max_queue_delay_us,
                        preferred_batch_size=m.preferred_batch_sizes or None,
                    ),
                )
                triton.bind(
                    model_name=m.name,
                    model_version=m.version,
                    infer_func=batched_infer(session, m) if batching else bag_infer(session, m),
                    inputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in m.inputs],
                    outputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in m.outputs],
                    config=model_config,
                    strict=True,
                )
                log.info(
                    "loaded %s version %d (%s) on %s",
                    m.name,
                    m.version,
                    m.onnx_path,
                    session.get_providers()[0],
                )
            encoder = next(m for m in models if m.name == contract.ENCODER)
            triton.bind(  # the encoded wire path: files in, embeddings out (the encoder's session)
                model_name=contract.FILE_ENCODER,
                model_version=encoder.version,
                infer_func=files_infer(sessions[contract.ENCODER], encoder, image_size),
                inputs=[Tensor(name=contract.CELL_FILES, dtype=np.bytes_, shape=(1,))],
                outputs=[
                    Tensor(name=contract.EMBEDDINGS, dtype=np.float32, shape=encoder.outputs[0][2]),
                    Tensor(name=contract.CELL_ERRORS, dtype=np.bytes_, shape=(1,)),
                ],
                # no dynamic batcher (export/file_encoder.py): a request with a malformed element
                # would fail every request merged with it, other clients' bags included
                config=ModelConfig(batching=True, max_batch_size=encoder.max_batch_size, batcher=None),
                strict=True,
            )
            triton.bind(
                model_name=contract.MODEL_CARD,
                infer_func=card_infer(card),
                inputs=[
                    Tensor(name=t.name, dtype=t.numpy_dtype, shape=t.dims) for t in contract.card_inputs()
                ],
                outputs=[Tensor(name=t.name, dtype=np.bytes_, shape=t.dims) for t in contract.card_outputs()],
                config=ModelConfig(batching=False),
                strict=True,
            )
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
