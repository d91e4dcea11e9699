"""The production card model (Triton's Python backend runs slam_model_card/<v>/model.py): it
is run here with a stand-in for `triton_python_backend_utils`, the backend's own module."""

import importlib.util
import json
import sys
import types

from slamctl import contract


def test_the_python_backend_model_answers_with_the_card(tiny_repository, monkeypatch):
    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

    class InferenceResponse:
        def __init__(self, output_tensors):
            self.output_tensors = output_tensors

    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.Tensor, pb_utils.InferenceResponse = Tensor, InferenceResponse
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)

    folder = tiny_repository / contract.MODEL_CARD
    spec = importlib.util.spec_from_file_location("card_model", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(folder), "model_version": "1"})  # as Triton passes them
    responses = model.execute([object(), object()])
    assert len(responses) == 2
    (out,) = responses[0].output_tensors
    assert out.name == contract.CARD
    assert json.loads(out.array[0]) == json.loads((folder / "1" / "card.json").read_bytes())
