"""ONNX Runtime sessions on the CPU, for export's own checks (validation, parity, INT8)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model):
    """An ONNX Runtime session on the CPU of an ONNX file (a path) or an ONNX proto."""
    import onnxruntime as ort

    data = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])
