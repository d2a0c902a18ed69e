"""Where the real ScanNet sample (ViewAL's ``scannet-sample``, 37 frames) lives: one place.

``VIEWAL_SCANNET_SAMPLE`` overrides the default ``<repo>/../shared/data/viewal-scannet-sample``.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VIEWAL_SCANNET_SAMPLE"
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "viewal-scannet-sample"


def scannet_sample_path() -> Path:
    """Path of the real ScanNet sample (may not exist on a clone without ``../shared``)."""
    return Path(os.environ.get(ENV_VAR, DEFAULT))


def scannet_sample_available() -> bool:
    return (scannet_sample_path() / "raw" / "selections").is_dir()
