from tests.conftest import run_cli
from training.checkpoint import ENCODER_KIND, load_checkpoint

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
    assert r.code == 1 and "--method: expected one of slam-ags" in r.err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"garbage")
    r = run_cli("train", "pretrain", "--bags", tiny_bags, "--out", tmp_path / "bad", *TINY_ARGS, "--resume")
    assert r.code == 1 and "not a readable checkpoint" in r.err
