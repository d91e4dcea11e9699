"""What the embedded server serves, read from a validated model repository: each ONNX model's
tensors and batching from its config.pbtxt, and the model card.
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
    onnx_path: Path
    inputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    outputs: list[tuple[str, np.dtype, tuple[int, ...]]]
    max_batch_size: int
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 0
    max_bag_cells: int | None = None


def read_models(repository: Path) -> list[ServedModel]:
    """Validate the repository (no checkpoints needed), then read what each config says."""
    from slamctl.export.repository import dtype_name, existing_versions, parse_config
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
    for name in (contract.ENCODER, contract.AGGREGATOR):
        config = parse_config(repository / name / "config.pbtxt")
        version = existing_versions(repository / name)[-1]
        tensors = lambda entries: [  # noqa: E731
            (e.name, np.dtype(contract.TRITON_TO_NUMPY[dtype_name(e.data_type)]), tuple(e.dims))
            for e in entries
        ]
        max_bag = (
            config.parameters[contract.MAX_BAG_PARAMETER].string_value if name == contract.AGGREGATOR else ""
        )
        models.append(
            ServedModel(
                name=name,
                version=version,
                onnx_path=repository / name / str(version) / "model.onnx",
                inputs=tensors(config.input),
                outputs=tensors(config.output),
                max_batch_size=config.max_batch_size,
                preferred_batch_sizes=list(config.dynamic_batching.preferred_batch_size),
                max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
                max_bag_cells=int(max_bag) if max_bag else None,
            )
        )
    return models


def read_card(repository: Path) -> bytes:
    """card.json of the newest version (the repository was validated by read_models)."""
    from slamctl.export.card import newest_card_path

    return newest_card_path(repository).read_bytes()
