"""The file encoder model of the production repository: the encoded wire path on stock Triton.

    slam_encoder_files/config.pbtxt         backend "python", a batch dimension, KIND_CPU
    slam_encoder_files/<version>/model.py   export/triton_models/file_encoder_model.py

`slamctl serve` serves the same model with PyTriton (serving/server.py).
"""

from __future__ import annotations

from slamctl import contract


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
