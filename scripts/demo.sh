#!/usr/bin/env bash
# The main job: install viewal, generate the default synthetic dataset, and draw a picture of it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
export NUMBA_THREADING_LAYER=omp
.venv/bin/viewal generate data/demo
.venv/bin/viewal preview data/demo -o runs/demo/preview.png
echo "preview written to runs/demo/preview.png"
