"""One distribution, one import package: the top-level folders install as `slamctl.*`."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
FOLDERS = ("training", "export", "serving", "client", "cli")  # installed as slamctl.<folder>


def test_the_wheel_holds_one_top_level_package(tmp_path):
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info into the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for folder in ("slamctl", *FOLDERS):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", tmp_path, src], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("slamctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"slamctl"}, tops
    for folder in FOLDERS:
        assert f"slamctl/{folder}/__init__.py" in names, folder
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slamctl = slamctl.cli.main:run" in zipfile.ZipFile(wheel).read(entry).decode()


def test_no_module_imports_the_old_top_level_names():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or path.is_relative_to(ROOT / "model_repository"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in mods if m.split(".")[0] in FOLDERS
            ]
    assert not offenders, offenders


def test_help_loads_neither_grpc_nor_torch():
    """`slamctl --help` (and every command's parse) starts without gRPC, Triton's client,
    torch or ONNX Runtime: their imports wait for the commands that use them."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom slamctl.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('grpc', 'tritonclient', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
