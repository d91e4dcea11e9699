"""slam_model_card for Triton's Python backend: answers every request with card.json."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

CARD = "CARD"  # contract.CARD
CARD_FILE = "card.json"  # export/card.py CARD_FILE


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / CARD_FILE
        card = path.read_bytes()
        json.loads(card)  # refuse to load a card that is not JSON
        self.card = np.array([card], dtype=np.object_)

    def execute(self, requests):
        out = pb_utils.Tensor(CARD, self.card)
        return [pb_utils.InferenceResponse(output_tensors=[out]) for _ in requests]
