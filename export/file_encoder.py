"""The file encoder model of the production repository: the encoded wire path on stock Triton.

    slam_encoder_files/config.pbtxt         backend "python", a batch dimension, KIND_CPU
    slam_encoder_files/<version>/model.py   decodes CELL_FILES with slamctl's own code
                                            (slamctl/file_encoder.py, copied into the image
                                            at /opt/slamctl), runs slam_encoder through
                                            Triton (BLS: the GPU and its TensorRT engine),
                                            answers EMBEDDINGS and CELL_ERRORS

`slamctl serve` serves the same model with PyTriton (serving/server.py).
"""

from __future__ import annotations

from slamctl import contract

# Triton's Python backend loads this file as slam_encoder_files/<version>/model.py.
MODEL_PY = f'''"""slam_encoder_files for Triton's Python backend: cell files in, embeddings out."""

import json
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, "/opt/slamctl")  # the server image copies slamctl/ there (Dockerfile)
from slamctl.file_encoder import encode_files  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        repository = Path(args["model_repository"]).parent
        card = json.loads((repository / "{contract.MODEL_CARD}" / args["model_version"] / "card.json").read_text())
        self.image_size, self.size, self.dim = card["image_size"], card["input_size"], card["dim"]

    def encode(self, images):
        request = pb_utils.InferenceRequest(
            model_name="{contract.ENCODER}",
            requested_output_names=["{contract.EMBEDDINGS}"],
            inputs=[pb_utils.Tensor("{contract.IMAGES}", images)],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, "{contract.EMBEDDINGS}").as_numpy()

    def execute(self, requests):
        responses = []
        for request in requests:
            files = [bytes(f[0]) for f in pb_utils.get_input_tensor_by_name(request, "{contract.CELL_FILES}").as_numpy()]
            try:
                embeddings, errors = encode_files(files, self.encode, self.dim, self.image_size, self.size)
            except pb_utils.TritonModelException as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            outputs = [pb_utils.Tensor("{contract.EMBEDDINGS}", embeddings), pb_utils.Tensor("{contract.CELL_ERRORS}", errors)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
'''


def file_encoder_config(dim: int, max_batch_size: int) -> str:
    """No dynamic batching: Triton's Python backend fails every request of a merged batch when
    one holds a BYTES element whose length prefix lies ("incomplete string data"), so one client
    could fail other clients' bags. Each request already carries a batch of cells, and
    slam_encoder, which this model calls, batches the instances' calls dynamically."""
    from slamctl.export.repository import tensor_block

    return (
        f'name: "{contract.FILE_ENCODER}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        "version_policy: { latest: { num_versions: 1 } }\n"
        + tensor_block("input", contract.file_encoder_inputs())
        + tensor_block("output", contract.file_encoder_outputs(dim))
        + "instance_group [\n  {\n    count: 2\n    kind: KIND_CPU\n  }\n]\n"
    )
