"""export/triton_models/: the Python-backend models are real modules, copied unchanged into
the repository, naming the contract's models and tensors as slamctl/contract.py does."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from slamctl import contract
from slamctl.export import card, triton_models

FOLDER = Path(triton_models.__file__).parent


def load(name: str, monkeypatch):
    monkeypatch.setitem(
        sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils")
    )
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), FOLDER / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [m.source for m in contract.SERVED if m.source])
def test_the_models_use_the_contracts_names(name, monkeypatch):
    module = load(name, monkeypatch)
    names = {k: v for k, v in vars(module).items() if k.isupper()}
    assert names.pop("CARD_FILE") == card.CARD_FILE
    assert names and all(getattr(contract, k) == v for k, v in names.items()), names


def test_the_repository_holds_them_unchanged(tiny_repository):
    python = [m for m in contract.SERVED if m.backend == contract.PYTHON_BACKEND]
    assert {m.name for m in python} == {contract.MODEL_CARD, contract.FILE_ENCODER}
    for m in python:
        assert (tiny_repository / m.name / "1" / "model.py").read_bytes() == triton_models.source(m.source)
