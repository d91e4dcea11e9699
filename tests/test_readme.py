"""Every command the README shows exists and takes the options it is shown with; the
stages themselves run in the other tests, the main job in .ci/run."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def code_lines():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.strip()]


def slamctl_commands():
    return [shlex.split(line)[1:] for line in code_lines() if line.startswith(".venv/bin/slamctl ")]


def test_the_two_setup_commands_exist():
    lines = code_lines()
    assert "./demo.sh" in lines and "./test.sh" in lines
    assert (
        "./test.sh" in (ROOT / ".ci" / "run").read_text()
        and "./demo.sh --quick" in (ROOT / ".ci" / "run").read_text()
    )


@pytest.mark.parametrize("args", slamctl_commands(), ids=lambda a: " ".join(a[:2]))
def test_readme_slamctl_command_takes_its_options(args):
    path = []
    for a in args:
        if a.startswith("-"):
            break
        path.append(a)
    # the longest prefix of words that is a command (the rest are arguments such as paths)
    while path:
        r = run_cli(*path, "--help")
        if r.code == 0 and "Usage" in r.out:
            break
        path.pop()
    assert path, args
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in r.out, f"{' '.join(path)} has no {option}"


@pytest.mark.parametrize("script", sorted(re.findall(r"\.venv/bin/python (benchmarks/\S+\.py)", README)))
def test_readme_benchmarks_exist_and_explain_themselves(script):
    r = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr


def test_readme_docker_targets_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for target in re.findall(r"docker build --target (\S+)", README):
        assert f"AS {target}" in dockerfile
