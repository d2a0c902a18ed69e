"""viewal: 3D-aware active learning for semantic segmentation of RGB-D sequences.

ViewAL (Siddiqui et al., CVPR 2020) scores image regions by *view entropy* and *view divergence*:
the model's per-pixel class distributions are cross-projected between the views of a scene (depth,
pose, intrinsics, occlusion test), and regions whose views disagree are sent to a labeller.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

__version__ = "0.1.0"

_LAZY = {
    "ActiveLearner": "viewal.runs.learner",
    "ALConfig": "viewal.core.config",
    "RegionQuery": "viewal.runs.learner",
    "open_dataset": "viewal.datasets",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'viewal' has no attribute {name!r}")
