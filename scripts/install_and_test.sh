#!/usr/bin/env bash
# Install viewal into .venv (torch pinned to the locally cached build) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
export NUMBA_THREADING_LAYER=omp
.venv/bin/python -m pytest -q -m "not slow" "$@"
