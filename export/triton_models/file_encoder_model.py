"""slam_encoder_files for Triton's Python backend: cell files in, embeddings out.

Decodes CELL_FILES with slamctl's own code (slamctl/file_encoder.py, which the server image
copies to /opt/slamctl), runs slam_encoder through Triton (BLS: the GPU and its TensorRT
engine), answers EMBEDDINGS and CELL_ERRORS.
"""

import json
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, "/opt/slamctl")  # the server image copies slamctl/ there (Dockerfile)
from slamctl.file_encoder import encode_files  # noqa: E402 (after the path it is found on)

MODEL_CARD, ENCODER = "slam_model_card", "slam_encoder"  # contract.MODEL_CARD, contract.ENCODER
IMAGES, EMBEDDINGS = "IMAGES", "EMBEDDINGS"  # contract.IMAGES, contract.EMBEDDINGS
CELL_FILES, CELL_ERRORS = "CELL_FILES", "CELL_ERRORS"  # contract.CELL_FILES, contract.CELL_ERRORS
CARD_FILE = "card.json"  # export/card.py CARD_FILE


class TritonPythonModel:
    def initialize(self, args):
        repository = Path(args["model_repository"]).parent
        card = json.loads((repository / MODEL_CARD / args["model_version"] / CARD_FILE).read_text())
        self.image_size, self.size, self.dim = card["image_size"], card["input_size"], card["dim"]

    def encode(self, images):
        request = pb_utils.InferenceRequest(
            model_name=ENCODER,
            requested_output_names=[EMBEDDINGS],
            inputs=[pb_utils.Tensor(IMAGES, images)],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, EMBEDDINGS).as_numpy()

    def execute(self, requests):
        responses = []
        for request in requests:
            files = [bytes(f[0]) for f in pb_utils.get_input_tensor_by_name(request, CELL_FILES).as_numpy()]
            try:
                embeddings, errors = encode_files(files, self.encode, self.dim, self.image_size, self.size)
            except pb_utils.TritonModelException as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            outputs = [pb_utils.Tensor(EMBEDDINGS, embeddings), pb_utils.Tensor(CELL_ERRORS, errors)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
