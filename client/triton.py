"""The Triton connection: the served models and what their configs and model card say,
the aggregator's request, and the run's shared-memory regions with --shm (client/shm.py).
The encoder's requests stream through client/encoder_stream.py; both models' requests go on
channels with the one retry policy of client/channel.py. No torch.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from slamctl import contract, shm_token
from slamctl.card import ServedCard, client_version
from slamctl.client import metrics, wire
from slamctl.client.channel import channel_credentials, channel_options, failure_kind, open_channel
from slamctl.client.results import BagFailure
from slamctl.client.settings import CONTROL_TIMEOUT, ClientSettings
from slamctl.client.shm import SharedRegions, remove_stale
from slamctl.errors import SlamError


class TritonModels:
    """The two served models: connection, the sizes their configs declare, and requests."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        creds = None
        if settings.ssl:
            creds = channel_credentials(
                settings.root_certificates, settings.private_key, settings.certificate_chain
            )
        self.client = grpcclient.InferenceServerClient(
            settings.url, creds=creds, channel_args=channel_options(settings)
        )
        # the aggregator's requests go as wire bytes on a channel of their own (client.wire)
        self._channel = open_channel(settings, creds)
        self._model_infer = self._channel.unary_unary(
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
        served_as = {contract.ENCODER: settings.encoder_model, contract.AGGREGATOR: settings.aggregator_model}
        needed = [served_as.get(m.name, m.name) for m in contract.SERVED if m.wire in (None, settings.wire)]
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
        self.threshold = self.card.threshold  # chosen on validation bags by `train mil`
        self.image_size = self.card.image_size  # the training image size (see prepare_cell)
        self.max_bag = self.card.max_bag_cells
        self.model_id = self.card.model_id  # what --expect-model pins
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
                f"(version {self.card.version}), not the pinned one"
            )
        if model_version is not None and self.card.version != model_version:
            raise SlamError(
                f"--model-version {model_version}: {self.settings.url} serves version {self.card.version} "
                f"(model {self.model_id})"
            )

    def provenance(self) -> dict:
        """What served this run: the model's identity, version and files, and the client."""
        return {
            "server": self.settings.url,
            "model_id": self.model_id,
            "model_version": self.card.version,
            "models": {
                name: {"name": served, "sha256": self.card.sha256.get(name)}
                for name, served in (
                    (contract.ENCODER, self.settings.encoder_model),
                    (contract.AGGREGATOR, self.settings.aggregator_model),
                )
            },
            "exported_at": self.card.exported_at,
            "input_size": self.size,
            "server_threshold": self.threshold,
            "threshold_rule": self.card.threshold_rule,
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
        """One bag through the aggregator (gRPC retries it like the encoder's requests)."""
        t0 = time.perf_counter()
        try:
            response = self._model_infer(request, timeout=self.settings.timeout)
        except grpc.RpcError as e:
            kind = failure_kind(str(e.code()))
            metrics.ERRORS.labels(kind).inc()
            raise BagFailure(kind, f"{self.settings.aggregator_model}: {e.details()}") from None
        metrics.REQUEST_LATENCY.labels(self.settings.aggregator_model).observe(time.perf_counter() - t0)
        result = grpcclient.InferResult(response)
        return result.as_numpy(contract.BAG_PROBS), result.as_numpy(contract.ATTENTION)


def read_card(client: grpcclient.InferenceServerClient, url: str, wait: float) -> ServedCard:
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
    return ServedCard.from_json(data, f"{url} {contract.MODEL_CARD}")


def unreachable(url: str, ssl: bool = False) -> SlamError:
    """The error of a server that does not answer (for `infer` and `health`); with --ssl the
    likely cause is a server without TLS, which a failed handshake cannot tell apart."""
    if ssl:
        return SlamError(
            f"cannot reach a Triton server at {url} over TLS: if the server does not use TLS, drop --ssl; "
            "otherwise check --url and --root-certificates"
        )
    return SlamError(f"cannot reach a Triton server at {url}: start one with `slamctl serve` or check --url")
