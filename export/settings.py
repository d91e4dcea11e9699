"""What `slamctl export` writes into the repository's configs: batching, TensorRT profiles and
workspace, the engine cache, instances, warm-up, the device. Light (no onnx, no gRPC): the
command line reads its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from slamctl import contract


@dataclass(frozen=True)
class RepositorySettings:
    max_batch_size: int = 256  # encoder; the contract asks for >= 256
    preferred_batch_sizes: tuple[int, ...] = (64, 128, 256)
    max_queue_delay_us: int = 2000  # dynamic batcher: wait up to 2 ms to fill a batch
    opt_batch: int = 64  # TensorRT optimisation profile: the batch the engine is tuned for
    max_bag_cells: int = contract.DEFAULT_MAX_BAG_CELLS
    opt_bag_cells: int = 1000
    workspace_bytes: int = 4 << 30
    trt_cache_dir: str = "/trt_cache"  # a persistent volume in production, one per GPU type
    encoder_instances: int = 1
    warmup_batch: int = 64
    device: str = "gpu"  # gpu: KIND_GPU with TensorRT; cpu: KIND_CPU, plain ONNX Runtime (the INT8 encoder)
