"""`slamctl export`: checkpoints -> ONNX -> Triton model repository; `export validate`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from slamctl import contract
from slamctl.cli.console import err, styled
from slamctl.cli.console import out as stdout
from slamctl.cli.options import WeightsOption
from slamctl.errors import SlamError
from slamctl.export.settings import RepositorySettings  # no onnx, no gRPC: the defaults of export

app = typer.Typer(
    help="Export encoder and aggregator to a Triton model repository, or validate one.",
    invoke_without_command=True,
)


@app.callback()
def export(
    ctx: typer.Context,
    encoder: Annotated[
        str | None,
        typer.Option(help="Pretraining checkpoint (RUN/checkpoint.pt), or dinobloom-s/b/l/g with --weights."),
    ] = None,
    aggregator: Annotated[Path | None, typer.Option(help="MIL checkpoint (RUN/mil.pt).")] = None,
    weights: WeightsOption = None,
    repository: Annotated[Path, typer.Option(help="Model repository to write.")] = Path("model_repository"),
    version: Annotated[int | None, typer.Option(help="Version to write (default: the next one).")] = None,
    max_bag_cells: Annotated[
        int, typer.Option(help="Largest bag the aggregator serves.")
    ] = contract.DEFAULT_MAX_BAG_CELLS,
    trt_cache: Annotated[
        str, typer.Option(help="TensorRT engine cache path on the server.")
    ] = RepositorySettings.trt_cache_dir,
    allow_degenerate: Annotated[
        bool,
        typer.Option(
            "--allow-degenerate",
            help="Export an aggregator flagged degenerate by train mil (it decides nothing).",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Training bag folder for the model card (digest, counts per label; default: the "
            "folder the encoder checkpoint names)."
        ),
    ] = None,
    evaluation: Annotated[
        Path | None,
        typer.Option(
            help="`slamctl evaluate`'s summary.json for the model card (default: eval/summary.json "
            "beside the aggregator, if there is one)."
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="For servers without a GPU: quantise the encoder to INT8 (ONNX Runtime, QDQ, calibrated "
            "on training cells) and write CPU configs (KIND_CPU, no TensorRT). Check it with "
            "`export validate --encoder --aggregator --bags`.",
        ),
    ] = False,
) -> None:
    """Export both models to ONNX and write the Triton repository (config.pbtxt, versions, manifest)."""
    if ctx.invoked_subcommand is not None:
        return
    if encoder is None or aggregator is None:
        raise typer.BadParameter(
            "both --encoder and --aggregator are needed", param_hint="--encoder/--aggregator"
        )
    from slamctl.export.model_card import MODEL_CARD_JSON, MODEL_CARD_MD, dataset_facts, read_evaluation
    from slamctl.export.onnx_export import export_pair
    from slamctl.export.repository import write_repository

    with tempfile.TemporaryDirectory() as tmp:
        with err.status("exporting to ONNX"):
            pair = export_pair(
                encoder, aggregator, Path(tmp), weights=weights, allow_degenerate=allow_degenerate
            )
        if int8:
            from slamctl.export.quantize import quantized_pair

            calibration = data or pair.data_dir
            if calibration is None:
                raise SlamError(
                    "--int8: the encoder checkpoint names no training folder: pass --data BAGS to calibrate on"
                )
            with err.status(f"quantising the encoder to INT8 (calibrated on {calibration})"):
                pair = quantized_pair(pair, calibration, Path(tmp))
        settings = RepositorySettings(
            max_bag_cells=max_bag_cells, trt_cache_dir=trt_cache, device="cpu" if int8 else "gpu"
        )
        sources = {  # the checkpoints' sha256, as export_pair hashed them
            "encoder_checkpoint": str(weights or encoder),
            "encoder": pair.training["pretraining"]["encoder"],
            "encoder_sha256": pair.training["pretraining"]["checkpoint_sha256"],
            "aggregator_checkpoint": str(aggregator),
            "aggregator_sha256": pair.training["aggregator"]["checkpoint_sha256"],
        }
        with err.status("digesting the training data for the model card"):
            facts = dataset_facts(data or pair.data_dir)
        summary = read_evaluation(evaluation or aggregator.parent / "eval" / "summary.json")
        v = write_repository(
            pair,
            repository,
            version=version,
            settings=settings,
            sources=sources,
            data=facts,
            evaluation=summary,
        )
    err.print(
        f"wrote version {v} of {contract.ENCODER} (S={pair.size}, D={pair.dim}, {pair.features}), "
        f"{contract.AGGREGATOR} (threshold {pair.threshold:.3f}) and {contract.MODEL_CARD} to {repository}"
    )
    folder = repository / contract.MODEL_CARD / str(v)
    card = json.loads((folder / MODEL_CARD_JSON).read_text())
    stdout.print(f"model id {card['model_id']}", highlight=False)  # what infer --expect-model pins
    err.print(f"model card: {folder / MODEL_CARD_MD}")


@app.command()
def validate(
    repository: Annotated[Path, typer.Argument(help="Model repository to check.")],
    encoder: Annotated[
        str | None,
        typer.Option(
            help="With --aggregator: check parity with PyTorch (a checkpoint, or dinobloom-* with --weights)."
        ),
    ] = None,
    aggregator: Annotated[Path | None, typer.Option(help="MIL checkpoint for the parity check.")] = None,
    weights: WeightsOption = None,
    bags: Annotated[
        Path | None,
        typer.Option(
            help="For an INT8 repository: held-out bags (the test split) on which the INT8 encoder "
            "must give FP32's decisions and top-K cells."
        ),
    ] = None,
) -> None:
    """Check a repository: configs parse and match the ONNX graphs, checksums, ONNX Runtime runs, parity."""
    from slamctl.export.validate import validate_repository

    checks = validate_repository(repository, encoder, aggregator, weights=weights, bags=bags)
    table = Table(title=f"validation of {repository}")
    for col in ("model", "check", "result", "detail"):
        table.add_column(col)
    for c in checks.items:
        table.add_row(c.model, c.name, Text("ok", "green") if c.ok else Text("FAIL", "red"), c.detail)
    stdout.print(table)
    for c in checks.failures:
        err.print(styled("FAIL", "red", f" {c.model}: {c.name}: {c.detail}"), soft_wrap=True)
    if checks.failures:
        raise typer.Exit(code=1)
    stdout.print(f"{len(checks.items)} checks passed")
