"""scripts/gpu_install.sh installs nothing from parts that are not those scripts/gpu_wheels.sh
made: a missing or changed part is named in one line, before anything is unpacked."""

import hashlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def parts(folder: Path, *contents: bytes) -> Path:
    folder.mkdir()
    sums = []
    for i, data in enumerate(contents):
        (folder / f"part-{i:02d}").write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  part-{i:02d}\n")
    (folder / "SHA256SUMS").write_text("".join(sums))
    return folder


def install(folder: Path) -> subprocess.CompletedProcess:
    # PYTHON points nowhere: a run that got past the check would fail at its first pip call
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_install.sh"), str(folder)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": "/nonexistent/python"},
    )


@pytest.mark.parametrize("damage", ["missing", "changed", "no sums"])
def test_damaged_parts_are_refused_in_one_line(tmp_path, damage):
    folder = parts(tmp_path / "gpu", b"first", b"second")
    if damage == "missing":
        (folder / "part-01").unlink()
    elif damage == "changed":
        (folder / "part-01").write_bytes(b"secomd")
    else:
        (folder / "SHA256SUMS").unlink()
    r = install(folder)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"gpu_install: {folder}/ does not hold"), (
        r.stderr
    )


def test_intact_parts_pass_the_check(tmp_path):
    """The control: the same parts untouched get past the check, to the unpacking (not a tar)."""
    r = install(parts(tmp_path / "gpu", b"first", b"second"))
    assert "does not hold" not in r.stderr and r.returncode != 0
