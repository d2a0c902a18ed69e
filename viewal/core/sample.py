"""Where the real ScanNet sample (ViewAL's ``scannet-sample``, 37 frames) lives: one place.

``VIEWAL_SCANNET_SAMPLE`` names it; without it, ``data/viewal-scannet-sample`` of the source tree (the folder
beside the ``viewal`` package, where ``viewal generate`` and the tutorial keep their data).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VIEWAL_SCANNET_SAMPLE"
DEFAULT = Path(__file__).resolve().parents[2] / "data" / "viewal-scannet-sample"


def scannet_sample_path() -> Path:
    """Path of the real ScanNet sample: ``$VIEWAL_SCANNET_SAMPLE``, else :data:`DEFAULT` (may not exist)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT)


def scannet_sample_available() -> bool:
    return (scannet_sample_path() / "raw" / "selections").is_dir()
