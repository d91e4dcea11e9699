"""export/model_config.py: every row of the contract's table becomes a config.pbtxt that Triton's
own ModelConfig parses back to what the row says."""

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from slamctl import contract
from slamctl.export.model_config import served_configs
from slamctl.export.settings import RepositorySettings

CACHES = {contract.ENCODER: "/trt/enc", contract.AGGREGATOR: "/trt/agg"}


@pytest.mark.parametrize("device", ["gpu", "cpu"])
def test_every_served_model_has_the_config_its_row_says(device):
    texts = served_configs(32, 16, 40, 0.25, RepositorySettings(device=device), CACHES)
    assert tuple(texts) == contract.SERVED_MODELS
    for spec in contract.SERVED:
        config = text_format.Parse(texts[spec.name], pb.ModelConfig())
        assert config.name == spec.name
        assert (config.platform or config.backend) == spec.backend
        assert (config.max_batch_size > 0) == (spec.batching != "none")
        assert config.HasField("dynamic_batching") == (spec.batching == "dynamic")
        for entries, tensors in ((config.input, spec.inputs(32, 16)), (config.output, spec.outputs(32, 16))):
            got = [(e.name, pb.DataType.Name(e.data_type), tuple(e.dims)) for e in entries]
            assert got == [(t.name, t.triton_dtype, t.dims) for t in tensors]
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        on_gpu = device == "gpu" and spec.backend == contract.ONNX_PLATFORM
        assert [a.name for a in accelerators] == (["tensorrt"] if on_gpu else [])
        assert config.version_policy.latest.num_versions == 1


def test_the_onnx_models_extras():
    texts = served_configs(32, 16, 40, 0.25, RepositorySettings(), CACHES)
    enc = text_format.Parse(texts[contract.ENCODER], pb.ModelConfig())
    (trt,) = enc.optimization.execution_accelerators.gpu_execution_accelerator
    assert (
        trt.parameters["precision_mode"] == "FP16" and trt.parameters["trt_engine_cache_path"] == "/trt/enc"
    )
    assert [trt.parameters[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")] == [
        "IMAGES:1x32x32x3",
        "IMAGES:64x32x32x3",
        "IMAGES:256x32x32x3",
    ]
    assert enc.parameters[contract.IMAGE_SIZE_PARAMETER].string_value == "40"
    assert enc.model_warmup[0].inputs[contract.IMAGES].zero_data
    agg = text_format.Parse(texts[contract.AGGREGATOR], pb.ModelConfig())
    (trt,) = agg.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.parameters["precision_mode"] == "FP32"
    assert trt.parameters["trt_profile_max_shapes"] == f"EMBEDDINGS:{contract.DEFAULT_MAX_BAG_CELLS}x16"
    assert agg.parameters[contract.THRESHOLD_PARAMETER].string_value == "0.25"
    assert list(agg.model_warmup[0].inputs[contract.EMBEDDINGS].dims) == [1000, 16]
