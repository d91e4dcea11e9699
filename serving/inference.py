"""One ONNX Runtime session per served model (on the GPU when one is visible) and the inference
callables PyTriton binds: batching models, the aggregator (one bag per request), the file
encoder, the model card.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np

from slamctl import contract
from slamctl.errors import SlamError
from slamctl.serving.models import ServedModel


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


def files_infer(session, encoder: ServedModel, image_size: int) -> Callable:
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
