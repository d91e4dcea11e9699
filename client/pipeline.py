"""The inference client's pipeline: cells of a bag -> encoder (batched, async gRPC) ->
aggregator -> decision and top-K cells. No torch.

Decoding runs in a thread pool with a bounded look-ahead while earlier batches are in
flight (tritonclient's async_infer, at most `concurrency` requests at once), so decode and
inference overlap and memory stays bounded whatever the bag size: the images held are the
look-ahead plus the in-flight batches; what grows with the bag is its file names and its
embeddings (N x D float32), which go to the aggregator as one request built with a single
copy of them (client.wire).
Retryable failures (server unavailable, deadline exceeded) are retried with exponential
backoff; after the last retry the bag fails and the run goes on with the next bag.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from client import metrics, wire
from slamctl import contract
from slamctl.card import parse_card
from slamctl.errors import SlamError
from slamctl.images import prepare_cell

CELL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
CONTROL_TIMEOUT = 10.0  # seconds for health and model-configuration calls
RETRYABLE = {"StatusCode.UNAVAILABLE": "unavailable", "StatusCode.DEADLINE_EXCEEDED": "timeout"}


@dataclass(frozen=True)
class ClientSettings:
    url: str = "localhost:8001"
    batch_size: int = 64
    concurrency: int = 4  # encoder requests in flight
    decode_threads: int = 4
    timeout: float = 60.0  # seconds per request
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    encoder_model: str = contract.ENCODER
    aggregator_model: str = contract.AGGREGATOR


@dataclass
class BagFailure(Exception):
    kind: str  # unreadable_image, unreadable_bag, too_large, timeout, unavailable, server_error
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class BagResult:
    bag: str
    probability: float  # P(abnormal)
    threshold: float
    threshold_source: str  # "server" (the model card's) or "--threshold"
    cells: list[str]  # file names of the embedded cells, in order
    attention: np.ndarray  # (N,) the aggregator's attention, higher = more abnormal
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "abnormal" if self.probability >= self.threshold else "normal"

    def top_k(self, k: int) -> list[tuple[int, str, float]]:
        """(rank, file, attention) of the k cells of highest attention."""
        order = np.argsort(-self.attention, kind="stable")[:k]
        return [(r + 1, self.cells[i], float(self.attention[i])) for r, i in enumerate(order)]


def list_cells(folder: Path) -> list[str]:
    """Names of every regular file of a bag folder, sorted; non-images are reported, not
    silently dropped. Names, not Paths: 10,000 Path objects cost 3.5 MB, their names 0.6 MB."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))


def find_bags(path: Path) -> list[Path]:
    """PATH is a bag (it holds images) or a folder of bags (its subfolders hold images)."""
    path = Path(path)
    if not path.exists():
        raise SlamError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise SlamError(f"{path}: expected a bag folder or a folder of bag folders")
    if any(p.suffix.lower() in CELL_SUFFIXES for p in path.iterdir() if p.is_file()):
        return [path]
    bags = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not bags:
        raise SlamError(
            f"{path}: holds neither cell images ({', '.join(sorted(CELL_SUFFIXES))}) nor bag folders"
        )
    return bags


class TritonModels:
    """The two served models: connection, the sizes their configs declare, and requests."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        creds = None
        if settings.ssl:
            creds = channel_credentials(
                settings.root_certificates, settings.private_key, settings.certificate_chain
            )
        self.client = grpcclient.InferenceServerClient(settings.url, creds=creds)
        # the aggregator's requests go as wire bytes on a channel of their own (client.wire)
        options = [("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                   ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE)]  # fmt: skip
        channel = (
            grpc.secure_channel(settings.url, creds, options)
            if creds
            else grpc.insecure_channel(settings.url, options)
        )
        self._model_infer = channel.unary_unary(
            wire.MODEL_INFER,
            request_serializer=None,
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        wait = max(settings.timeout, CONTROL_TIMEOUT)  # --timeout is for inference requests
        try:
            live = self.client.is_server_live(client_timeout=wait)
        except InferenceServerException:
            live = False
        if not live:
            raise unreachable(settings.url)
        try:
            for name in (settings.encoder_model, settings.aggregator_model, contract.MODEL_CARD):
                if not self.client.is_model_ready(name, client_timeout=wait):
                    raise SlamError(
                        f"model {name!r} is not ready on {settings.url}: check the server's model repository"
                    )
            enc = self.client.get_model_config(settings.encoder_model, client_timeout=wait).config
        except InferenceServerException as e:
            raise SlamError(
                f"{settings.url}: the server did not describe its models ({e.message()})"
            ) from None
        self.size = int(enc.input[0].dims[0])  # S: never hard-coded, read from the server
        self.dim = int(enc.output[0].dims[0])
        self.max_batch = int(enc.max_batch_size) or settings.batch_size
        self.card = self._read_card(wait)
        self.threshold = float(self.card["threshold"])  # chosen on validation bags by `train mil`
        self.image_size = int(self.card["image_size"])  # the training image size (see prepare_cell)
        self.max_bag = int(self.card["max_bag_cells"])

    def _read_card(self, wait: float) -> dict:
        """The served model card (export/card.py): threshold, sizes, checksums."""
        request = grpcclient.InferInput(contract.CARD_REQUEST, [1], contract.card_inputs()[0].wire_dtype)
        request.set_data_from_numpy(np.zeros(1, dtype=contract.card_inputs()[0].numpy_dtype))
        try:
            result = self.client.infer(contract.MODEL_CARD, [request], client_timeout=wait)
        except InferenceServerException as e:
            raise SlamError(
                f"{self.settings.url}: the server did not give its model card ({e.message()})"
            ) from None
        return parse_card(result.as_numpy(contract.CARD)[0], f"{self.settings.url} {contract.MODEL_CARD}")

    def aggregator_request(self, embeddings: np.ndarray) -> bytes:
        """The aggregator's request for one bag's embeddings (N, D), as wire bytes."""
        outputs = [contract.BAG_PROBS, contract.ATTENTION]
        return wire.infer_request(self.settings.aggregator_model, contract.EMBEDDINGS, embeddings, outputs)

    def aggregate(self, request: bytes) -> tuple[np.ndarray, np.ndarray]:
        """One bag through the aggregator (retried like the encoder's requests)."""
        for attempt in range(self.settings.retries + 1):
            t0 = time.perf_counter()
            try:
                response = self._model_infer(request, timeout=self.settings.timeout)
                metrics.REQUEST_LATENCY.labels(self.settings.aggregator_model).observe(
                    time.perf_counter() - t0
                )
                result = grpcclient.InferResult(response)
                return result.as_numpy(contract.BAG_PROBS), result.as_numpy(contract.ATTENTION)
            except grpc.RpcError as e:
                kind = RETRYABLE.get(str(e.code()))
                metrics.ERRORS.labels(kind or "server_error").inc()
                if kind is None or attempt == self.settings.retries:
                    raise BagFailure(
                        kind or "server_error", f"{self.settings.aggregator_model}: {e.details()}"
                    ) from None
                time.sleep(self.settings.backoff * 2**attempt)
        raise AssertionError("unreachable")


class EncoderStream:
    """Bounded in-flight async encoder requests writing into one embeddings array."""

    def __init__(self, models: TritonModels, n_cells: int) -> None:
        self.models, self.settings = models, models.settings
        self.embeddings = np.empty((n_cells, models.dim), dtype=np.float32)
        self.slots = threading.BoundedSemaphore(self.settings.concurrency)
        self.cond = threading.Condition()
        self.pending = 0
        self.failure: BagFailure | None = None

    def submit(self, start: int, images: np.ndarray, attempt: int = 0) -> None:
        if attempt == 0:
            self.slots.acquire()  # blocks while `concurrency` requests are in flight
            with self.cond:
                self.pending += 1
        inp = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
        inp.set_data_from_numpy(images)
        t0 = time.perf_counter()
        self.models.client.async_infer(
            self.settings.encoder_model, [inp],
            callback=lambda result=None, error=None: self._done(start, images, attempt, t0, result, error),
            outputs=[grpcclient.InferRequestedOutput(contract.EMBEDDINGS)], client_timeout=self.settings.timeout,
        )  # fmt: skip

    def _done(self, start, images, attempt, t0, result, error) -> None:
        if error is not None:
            kind = RETRYABLE.get(str(error.status()))
            metrics.ERRORS.labels(kind or "server_error").inc()  # every failed request, retried or not
            if kind is not None and attempt < self.settings.retries and self.failure is None:
                delay = self.settings.backoff * 2**attempt
                threading.Timer(delay, self.submit, (start, images, attempt + 1)).start()
                return
            failure = BagFailure(kind or "server_error", f"{self.settings.encoder_model}: {error.message()}")
        else:
            metrics.REQUEST_LATENCY.labels(self.settings.encoder_model).observe(time.perf_counter() - t0)
            self.embeddings[start : start + len(images)] = result.as_numpy(contract.EMBEDDINGS)
            failure = None
        with self.cond:
            self.pending -= 1
            if failure is not None and self.failure is None:
                self.failure = failure
            self.cond.notify_all()
        self.slots.release()

    def wait(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.pending == 0)
        if self.failure is not None:
            raise self.failure

    def take(self, n: int) -> np.ndarray:
        """The first n embeddings; the stream lets go of them (so they can be freed)."""
        embeddings, self.embeddings = self.embeddings[:n], None
        return embeddings


def unreachable(url: str) -> SlamError:
    """The error of a server that does not answer (for `infer` and `health`)."""
    return SlamError(f"cannot reach a Triton server at {url}: start one with `slamctl serve` or check --url")


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


def decoded(
    folder: Path, files: list[str], models: TritonModels, pool: ThreadPoolExecutor, lookahead: int
) -> Iterator:
    """(file name, image or None, reason) in file order, decoding at most `lookahead` files ahead."""
    queue: collections.deque = collections.deque()
    it = iter(files)

    def decode(name: str):
        try:
            return prepare_cell(folder / name, models.image_size, models.size), ""
        except SlamError as e:
            return None, str(e).split(": ", 1)[-1]
        except ValueError as e:
            return None, str(e)

    for path in it:
        queue.append((path, pool.submit(decode, path)))
        if len(queue) >= lookahead:
            break
    while queue:
        path, future = queue.popleft()
        image, reason = future.result()
        nxt = next(it, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(decode, nxt)))
        yield path, image, reason


def infer_bag(
    bag: Path,
    models: TritonModels,
    pool: ThreadPoolExecutor,
    *,
    threshold: float | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> BagResult:
    """Embed every readable cell of one bag, aggregate, decide. Raises BagFailure."""
    t_start = time.perf_counter()
    try:
        files = list_cells(bag)
    except OSError as e:
        raise BagFailure("unreadable_bag", f"{bag}: cannot list the folder ({e.strerror})") from None
    if models.max_bag is not None and len(files) > models.max_bag:
        raise BagFailure(
            "too_large",
            f"{bag}: {len(files)} files, the server accepts bags of at most {models.max_bag} cells",
        )
    stream = EncoderStream(models, len(files))
    batch_size = min(models.settings.batch_size, models.max_batch)
    names, skipped, batch = [], [], []
    lookahead = batch_size * (models.settings.concurrency + 1)
    for name, image, reason in decoded(bag, files, models, pool, lookahead):
        if image is None:
            skipped.append((name, reason))
            metrics.ERRORS.labels("unreadable_image").inc()
            continue
        batch.append(image)
        names.append(name)
        if len(batch) == batch_size:
            stream.submit(len(names) - len(batch), np.stack(batch))
            batch = []
            if on_batch:
                on_batch(len(names) + len(skipped), len(files))
        if stream.failure is not None:
            break
    if batch and stream.failure is None:
        stream.submit(len(names) - len(batch), np.stack(batch))
    stream.wait()
    if on_batch:
        on_batch(len(files), len(files))
    if not names:
        raise BagFailure("unreadable_image", f"{bag}: no readable cell image ({len(skipped)} files skipped)")
    metrics.CELLS.inc(len(names))
    t_embed = time.perf_counter()
    request = models.aggregator_request(stream.take(len(names)))  # from here the only copy of the embeddings
    probs, attention = models.aggregate(request)
    t_end = time.perf_counter()
    timings = {"embed_s": t_embed - t_start, "aggregate_s": t_end - t_embed, "total_s": t_end - t_start}
    chosen, source = (models.threshold, "server") if threshold is None else (threshold, "--threshold")
    return BagResult(bag.name, float(probs[1]), chosen, source, names, attention, skipped, timings)
