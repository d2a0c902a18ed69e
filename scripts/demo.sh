#!/usr/bin/env bash
# The main job: install viewal, generate a small synthetic dataset, and run a short ViewAL-vs-baselines
# experiment (view_entropy vs random vs entropy) that ends with a table and a plot.
# The benchmark's regime, scaled down for 2 CPU cores: 24 rooms x 5 views generated at 96x128 (split by room:
# 16 / 4 / 4), the ImageNet-started EfficientNet-Lite0 DeepLabv3+ (the default) at lr 1e-2 (the default), and
# steps that grow with the labels: 4 passes over the labelled frames per fit, at least 40 steps (the floor is
# what the demo's small fits run); one validation per fit, 1 seed, no full-data reference (it would cost more
# steps than any fit). A 2.5 % seed set (2 frames; ViewAL's is 1.5 %), two cycles of 4 % of the pool's pixels,
# and --warm-start: each cycle's fit continues from the previous cycle's model, because 40 steps from the
# ImageNet start cannot absorb new labels (README, "Set-up commands"). Every method propagates its labels to the
# other views in 3D (the cpu preset's default). Each run starts over (--overwrite).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
export NUMBA_THREADING_LAYER=omp
start=$(date +%s)
[ -f data/demo-small/viewal.json ] || .venv/bin/viewal generate data/demo-small --scenes 24 --frames 5 --height 96 --width 128
.venv/bin/viewal preview data/demo-small -o runs/demo/preview.png
.venv/bin/viewal experiment --data data/demo-small --methods view_entropy,random,entropy --cycles 2 --budget 4 \
    --seed-fraction 0.025 --warm-start --seeds 1 --size 96x128 --epochs 4 --iterations 40 --validations 1 \
    --mc-passes 3 --no-full-data --out runs/demo --overwrite
.venv/bin/python scripts/demo_check.py --run runs/demo \
    || echo "demo: the learning check failed (above)"   # per cycle: frames, steps, test mIoU; did it learn?
echo "frames preview: runs/demo/preview.png; queries of the last cycle: runs/demo/queries_*.png"
echo "demo finished in $(( $(date +%s) - start )) s (after install)"
