"""The serving contract: model names, tensor names, dtypes and shapes.

Defined once, used by the export, the repository writer and validator, the server and
the client. Shapes here exclude the batch dimension of batching models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ENCODER = "slam_encoder"
AGGREGATOR = "mil_aggregator"
MODEL_CARD = "slam_model_card"  # the model facts the client needs, from either server
IMAGES = "IMAGES"
EMBEDDINGS = "EMBEDDINGS"
BAG_PROBS = "BAG_PROBS"
ATTENTION = "ATTENTION"
CARD_REQUEST = "CARD_REQUEST"  # the card model's dummy input (Triton models take one)
CARD = "CARD"  # the card model's output: the model card as one JSON BYTES element
# The encoded wire path (`slamctl infer --wire encoded`): the cell files' bytes go to the
# server, which decodes them exactly as the client would and runs the encoder.
FILE_ENCODER = "slam_encoder_files"
CELL_FILES = "CELL_FILES"  # BYTES [1] per cell: the file's bytes
CELL_ERRORS = "CELL_ERRORS"  # BYTES [1] per cell: "" or why the file was not decoded

ENCODER_MIN_MAX_BATCH = 256  # the encoder's max_batch_size is at least this
DEFAULT_MAX_BAG_CELLS = 20_000  # the aggregator's TensorRT profile covers bags up to this
MAX_BAG_PARAMETER = "max_bag_cells"  # config.pbtxt parameter the server enforces, the client reads
IMAGE_SIZE_PARAMETER = "image_size"  # encoder config.pbtxt: the training image size (cells are
# resized to it, then center-cropped to S, exactly as the training eval transform)
THRESHOLD_PARAMETER = "decision_threshold"  # aggregator config.pbtxt: the threshold on P(abnormal)
# chosen on validation bags; the model card carries it to the client from either server


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_dtype: str  # as in config.pbtxt, e.g. "TYPE_UINT8"
    dims: tuple[int, ...]  # -1 = variable

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(TRITON_TO_NUMPY[self.triton_dtype])

    @property
    def wire_dtype(self) -> str:
        """The dtype name of Triton's inference protocol (tritonclient's InferInput)."""
        return "BYTES" if self.triton_dtype == "TYPE_STRING" else self.triton_dtype.removeprefix("TYPE_")


TRITON_TO_NUMPY = {"TYPE_UINT8": "uint8", "TYPE_FP32": "float32", "TYPE_STRING": "object"}


def encoder_inputs(size: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec(IMAGES, "TYPE_UINT8", (size, size, 3)),)


def encoder_outputs(dim: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec(EMBEDDINGS, "TYPE_FP32", (dim,)),)


def aggregator_inputs(dim: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec(EMBEDDINGS, "TYPE_FP32", (-1, dim)),)


def aggregator_outputs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(BAG_PROBS, "TYPE_FP32", (2,)), TensorSpec(ATTENTION, "TYPE_FP32", (-1,)))


def card_inputs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(CARD_REQUEST, "TYPE_UINT8", (1,)),)


def card_outputs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(CARD, "TYPE_STRING", (1,)),)


def file_encoder_inputs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(CELL_FILES, "TYPE_STRING", (1,)),)


def file_encoder_outputs(dim: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec(EMBEDDINGS, "TYPE_FP32", (dim,)), TensorSpec(CELL_ERRORS, "TYPE_STRING", (1,)))


ONNX_PLATFORM = "onnxruntime_onnx"  # an ONNX file, run by ONNX Runtime (TensorRT on GPU servers)
PYTHON_BACKEND = "python"  # a model of Triton's Python backend (export/triton_models/)
BATCHINGS = {
    "dynamic": "a batch dimension, and Triton's dynamic batcher merges requests",
    "batch": "a batch dimension, requests never merged (one malformed element fails its request alone)",
    "none": "max_batch_size 0: one request is one item (a bag, a card)",
}


@dataclass(frozen=True)
class ModelSpec:
    """One served model: what export/model_config.py writes into its config.pbtxt, what the
    server binds, what validation checks and what a client waits for."""

    name: str
    backend: str  # ONNX_PLATFORM or PYTHON_BACKEND
    batching: str  # a key of BATCHINGS
    inputs: Callable[[int, int], tuple[TensorSpec, ...]]  # (S, D) -> the input tensors
    outputs: Callable[[int, int], tuple[TensorSpec, ...]]  # (S, D) -> the output tensors
    wire: str | None = None  # needed only by clients of this --wire; None: by every client
    source: str | None = None  # a Python-backend model's module in export/triton_models/


# The served models, in the model id's order. Adding one is a row here and its model code:
# an ONNX export, or a module in export/triton_models/ (which stock Triton runs) with its
# PyTriton callable in serving/inference.py (which `slamctl serve` binds). Its config is the
# row's (export/model_config.py adds TensorRT and parameters to the ONNX models).
SERVED = (
    ModelSpec(
        ENCODER, ONNX_PLATFORM, "dynamic", lambda s, d: encoder_inputs(s), lambda s, d: encoder_outputs(d)
    ),
    ModelSpec(
        AGGREGATOR,
        ONNX_PLATFORM,
        "none",
        lambda s, d: aggregator_inputs(d),
        lambda s, d: aggregator_outputs(),
    ),
    ModelSpec(
        MODEL_CARD,
        PYTHON_BACKEND,
        "none",
        lambda s, d: card_inputs(),
        lambda s, d: card_outputs(),
        source="card_model.py",
    ),
    ModelSpec(
        FILE_ENCODER,
        PYTHON_BACKEND,
        "batch",
        lambda s, d: file_encoder_inputs(),
        lambda s, d: file_encoder_outputs(d),
        wire="encoded",
        source="file_encoder_model.py",
    ),
)
SPECS = {m.name: m for m in SERVED}
ONNX_MODELS = tuple(m.name for m in SERVED if m.backend == ONNX_PLATFORM)  # a version's ONNX files
SERVED_MODELS = tuple(m.name for m in SERVED)  # what a server must have ready
assert all(m.batching in BATCHINGS for m in SERVED)
