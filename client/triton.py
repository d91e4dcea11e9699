"""The Triton connection: the served models and what their configs and model card say,
the encoder's stream of async batched requests, the aggregator's request, TLS credentials,
the run's shared-memory regions with --shm (client/shm.py), and the one retry policy both
requests follow. No torch.

Retryable failures (server unavailable, deadline exceeded) are retried with exponential
backoff; after the last retry the bag fails (BagFailure) and the run goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from slamctl import contract, shm_token
from slamctl.card import client_version, model_id, parse_card
from slamctl.client import metrics, wire
from slamctl.client.results import BagFailure
from slamctl.client.settings import CONTROL_TIMEOUT, ClientSettings
from slamctl.client.shm import SharedRegions, remove_stale
from slamctl.errors import SlamError

RETRYABLE = {  # a model checked ready at the start and NOT_FOUND later is being reloaded
    "StatusCode.UNAVAILABLE": "unavailable",
    "StatusCode.DEADLINE_EXCEEDED": "timeout",
    "StatusCode.NOT_FOUND": "model_unavailable",
}


def failure_kind(status: str) -> str:
    """The kind of a failed request from its gRPC status ("StatusCode.UNAVAILABLE", ...)."""
    return RETRYABLE.get(status, "server_error")


def retry_delay(settings: ClientSettings, kind: str, attempt: int) -> float | None:
    """Seconds before retrying a request that failed with `kind` on `attempt` (0 = the first
    try), or None to give up: the one retry policy of both models' requests. Every failed
    request is counted once in the client metrics, retried or not."""
    metrics.ERRORS.labels(kind).inc()
    if kind not in RETRYABLE.values() or attempt >= settings.retries:
        return None
    return settings.backoff * 2**attempt


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
        options = [
            ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ]
        channel = (
            grpc.secure_channel(settings.url, creds, options)
            if creds
            else grpc.insecure_channel(settings.url, options)
        )
        self._channel = channel
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
            raise unreachable(settings.url, settings.ssl)
        needed = [settings.encoder_model, settings.aggregator_model, contract.MODEL_CARD]
        if settings.wire == "encoded":
            needed.append(contract.FILE_ENCODER)
        try:
            for name in needed:
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
        # cells per encoder request: --batch-size, at most the encoder's max_batch_size
        self.batch_size = min(settings.batch_size, int(enc.max_batch_size) or settings.batch_size)
        self.card = read_card(self.client, settings.url, wait)
        self.threshold = float(self.card["threshold"])  # chosen on validation bags by `train mil`
        self.image_size = int(self.card["image_size"])  # the training image size (see prepare_cell)
        self.max_bag = int(self.card["max_bag_cells"])
        self.model_id = model_id(self.card)  # what --expect-model pins
        self.shared = self._shared_regions(wait) if settings.shm else None

    def _shared_regions(self, wait: float) -> SharedRegions:
        """The run's shared-memory regions (after removing those of killed clients)."""
        headers = shm_token.read_headers(self.settings.url)
        try:
            remove_stale(self.client, headers, wait)
        except InferenceServerException as e:
            raise SlamError(
                f"--shm: the server refused its shared-memory API ({e.message()}): "
                "is it the `slamctl serve` on this host?"
            ) from None
        return SharedRegions(
            self.client,
            headers,
            slots=self.settings.concurrency,
            slot_bytes=self.batch_size * self.size * self.size * 3 if self.settings.wire == "pixels" else 0,
            max_cells=self.max_bag,
            dim=self.dim,
            timeout=wait,
        )

    def check_pins(self, expect_model: str | None, model_version: int | None) -> None:
        """Refuse, in one line, a server that serves another model than the one pinned."""
        if expect_model is not None and not self.model_id.startswith(expect_model.lower()):
            raise SlamError(
                f"--expect-model {expect_model}: {self.settings.url} serves model {self.model_id} "
                f"(version {self.card['version']}), not the pinned one"
            )
        if model_version is not None and int(self.card["version"]) != model_version:
            raise SlamError(
                f"--model-version {model_version}: {self.settings.url} serves version {self.card['version']} "
                f"(model {self.model_id})"
            )

    def provenance(self) -> dict:
        """What served this run: the model's identity, version and files, and the client."""
        return {
            "server": self.settings.url,
            "model_id": self.model_id,
            "model_version": self.card["version"],
            "models": {
                name: {"name": served, "sha256": self.card["sha256"].get(name)}
                for name, served in (
                    (contract.ENCODER, self.settings.encoder_model),
                    (contract.AGGREGATOR, self.settings.aggregator_model),
                )
            },
            "exported_at": self.card.get("exported_at"),
            "input_size": self.size,
            "server_threshold": self.threshold,
            "threshold_rule": self.card["threshold_rule"],
            "client": {"slamctl": client_version()},
        }

    def close(self, timeout: float = 10.0) -> None:
        """Close both channels now (left to the garbage collector while a Ctrl-C unwinds, gRPC's
        channel close can wait forever), giving up after `timeout` s: the process is ending."""

        if self.shared is not None:  # before the channels: unregistering needs them
            self.shared.close()

        def close() -> None:
            self._channel.close()
            self.client.close()

        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        closer.join(timeout)

    def decision_threshold(self, threshold: float | None) -> tuple[float, str]:
        """(threshold, its source): the given one ("--threshold"), else the served card's ("server")."""
        return (self.threshold, "server") if threshold is None else (threshold, "--threshold")

    def aggregator_request(self, embeddings: np.ndarray) -> bytes:
        """The aggregator's request for one bag's embeddings (N, D), as wire bytes; with
        shared memory, `embeddings` is the region's view (EncoderStream.take) and the request
        points at it."""
        outputs = [contract.BAG_PROBS, contract.ATTENTION]
        model = self.settings.aggregator_model
        if self.shared is not None:
            region = (self.shared.embeddings_name, embeddings.nbytes)
            (spec,) = contract.aggregator_inputs(len(embeddings))
            return wire.shm_request(model, spec.name, spec.wire_dtype, embeddings.shape, region, outputs)
        return wire.infer_request(model, contract.EMBEDDINGS, embeddings, outputs)

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
                kind = failure_kind(str(e.code()))
                delay = retry_delay(self.settings, kind, attempt)
                if delay is None:
                    raise BagFailure(kind, f"{self.settings.aggregator_model}: {e.details()}") from None
                time.sleep(delay)
        raise AssertionError("unreachable")


DRAIN_SECONDS = 5.0  # on Ctrl-C, how long the requests in flight may take to finish


class EncoderStream:
    """Bounded in-flight async encoder requests writing into one embeddings array.

    Used as a context manager: leaving it on Ctrl-C waits (briefly) for the requests in
    flight, since closing a channel with calls in flight can hang."""

    def __init__(self, models: TritonModels, n_cells: int) -> None:
        self.models, self.settings, self.shared = models, models.settings, models.shared
        if self.shared is not None:  # the server writes them into the shared region
            self.embeddings = self.shared.embeddings(n_cells)
        else:
            self.embeddings = np.empty((n_cells, models.dim), dtype=np.float32)
        self.errors = [""] * n_cells  # the encoded path: why the server could not decode a file
        self.slots = queue.Queue()  # a request in flight holds one (its shared-memory slot)
        for slot in range(self.settings.concurrency):
            self.slots.put(slot)
        self.cond = threading.Condition()
        self.pending = 0
        self.failure: BagFailure | None = None

    def __enter__(self) -> EncoderStream:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is KeyboardInterrupt:
            self.drain(min(self.settings.timeout, DRAIN_SECONDS))

    def submit(self, start: int, batch: np.ndarray, attempt: int = 0, slot: int | None = None) -> None:
        """One request for the cells from `start`: uint8 images (the pixel path), or an (n, 1)
        object array of the files' bytes (the encoded path). A retry keeps its slot."""
        if slot is None:
            slot = self.slots.get()  # blocks while `concurrency` requests are in flight
            with self.cond:
                self.pending += 1
        if batch.dtype == np.object_:
            model, outputs = contract.FILE_ENCODER, [contract.EMBEDDINGS, contract.CELL_ERRORS]
            (spec,) = contract.file_encoder_inputs()
        else:
            model, outputs = self.settings.encoder_model, [contract.EMBEDDINGS]
            (spec,) = contract.encoder_inputs(self.models.size)
        inp = grpcclient.InferInput(spec.name, list(batch.shape), spec.wire_dtype)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        if self.shared is None:
            inp.set_data_from_numpy(batch)
        else:  # the embeddings go straight to their rows of the shared region
            requested[0] = self.shared.embeddings_output(start, len(batch))
            if batch.dtype == np.object_:  # a file's bytes are few: over gRPC
                inp.set_data_from_numpy(batch)
            else:
                inp.set_shared_memory(
                    self.shared.images_name, batch.nbytes, self.shared.write_images(slot, batch)
                )
        t0 = time.perf_counter()
        try:
            self.models.client.async_infer(
                model,
                [inp],
                callback=lambda result=None, error=None: self._done(
                    start, batch, slot, attempt, t0, result, error
                ),
                outputs=requested,
                client_timeout=self.settings.timeout,
            )
        except BaseException:  # not sent (Ctrl-C while sending): no callback will count it done
            with self.cond:
                self.pending -= 1
                self.cond.notify_all()
            self.slots.put(slot)
            raise

    def _done(self, start, images, slot, attempt, t0, result, error) -> None:
        if error is not None:
            kind = failure_kind(str(error.status()))
            delay = retry_delay(self.settings, kind, attempt)
            if delay is not None and self.failure is None:
                threading.Timer(delay, self.submit, (start, images, attempt + 1, slot)).start()
                return
            failure = BagFailure(kind, f"{self.settings.encoder_model}: {error.message()}")
        else:
            metrics.REQUEST_LATENCY.labels(self.settings.encoder_model).observe(time.perf_counter() - t0)
            if self.shared is None:
                self.embeddings[start : start + len(images)] = result.as_numpy(contract.EMBEDDINGS)
            if images.dtype == np.object_:
                reasons = result.as_numpy(contract.CELL_ERRORS).reshape(-1)
                self.errors[start : start + len(images)] = [r.decode() for r in reasons]
            failure = None
        with self.cond:
            self.pending -= 1
            if failure is not None and self.failure is None:
                self.failure = failure
            self.cond.notify_all()
        self.slots.put(slot)

    def wait(self) -> None:
        """Until every request is answered; the bag's first failure, if any, is raised."""
        self.drain(None)
        if self.failure is not None:
            raise self.failure

    def drain(self, timeout: float | None) -> None:
        """Wait (at most `timeout` s; None: without limit) until no request is in flight."""
        with self.cond:
            self.cond.wait_for(lambda: self.pending == 0, timeout=timeout)

    def take(self, n: int) -> np.ndarray:
        """The first n embeddings but those of files the server could not decode; the stream
        lets go of them (so they can be freed)."""
        embeddings, self.embeddings = self.embeddings[:n], None
        failed = [i for i, e in enumerate(self.errors[:n]) if e]
        if not failed:
            return embeddings
        if self.shared is None:
            return np.delete(embeddings, failed, axis=0)
        keep = np.delete(np.arange(n), failed)  # compacted in place: the region stays the bag's
        embeddings[: len(keep)] = embeddings[keep]
        return embeddings[: len(keep)]


def read_card(client: grpcclient.InferenceServerClient, url: str, wait: float) -> dict:
    """The served model card (export/card.py): threshold, sizes, checksums (infer, health)."""
    request = grpcclient.InferInput(contract.CARD_REQUEST, [1], contract.card_inputs()[0].wire_dtype)
    request.set_data_from_numpy(np.zeros(1, dtype=contract.card_inputs()[0].numpy_dtype))
    try:
        result = client.infer(contract.MODEL_CARD, [request], client_timeout=wait)
    except InferenceServerException as e:
        raise SlamError(f"{url}: the server did not give its model card ({e.message()})") from None
    try:
        data = result.as_numpy(contract.CARD)[0]
    except ValueError as e:  # e.g. an empty BYTES output, as PyTriton under numpy 2 sends it
        raise SlamError(
            f"{url} {contract.MODEL_CARD}: the server sent no readable model card ({e})"
        ) from None
    return parse_card(data, f"{url} {contract.MODEL_CARD}")


def unreachable(url: str, ssl: bool = False) -> SlamError:
    """The error of a server that does not answer (for `infer` and `health`); with --ssl the
    likely cause is a server without TLS, which a failed handshake cannot tell apart."""
    if ssl:
        return SlamError(
            f"cannot reach a Triton server at {url} over TLS: if the server does not use TLS, drop --ssl; "
            "otherwise check --url and --root-certificates"
        )
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
