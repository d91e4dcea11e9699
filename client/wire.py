"""A KServe v2 `ModelInfer` request as gRPC wire bytes, holding one copy of its tensor.

The aggregator's request carries every embedding of a bag (N x D float32: 40 MB for 20,000
cells at D=512). tritonclient builds it in four copies at once (the array, `tobytes()`, the
protobuf message, its serialisation); here the small header is serialised by protobuf and
the tensor is appended as field 7 (`raw_input_contents`) in one join, which protobuf's
wire format allows (fields of a message may come in any order; repeated fields append).
The bytes go to gRPC unserialised (`request_serializer=None`).
"""

from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2

from slamctl import contract

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
_RAW_INPUT_CONTENTS = bytes([7 << 3 | 2])  # field 7, length-delimited
# the wire names of the contract's tensor dtypes (FP32, UINT8)
_DATATYPES = {t.numpy_dtype: t.wire_dtype for t in contract.encoder_inputs(1) + contract.aggregator_inputs(1)}


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _request(
    model: str, name: str, datatype: str, shape: tuple[int, ...], outputs: list[str], parameters=None
) -> bytes:
    """A serialised ModelInferRequest of one input tensor, without the tensor's contents."""
    return service_pb2.ModelInferRequest(
        model_name=model,
        inputs=[
            service_pb2.ModelInferRequest.InferInputTensor(
                name=name, datatype=datatype, shape=shape, parameters=parameters
            )
        ],
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs],
    ).SerializeToString()


def infer_request(model: str, name: str, tensor: np.ndarray, outputs: list[str]) -> bytes:
    """The serialised ModelInferRequest of one input tensor (C-contiguous, little-endian)."""
    if tensor.dtype not in _DATATYPES or not tensor.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous float32 or uint8 array, got {tensor.dtype}")
    header = _request(model, name, _DATATYPES[tensor.dtype], tensor.shape, outputs)
    return b"".join((header, _RAW_INPUT_CONTENTS, varint(tensor.nbytes), tensor))


def shm_request(
    model: str, name: str, datatype: str, shape: tuple[int, ...], region: tuple[str, int], outputs: list[str]
) -> bytes:
    """The serialised ModelInferRequest of one input tensor that lies in a registered
    shared-memory region: region = (its name, the tensor's bytes from offset 0)."""
    parameters = {
        "shared_memory_region": service_pb2.InferParameter(string_param=region[0]),
        "shared_memory_byte_size": service_pb2.InferParameter(int64_param=region[1]),
    }
    return _request(model, name, datatype, shape, outputs, parameters)
