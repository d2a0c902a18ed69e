#!/usr/bin/env bash
# The main job: install viewal, generate the default synthetic dataset, and run a short
# ViewAL-vs-baselines experiment (view_entropy vs random vs entropy) that ends with a table and a plot.
# CPU settings: every 3rd frame, resized to 96x128, ImageNet-started EfficientNet-Lite0 DeepLabv3+ (the default),
# 40 SGD steps per training at lr 1e-2 (the default) with one validation at its end, 1 seed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
export NUMBA_THREADING_LAYER=omp
start=$(date +%s)
[ -f data/demo/viewal.json ] || .venv/bin/viewal generate data/demo
.venv/bin/viewal preview data/demo -o runs/demo/preview.png
.venv/bin/viewal experiment --data data/demo --methods view_entropy,random,entropy --cycles 2 --budget 3 \
    --seeds 1 --frame-step 3 --size 96x128 --iterations 40 --validations 1 --mc-passes 3 --out runs/demo
echo "frames preview: runs/demo/preview.png; queries of the last cycle: runs/demo/queries_*.png"
echo "demo finished in $(( $(date +%s) - start )) s (after install)"
