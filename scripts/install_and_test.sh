#!/usr/bin/env bash
# Install viewal into .venv (torch pinned to the locally cached build) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
# the Label Studio format's brush converter (label-studio-sdk) without the SDK's dependencies: the converter needs
# numpy alone, and the SDK's declared opencv-python-headless would replace opencv-contrib's cv2 (docs/labelling.md)
.venv/bin/pip install -q --no-deps 'label-studio-sdk>=2.0'
# Debian's chromium renders the HTML cycle report in tests/test_cycle_report.py (skipped without it)
if ! command -v chromium > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends chromium) \
        > /dev/null 2>&1 || echo "chromium could not be installed: the report's browser check will be skipped" >&2
fi
export NUMBA_THREADING_LAYER=omp
.venv/bin/python -m pytest -q -m "not slow" --durations=25 "$@"
