"""The one retry policy of both models' requests, and the model card's read (client/triton.py)."""

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from slamctl import contract
from slamctl.client.settings import ClientSettings
from slamctl.client.triton import failure_kind, read_card, retry_delay
from slamctl.errors import SlamError


def test_failure_kinds():
    assert failure_kind("StatusCode.UNAVAILABLE") == "unavailable"
    assert failure_kind("StatusCode.DEADLINE_EXCEEDED") == "timeout"
    # a model checked ready at the start that is gone mid-run is being reloaded: retried
    assert failure_kind("StatusCode.NOT_FOUND") == "model_unavailable"
    assert failure_kind("StatusCode.INVALID_ARGUMENT") == "server_error"


def test_retry_delay_backs_off_then_gives_up():
    settings = ClientSettings(retries=2, backoff=0.5)
    assert [retry_delay(settings, "model_unavailable", a) for a in range(3)] == [0.5, 1.0, None]
    assert retry_delay(settings, "server_error", 0) is None  # a refused request is not retried


class CardServer:
    """Answers the model card request with `contents` as the card's BYTES output."""

    def __init__(self, contents: bytes):
        self.contents = contents

    def infer(self, model_name, inputs, client_timeout=None):
        response = service_pb2.ModelInferResponse(model_name=model_name)
        response.outputs.add(name=contract.CARD, datatype="BYTES", shape=[1])
        response.raw_output_contents.append(self.contents)
        return grpcclient.InferResult(response)


def test_an_empty_model_card_is_one_clear_error():
    """The answer PyTriton 0.7.0 gives under numpy 2: the card's output without contents."""
    with pytest.raises(
        SlamError, match=f"host:8001 {contract.MODEL_CARD}: the server sent no readable model card"
    ):
        read_card(CardServer(b""), "host:8001", 1.0)


def test_a_card_that_is_not_json_is_one_clear_error():
    """The control: the same path with contents gets to the card's parsing."""
    text = b"not json"
    with pytest.raises(SlamError, match="the model card is not JSON"):
        read_card(CardServer(len(text).to_bytes(4, "little") + text), "host:8001", 1.0)
