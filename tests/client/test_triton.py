"""The one retry policy of both models' requests, on real gRPC channels against a server
that fails on purpose, and the model card's read (client/channel.py, client/triton.py)."""

from concurrent import futures

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from slamctl import contract
from slamctl.client.channel import channel_options, failure_kind, open_channel, service_config
from slamctl.client.settings import ClientSettings
from slamctl.client.triton import read_card
from slamctl.errors import SlamError


def test_failure_kinds():
    assert failure_kind("StatusCode.UNAVAILABLE") == "unavailable"
    assert failure_kind("StatusCode.DEADLINE_EXCEEDED") == "timeout"
    # a model checked ready at the start that is gone mid-run is being reloaded: retried
    assert failure_kind("StatusCode.NOT_FOUND") == "model_unavailable"
    assert failure_kind("StatusCode.INVALID_ARGUMENT") == "server_error"


def test_the_service_config_is_grpcs_own_retry_policy():
    (method,) = service_config(retries=2, backoff=0.5)["methodConfig"]
    assert method["name"] == [{"service": "inference.GRPCInferenceService", "method": "ModelInfer"}]
    assert method["retryPolicy"] == {
        "maxAttempts": 3,
        "initialBackoff": "0.5s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "NOT_FOUND"],
    }
    assert "retryPolicy" not in service_config(retries=0, backoff=0.5)["methodConfig"][0]
    with pytest.raises(SlamError, match="--retries: expected 0 to 4"):
        service_config(retries=5, backoff=0.5)  # gRPC would lower it to 5 attempts silently


class Flaky(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ModelInfer fails with `status` for the first `failures` calls, then answers."""

    def __init__(self, failures: int, status: grpc.StatusCode):
        self.failures, self.status, self.calls = failures, status, 0

    def ModelInfer(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.status, f"attempt {self.calls} refused")
        response = service_pb2.ModelInferResponse(model_name=request.model_name)
        response.outputs.add(name="OUT", datatype="FP32", shape=[1])
        response.raw_output_contents.append(b"\x00\x00\x80\x3f")  # 1.0
        return response


@pytest.fixture
def flaky():
    servers = []

    def start(failures: int, status=grpc.StatusCode.UNAVAILABLE) -> tuple[Flaky, str]:
        service = Flaky(failures, status)
        server = grpc.server(futures.ThreadPoolExecutor(2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return service, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def infer_on_both_channels(url: str, retries: int) -> list:
    """One request on tritonclient's channel (the encoder's) and one on the raw channel (the
    aggregator's wire bytes): each a float, or the gRPC status it failed with."""
    settings = ClientSettings(url=url, retries=retries, backoff=0.01, timeout=10)
    answers = []
    client = grpcclient.InferenceServerClient(url, channel_args=channel_options(settings))
    inp = grpcclient.InferInput("IN", [1], "FP32")
    inp.set_data_from_numpy(np.zeros(1, "float32"))
    try:
        answers.append(float(client.infer("m", [inp], client_timeout=10).as_numpy("OUT")[0]))
    except Exception as e:  # tritonclient's InferenceServerException
        answers.append(e.status())
    client.close()
    channel = open_channel(settings, None)
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )
    try:
        answers.append(len(call(service_pb2.ModelInferRequest(model_name="m"), timeout=10).outputs))
    except grpc.RpcError as e:
        answers.append(str(e.code()))
    channel.close()
    return answers


def test_grpc_retries_a_server_that_is_unavailable_then_answers(flaky):
    service, url = flaky(failures=2)  # the first request is refused twice, then answered
    assert infer_on_both_channels(url, retries=2) == [1.0, 1]
    assert service.calls == 2 + 1 + 1  # the second request went through at once


def test_after_the_last_retry_the_request_fails_and_without_retries_at_once(flaky):
    service, url = flaky(failures=100)
    assert infer_on_both_channels(url, retries=2) == ["StatusCode.UNAVAILABLE"] * 2
    assert service.calls == 3 + 3
    service, url = flaky(failures=100)
    assert infer_on_both_channels(url, retries=0) == ["StatusCode.UNAVAILABLE"] * 2
    assert service.calls == 2


def test_a_model_being_reloaded_is_retried_a_refused_request_is_not(flaky):
    service, url = flaky(failures=1, status=grpc.StatusCode.NOT_FOUND)
    assert infer_on_both_channels(url, retries=1) == [1.0, 1] and service.calls == 3
    service, url = flaky(failures=1, status=grpc.StatusCode.INVALID_ARGUMENT)
    assert infer_on_both_channels(url, retries=3) == ["StatusCode.INVALID_ARGUMENT", 1]
    assert service.calls == 2


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
