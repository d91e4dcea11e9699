"""An INT8 encoder for servers without a GPU: ONNX Runtime's static quantisation.

`slamctl export --int8` quantises the encoder's convolutions and its projection (QDQ format:
QuantizeLinear/DequantizeLinear pairs that ONNX Runtime's CPU provider fuses into integer
kernels), per channel for the weights, with activation ranges calibrated on training cells
decoded exactly as the client decodes them. The aggregator stays FP32: it is small, and its
attention ranking must not drift.

`check_int8` is what `export validate --bags` runs for such a repository: the INT8 encoder
against the FP32 one (exported in-process from the same checkpoint) on held-out bags, both
through the served aggregator: every bag decision the same, and the top-K cells the same
to at least `MIN_TOP_K_OVERLAP` on average.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slamctl import contract
from slamctl.errors import SlamError

CALIBRATION_CELLS = 256
MIN_TOP_K_OVERLAP = 0.9


def calibration_cells(bags_dir: Path, size: int, image_size: int, n: int = CALIBRATION_CELLS) -> np.ndarray:
    """`n` cells of the training bags (the train split when there is one), spread over the
    bags, decoded as the client decodes them: uint8 (n, size, size, 3)."""
    from slamctl.images import prepare_cell
    from slamctl.training.bagset import load_bags

    bags = load_bags(bags_dir, split="train")
    files = [f for bag in bags for f in bag.files]
    if not files:
        raise SlamError(f"{bags_dir}: no cell images to calibrate the INT8 encoder on")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
    return np.stack([prepare_cell(f, image_size, size) for f in picked])


def quantize_encoder(fp32: Path, cells: np.ndarray, out: Path, batch: int = 32) -> Path:
    """The INT8 (QDQ) encoder of `fp32`, calibrated on `cells`, written to `out`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Cells(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(cells, max(1, len(cells) // batch)))

        def get_next(self) -> dict | None:
            images = next(self.batches, None)
            return None if images is None else {contract.IMAGES: np.ascontiguousarray(images)}

    prepared = out.with_name(out.stem + ".prepared.onnx")  # shapes inferred, Conv+Relu fused first
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(
        str(prepared),
        str(out),
        Cells(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return out


def check_int8(
    int8_encoder: Path,
    fp32_encoder,
    aggregator: Path,
    bags: list[tuple[str, list[Path]]],
    image_size: int,
    size: int,
    threshold: float,
    top_k: int,
) -> dict:
    """Bag decisions and top-K cells of the INT8 encoder against FP32 on `bags` (name, files)."""
    from slamctl.export.sessions import cpu_session
    from slamctl.images import prepare_cell

    encoders = {"int8": cpu_session(int8_encoder), "fp32": cpu_session(fp32_encoder)}
    agg = cpu_session(aggregator)
    same, overlaps, rows = 0, [], []
    for name, files in bags:
        images = np.stack([prepare_cell(f, image_size, size) for f in files])
        answers = {}
        for kind, enc in encoders.items():
            emb = np.concatenate(
                [enc.run(None, {contract.IMAGES: images[i : i + 64]})[0] for i in range(0, len(images), 64)]
            )
            probs, attention = agg.run(None, {contract.EMBEDDINGS: emb})
            answers[kind] = (float(probs[1]), np.argsort(-attention, kind="stable")[: min(top_k, len(files))])
        decided = [answers[k][0] >= threshold for k in ("int8", "fp32")]
        same += decided[0] == decided[1]
        overlap = len(set(answers["int8"][1]) & set(answers["fp32"][1])) / len(answers["fp32"][1])
        overlaps.append(overlap)
        rows.append((name, answers["fp32"][0], answers["int8"][0], overlap))
    return {
        "bags": len(bags),
        "same_decisions": same,
        "top_k_overlap": float(np.mean(overlaps)) if overlaps else float("nan"),
        "rows": rows,
    }


def quantized_pair(pair, bags_dir: Path, workdir: Path):
    """`pair` with its encoder quantised to INT8, calibrated on the cells of `bags_dir`."""
    import dataclasses

    import onnx

    fp32 = Path(workdir) / "encoder.fp32.onnx"
    onnx.save(pair.encoder, str(fp32))
    cells = calibration_cells(bags_dir, pair.size, pair.image_size)
    int8 = onnx.load(str(quantize_encoder(fp32, cells, Path(workdir) / "encoder.int8.onnx")))
    kept = {prop.key for prop in int8.metadata_props}
    for prop in pair.encoder.metadata_props:  # the same provenance as the FP32 graph
        if prop.key not in kept:
            int8.metadata_props.add(key=prop.key, value=prop.value)
    int8.metadata_props.add(key="slamctl_precision", value="int8")
    return dataclasses.replace(pair, encoder=int8, encoder_precision="int8")
