"""config.pbtxt of every served model, built as Triton's own `ModelConfig` protobuf from the
contract's table (slamctl/contract.py SERVED) and written with protobuf's text format; read
back the same way.

What the table gives every model: name, platform or backend, max_batch_size by its batching,
the version policy (the newest version only), its tensors, its instance group. On top:

    slam_encoder        dynamic batching (preferred sizes, queue delay), TensorRT FP16 with
                        a profile over the batch, the training image size, a warm-up batch
    mil_aggregator      TensorRT FP32 (the attention ranking must not drift) with a profile
                        over the bag's cells, the largest bag and the decision threshold, a
                        warm-up bag
    slam_model_card     one CPU instance
    slam_encoder_files  two CPU instances; no dynamic batcher: Triton's Python backend fails
                        every request of a merged batch when one holds a BYTES element whose
                        length prefix lies ("incomplete string data"), so one client could
                        fail other clients' bags. Each request already carries a batch of
                        cells, and slam_encoder, which it calls, batches the calls dynamically.

On a CPU repository (`device="cpu"`, the INT8 encoder) the ONNX models run on KIND_CPU with
plain ONNX Runtime: no TensorRT block.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from slamctl import contract
from slamctl.errors import SlamError
from slamctl.export.settings import RepositorySettings


def trt_cache_path(cache_dir: str, name: str, sha256: str) -> str:
    """The TensorRT engine cache of one model file: a folder per model and per checksum.

    ONNX Runtime names cached engines from the graph (names, shapes, versions), not from
    the weights: with one folder per model, a retrained model of the same architecture
    would load the old engine and serve the old weights. One level below the cache volume,
    as before: ONNX Runtime creates the last folder of the path only."""
    return f"{cache_dir}/{name}-{sha256[:16]}"


def base_config(
    spec: contract.ModelSpec, size: int, dim: int, *, max_batch_size: int, instances: int, gpu: bool
) -> pb.ModelConfig:
    """What the contract's row says about a model, as its ModelConfig."""
    config = pb.ModelConfig(name=spec.name, max_batch_size=0 if spec.batching == "none" else max_batch_size)
    if spec.backend == contract.PYTHON_BACKEND:
        config.backend = spec.backend
    else:
        config.platform = spec.backend
    config.version_policy.latest.num_versions = 1
    for field, tensors in ((config.input, spec.inputs(size, dim)), (config.output, spec.outputs(size, dim))):
        for t in tensors:
            field.add(name=t.name, data_type=pb.DataType.Value(t.triton_dtype), dims=t.dims)
    if spec.batching == "dynamic":
        config.dynamic_batching.SetInParent()
    kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=instances, kind=kind)
    return config


def _tensorrt(config: pb.ModelConfig, precision: str, s: RepositorySettings, cache: str, shapes) -> None:
    """The TensorRT accelerator: precision, workspace, engine cache, min/opt/max profile shapes."""
    name, dims = shapes
    profile = [f"{name}:{'x'.join(map(str, d))}" for d in dims]
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters.update(
        {
            "precision_mode": precision,
            "max_workspace_size_bytes": str(s.workspace_bytes),
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": cache,
            "trt_profile_min_shapes": profile[0],
            "trt_profile_opt_shapes": profile[1],
            "trt_profile_max_shapes": profile[2],
        }
    )


def _parameter(config: pb.ModelConfig, key: str, value) -> None:
    config.parameters[key].string_value = str(value)


def _warmup(config: pb.ModelConfig, name: str, batch_size: int, tensor: contract.TensorSpec, **data) -> None:
    warmup = config.model_warmup.add(name=name, batch_size=batch_size)
    warmup.inputs[tensor.name].CopyFrom(
        pb.ModelWarmup.Input(data_type=pb.DataType.Value(tensor.triton_dtype), dims=tensor.dims, **data)
    )


def encoder_config(size: int, dim: int, s: RepositorySettings, image_size: int, cache: str):
    gpu = s.device == "gpu"
    spec = contract.SPECS[contract.ENCODER]
    config = base_config(
        spec, size, dim, max_batch_size=s.max_batch_size, instances=s.encoder_instances, gpu=gpu
    )
    config.dynamic_batching.preferred_batch_size.extend(s.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = s.max_queue_delay_us
    (images,) = spec.inputs(size, dim)
    if gpu:
        batches = (1, s.opt_batch, s.max_batch_size)
        _tensorrt(config, "FP16", s, cache, (images.name, [(b, *images.dims) for b in batches]))
    _parameter(config, contract.IMAGE_SIZE_PARAMETER, image_size)
    _warmup(config, f"batch_{s.warmup_batch}", s.warmup_batch, images, zero_data=True)
    return config


def aggregator_config(dim: int, s: RepositorySettings, threshold: float, cache: str):
    gpu = s.device == "gpu"
    spec = contract.SPECS[contract.AGGREGATOR]
    config = base_config(spec, 0, dim, max_batch_size=0, instances=1, gpu=gpu)
    if gpu:  # FP32: the aggregator is small, and its attention ranking must not drift
        bags = (1, s.opt_bag_cells, s.max_bag_cells)
        _tensorrt(config, "FP32", s, cache, (contract.EMBEDDINGS, [(n, dim) for n in bags]))
    _parameter(config, contract.MAX_BAG_PARAMETER, s.max_bag_cells)
    _parameter(config, contract.THRESHOLD_PARAMETER, repr(threshold))
    (bag,) = contract.aggregator_inputs(dim)
    example = contract.TensorSpec(bag.name, bag.triton_dtype, (s.opt_bag_cells, dim))
    _warmup(config, f"bag_{s.opt_bag_cells}", 1, example, random_data=True)
    return config


def file_encoder_config(dim: int, max_batch_size: int):
    spec = contract.SPECS[contract.FILE_ENCODER]
    return base_config(spec, 0, dim, max_batch_size=max_batch_size, instances=2, gpu=False)


def served_configs(
    size: int,
    dim: int,
    image_size: int,
    threshold: float,
    s: RepositorySettings,
    caches: dict[str, str],
) -> dict[str, str]:
    """config.pbtxt's text of every served model, in the table's order: the row's config (one
    CPU instance), or the model's own builder where it adds to it."""
    builders = {
        contract.ENCODER: lambda: encoder_config(size, dim, s, image_size, caches[contract.ENCODER]),
        contract.AGGREGATOR: lambda: aggregator_config(dim, s, threshold, caches[contract.AGGREGATOR]),
        contract.FILE_ENCODER: lambda: file_encoder_config(dim, s.max_batch_size),
    }
    configs = {
        spec.name: builders[spec.name]()
        if spec.name in builders
        else base_config(spec, size, dim, max_batch_size=s.max_batch_size, instances=1, gpu=False)
        for spec in contract.SERVED
    }
    return {
        name: text_format.MessageToString(config, use_short_repeated_primitives=True)
        for name, config in configs.items()
    }


def parse_config(path: Path) -> pb.ModelConfig:
    """config.pbtxt -> tritonclient's ModelConfig; SlamError with the parser's reason."""
    try:
        return text_format.Parse(path.read_text(), pb.ModelConfig())
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        reason = str(e).split(" : ", 1)[-1] if line else str(e)
        raise SlamError(f"{path}:{line}:{col}: {reason}" if line else f"{path}: {reason}") from None
    except UnicodeDecodeError as e:
        raise SlamError(f"{path}: not text ({e})") from None


def dtype_name(config_enum: int) -> str:
    """TYPE_UINT8, TYPE_FP32, ... of a ModelConfig data_type enum value."""
    return pb.DataType.Name(config_enum)
