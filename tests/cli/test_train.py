from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint
from tests.conftest import run_cli

TINY_ARGS = ["--preset", "tiny", "--image-size", 40, "--crop-size", 32, "--width", 4, "--workers", 0]


def test_pretrain_runs_and_resumes(tiny_bags, tmp_path):
    r = run_cli("train", "pretrain", "--bags", tiny_bags, "--out", tmp_path, *TINY_ARGS, "--max-steps", 1)
    assert r.code == 0, r.err
    assert load_checkpoint(tmp_path / "checkpoint.pt", ENCODER_KIND)["step"] == 1
    r = run_cli(
        "train", "pretrain", "--bags", tiny_bags, "--out", tmp_path, *TINY_ARGS, "--resume", "--max-steps", 1
    )
    assert r.code == 0, r.err
    assert load_checkpoint(tmp_path / "checkpoint.pt", ENCODER_KIND)["step"] == 2


def test_pretrain_errors_are_one_line(tiny_bags, tmp_path):
    r = run_cli("train", "pretrain", "--bags", tmp_path / "missing", "--out", tmp_path / "run", *TINY_ARGS)
    assert r.code == 1 and "bag folder does not exist" in r.err and r.err.strip().count("\n") == 0
    r = run_cli(
        "train", "pretrain", "--bags", tiny_bags, "--out", tmp_path / "run", "--method", "byol", *TINY_ARGS
    )
    assert r.code == 2 and "'byol' is not one of" in r.out + r.err  # a typed choice: refused at parse time
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"garbage")
    r = run_cli("train", "pretrain", "--bags", tiny_bags, "--out", tmp_path / "bad", *TINY_ARGS, "--resume")
    assert r.code == 1 and "not a readable checkpoint" in r.err


def test_pretrain_under_torchrun_with_two_ranks(tiny_bags, tmp_path):
    """Two CPU ranks (gloo): per-task gradients all-reduced, rank 0 writes the checkpoint."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    bindir = Path(sys.executable).parent
    cmd = [
        shutil.which("torchrun", path=str(bindir)),
        "--nproc-per-node",
        "2",
        shutil.which("slamctl", path=str(bindir)),
        "train",
        "pretrain",
        "--bags",
        str(tiny_bags),
        "--out",
        str(tmp_path),
        *map(str, TINY_ARGS),
        "--max-steps",
        "2",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("checkpoint:") == 1
    assert load_checkpoint(tmp_path / "checkpoint.pt", ENCODER_KIND)["step"] == 2
