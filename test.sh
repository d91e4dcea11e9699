#!/usr/bin/env bash
# The test command: install what the tests need (.venv, and Debian's Prometheus, Pushgateway
# and Chromium as root), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/test_deps.sh
scripts/venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
