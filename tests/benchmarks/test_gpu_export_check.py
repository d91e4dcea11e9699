"""benchmarks/gpu_export_check.py runs on GPU hosts only, whose time is scarce: its rehearsal
(the CPU provider in the GPU's place) runs every step here, and its check that a provider is
really in use is shown to catch ONNX Runtime's silent fall-back to the CPU."""

import subprocess
import sys
from pathlib import Path

import pytest

from slamctl import contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import client_pipeline  # noqa: E402
import gpu_export_check  # noqa: E402
import shared_memory  # noqa: E402


@pytest.mark.slow
def test_rehearsal_runs_every_step_and_names_the_servers_provider():
    cmd = [sys.executable, "benchmarks/gpu_export_check.py", "--rehearse", "--preset", "tiny"]
    r = subprocess.run(
        [*cmd, "--cells", "30", "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CPU (rehearsal): embeddings max|diff| 0.00e+00, bag probs max|diff| 0.00e+00" in r.stdout
    assert "top-10 identical" in r.stdout
    assert "batch  64:" in r.stdout and "batch 256:" in r.stdout
    assert "30 cells of 250 px, encoder at 64 px (D=128) on the server's CPUExecutionProvider" in r.stdout
    for wire in ("pixels", "encoded"):
        assert any(line.split()[:2] == [wire, "gRPC"] and "--shm" in line for line in r.stdout.splitlines())
    assert "3. ViT-S/14 (DinoBloom-S) at 224 px, D=384:" in r.stdout
    assert "CPU (rehearsal): embeddings max|diff| 0.00e+00, worst cosine 1.000000" in r.stdout
    assert "batch   4:" in r.stdout


def test_without_a_gpu_it_checks_nothing_and_exits_0():
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_export_check.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.startswith("no GPU here"), r.stdout + r.stderr


def test_a_provider_that_fell_back_to_the_cpu_is_not_timed(tiny_models, tmp_path):
    """ONNX Runtime asked for CUDA where it cannot run falls back to the CPU; the check says so."""
    import onnx

    from slamctl.export.onnx_export import export_pair

    pair = export_pair(tiny_models.encoder, tiny_models.aggregator, tmp_path, allow_degenerate=True)
    onnx.save(pair.encoder, tmp_path / "model.onnx")
    sess, why = gpu_export_check.session(
        tmp_path / "model.onnx", [gpu_export_check.CUDA, "CPUExecutionProvider"]
    )
    assert sess is None and "CUDAExecutionProvider not in use" in why
    sess, why = gpu_export_check.session(tmp_path / "model.onnx", ["CPUExecutionProvider"])
    assert sess is not None and why == ""


def test_the_servers_provider_is_read_from_its_log(tmp_path):
    log = tmp_path / "serve.log"
    log.write_text(f"... loaded {contract.ENCODER} version 3 (/m/1/model.onnx) on CUDAExecutionProvider\n")
    assert shared_memory.served_provider(log) == "CUDAExecutionProvider"
    log.write_text("tritonserver exited\n")
    assert shared_memory.served_provider(log).startswith("unknown")


def test_a_failed_client_run_says_why(tiny_bags, tmp_path):
    """The served part's clients run as subprocesses: their one-line error comes back."""
    bag = next(p for p in sorted(tiny_bags.iterdir()) if p.is_dir())
    with pytest.raises(SystemExit, match=r"exit 1\): error: cannot reach a Triton server at 127.0.0.1:1"):
        client_pipeline.infer_with_rss(bag, "127.0.0.1:1", tmp_path / "out")
