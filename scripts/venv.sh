#!/usr/bin/env bash
# Creates .venv with everything slamctl needs to train and to run its tests. Idempotent:
# it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch first and pinned: on these CPU machines the 2.13.0 CPU build lies on local disk,
  # while an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e '.[train,export,serve,dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
