"""The production file encoder (slam_encoder_files/<v>/model.py, Triton's Python backend) run
with a stand-in for `triton_python_backend_utils` whose BLS request runs the repository's
encoder in ONNX Runtime: the embeddings of the client's own decoding, and per-file errors."""

import importlib.util
import sys
import types

import numpy as np
import onnxruntime as ort

from slamctl import contract
from slamctl.images import prepare_cell


class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


def stand_in_backend(encoder_onnx):
    session = ort.InferenceSession(str(encoder_onnx), providers=["CPUExecutionProvider"])
    pb_utils = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            assert model_name == contract.ENCODER and requested_output_names == [contract.EMBEDDINGS]
            self.inputs = inputs

        def exec(self):
            (images,) = self.inputs
            embeddings = session.run(None, {contract.IMAGES: images.array})[0]
            return types.SimpleNamespace(
                has_error=lambda: False,
                outputs={contract.EMBEDDINGS: Tensor(contract.EMBEDDINGS, embeddings)},
            )

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.output_tensors, self.error = output_tensors, error

    pb_utils.Tensor, pb_utils.InferenceRequest, pb_utils.InferenceResponse = (
        Tensor,
        InferenceRequest,
        InferenceResponse,
    )
    pb_utils.TritonModelException, pb_utils.TritonError = RuntimeError, RuntimeError
    pb_utils.get_output_tensor_by_name = lambda response, name: response.outputs[name]
    pb_utils.get_input_tensor_by_name = lambda request, name: request[name]
    return pb_utils


def test_the_python_backend_file_encoder_decodes_like_the_client(tiny_repository, tiny_bags, monkeypatch):
    pb_utils = stand_in_backend(tiny_repository / contract.ENCODER / "1" / "model.onnx")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    spec = importlib.util.spec_from_file_location(
        "files_model", tiny_repository / contract.FILE_ENCODER / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(tiny_repository / contract.FILE_ENCODER), "model_version": "1"})
    files = sorted((tiny_bags / "bag_0000").iterdir())[:5]
    blobs = np.empty((6, 1), dtype=np.object_)
    blobs[:, 0] = [f.read_bytes() for f in files] + [b"not an image"]
    (response,) = model.execute([{contract.CELL_FILES: Tensor(contract.CELL_FILES, blobs)}])
    embeddings, errors = (t.array for t in response.output_tensors)
    images = np.stack([prepare_cell(f, model.image_size, model.size) for f in files])
    session = ort.InferenceSession(str(tiny_repository / contract.ENCODER / "1" / "model.onnx"))
    np.testing.assert_array_equal(embeddings[:5], session.run(None, {contract.IMAGES: images})[0])
    assert [e[0] for e in errors[:5]] == [b""] * 5 and errors[5][0].startswith(b"not a readable image")
    assert not embeddings[5].any()
