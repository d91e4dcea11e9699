"""The hand-built ModelInferRequest bytes parse as the message tritonclient would send."""

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from slamctl.client.wire import infer_request, varint


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**31, b"\x80\x80\x80\x80\x08"),
    ],
)
def test_varint(n, expected):
    assert varint(n) == expected


@pytest.mark.parametrize(
    "shape, dtype", [((5, 3), np.float32), ((2, 4, 4, 3), np.uint8), ((20000, 512), np.float32)]
)
def test_request_parses_with_the_tensor_intact(shape, dtype):
    tensor = (np.random.default_rng(0).random(shape) * 255).astype(dtype)
    request = service_pb2.ModelInferRequest.FromString(infer_request("agg", "x", tensor, ["a", "b"]))
    assert request.model_name == "agg"
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [
        ("x", "FP32" if dtype == np.float32 else "UINT8", list(shape))
    ]
    assert [o.name for o in request.outputs] == ["a", "b"]
    assert len(request.raw_input_contents) == 1
    np.testing.assert_array_equal(np.frombuffer(request.raw_input_contents[0], dtype).reshape(shape), tensor)


def test_refuses_what_it_cannot_send_raw():
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        infer_request("m", "x", np.zeros((3, 4), np.float64), ["a"])
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        infer_request("m", "x", np.zeros((4, 3), np.float32).T, ["a"])
