#!/usr/bin/env bash
# On the offline GPU host: checks, joins and installs the wheels of scripts/gpu_wheels.sh
# into its Python ($PYTHON, default python3), then slamctl itself (editable, nothing
# fetched). onnxruntime-gpu replaces a CPU onnxruntime: both are the module onnxruntime.
# Then, for instance: python3 benchmarks/gpu_export_check.py
#
#   scripts/gpu_install.sh [PARTS_DIR=.gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-.gpu}
py=${PYTHON:-python3}
if ! (cd "$parts" 2>/dev/null && sha256sum --check --status SHA256SUMS 2>/dev/null); then
  echo "gpu_install: $parts/ does not hold the parts its SHA256SUMS lists (made by scripts/gpu_wheels.sh);" \
    "present: $(ls "$parts" 2>/dev/null | tr '\n' ' ')" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$parts"/part-* | tar -x -C "$work"
if "$py" -m pip show -q onnxruntime 2>/dev/null; then
  "$py" -m pip uninstall -q -y onnxruntime
fi
pip_offline=(-m pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check)
"$py" "${pip_offline[@]}" --upgrade "$work"/*.whl
"$py" "${pip_offline[@]}" --no-build-isolation -e .
"$py" - <<'EOF'
import onnxruntime as ort

ort.preload_dlls()  # CUDA's libraries from the nvidia-* wheels, as the server loads them
print(f"onnxruntime {ort.__version__}: {ort.get_available_providers()}")
EOF
