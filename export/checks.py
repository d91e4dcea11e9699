"""What `export validate` finds: one Check per property of the repository, and the tensor
descriptions (ONNX graph, config.pbtxt) that several checks compare."""

from __future__ import annotations

from dataclasses import dataclass

from slamctl.export.model_config import dtype_name


@dataclass(frozen=True)
class Check:
    model: str
    name: str
    ok: bool
    detail: str


class Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, model: str, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Check(model, name, bool(ok), detail))
        return bool(ok)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.items if not c.ok]


ONNX_TO_TRITON = {2: "TYPE_UINT8", 1: "TYPE_FP32"}  # onnx.TensorProto.UINT8, FLOAT


def onnx_tensors(values) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {}
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out[v.name] = (ONNX_TO_TRITON.get(t.elem_type, f"onnx:{t.elem_type}"), dims)
    return out


def config_tensors(entries, batching: bool) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {e.name: (dtype_name(e.data_type), ((-1,) if batching else ()) + tuple(e.dims)) for e in entries}
