"""What the embedded server serves, read from a validated model repository: every model of the
contract's table (slamctl/contract.py SERVED) with its tensors and batching from its
config.pbtxt, and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slamctl import contract
from slamctl.errors import SlamError


@dataclass
class ServedModel:
    name: str
    version: int
    onnx_path: Path | None  # None: a Python-backend model, served by PyTriton's own callable
    inputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    outputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    max_batch_size: int  # 0: no batch dimension
    dynamic: bool = False  # Triton's dynamic batcher merges requests
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 0
    max_bag_cells: int | None = None


def read_models(repository: Path) -> list[ServedModel]:
    """Validate the repository (no checkpoints needed), then read what each config says."""
    from slamctl.export.layout import existing_versions
    from slamctl.export.model_config import dtype_name, parse_config
    from slamctl.export.validate import validate_repository

    repository = Path(repository)
    if not repository.is_dir():
        raise SlamError(f"{repository}: model repository does not exist")
    failures = validate_repository(repository, run_models=False).failures  # structure and checksums
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more; see slamctl export validate)" if len(failures) > 1 else ""
        raise SlamError(
            f"{repository}: invalid repository: {first.model}: {first.name}: {first.detail}{more}"
        )
    models = []
    for spec in contract.SERVED:
        config = parse_config(repository / spec.name / "config.pbtxt")
        version = existing_versions(repository / spec.name)[-1]
        max_bag = config.parameters[contract.MAX_BAG_PARAMETER].string_value
        onnx = spec.backend == contract.ONNX_PLATFORM
        models.append(
            ServedModel(
                name=spec.name,
                version=version,
                onnx_path=repository / spec.name / str(version) / "model.onnx" if onnx else None,
                inputs=[_tensor(e, dtype_name) for e in config.input],
                outputs=[_tensor(e, dtype_name) for e in config.output],
                max_batch_size=config.max_batch_size,
                dynamic=config.HasField("dynamic_batching"),
                preferred_batch_sizes=list(config.dynamic_batching.preferred_batch_size),
                max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
                max_bag_cells=int(max_bag) if max_bag else None,
            )
        )
    return models


def _tensor(entry, dtype_name) -> tuple[str, np.dtype, tuple[int, ...]]:
    """(name, numpy dtype as PyTriton takes it, dims) of a config's tensor; BYTES are np.bytes_."""
    triton = dtype_name(entry.data_type)
    dtype = np.dtype(np.bytes_) if triton == "TYPE_STRING" else np.dtype(contract.TRITON_TO_NUMPY[triton])
    return entry.name, dtype, tuple(entry.dims)


def read_card(repository: Path) -> bytes:
    """card.json of the newest version (the repository was validated by read_models)."""
    from slamctl.export.card import newest_card_path

    return newest_card_path(repository).read_bytes()
