"""Dataset adapters (``viewal.datasets``): every format yields the same :class:`RGBDDataset` of lazy frames.

>>> from viewal.datasets import open_dataset            # doctest: +SKIP
>>> ds = open_dataset("data/demo")                       # doctest: +SKIP
>>> f = ds.frames(ds.scene_ids[0])[0]; f.rgb.shape, f.depth.dtype, f.K.shape   # doctest: +SKIP
((240, 320, 3), dtype('float32'), (3, 3))
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .base import IGNORE_INDEX, SPLITS, DatasetError, Frame, MissingLabelsError, RGBDDataset

__all__ = ["open_dataset", "FORMATS", "Frame", "RGBDDataset", "DatasetError", "MissingLabelsError", "IGNORE_INDEX",
           "SPLITS", "detect_format"]

# format name -> "module:function"; each function takes (path, **kwargs) and returns an RGBDDataset.
FORMATS: dict[str, str] = {
    "viewal": "viewal.datasets.canonical:read_canonical",
    "scannet": "viewal.datasets.scannet:read_scannet",
    "scenenet": "viewal.datasets.scenenet:read_scenenet",
    "matterport": "viewal.datasets.matterport:read_matterport",
    "viewal-original": "viewal.datasets.viewal_original:read_viewal_original",
}


def detect_format(path: Path) -> str:
    """Guess the format of a dataset directory from its files; error names the directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path does not exist: {path}")
    if (path / "viewal.json").is_file():
        return "viewal"
    if (path / "raw" / "selections").is_dir() or (path / "selections").is_dir() and (path / "raw").is_dir():
        return "viewal-original"
    for fmt in ("scannet", "scenenet", "matterport"):
        try:
            mod, _ = FORMATS[fmt].split(":")
            detector = getattr(importlib.import_module(mod), "looks_like", None)
        except ImportError:
            continue
        if detector is not None and detector(path):
            return fmt
    raise DatasetError(f"{path}: cannot tell the dataset format; pass format= one of {sorted(FORMATS)}")


def open_dataset(path: str | Path, format: str = "auto", **kwargs) -> RGBDDataset:
    """Open an RGB-D dataset directory.

    Args:
        path: dataset root.
        format: ``"auto"`` or one of :data:`FORMATS` (``viewal``, ``scannet``, ``scenenet``,
            ``matterport``, ``viewal-original``).
        **kwargs: passed to the format's reader (e.g. ``height``/``width`` working size).
    """
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: 'auto', {', '.join(map(repr, FORMATS))}")
    if not path.exists():
        raise FileNotFoundError(f"dataset path does not exist: {path}")
    try:
        found = detect_format(path)
    except DatasetError:
        found = None  # nothing recognisable: trust the explicit format (its reader names what is missing)
    if found is not None and found != format:
        raise DatasetError(f"{path}: format={format!r} was asked for, but the folder is in the {found!r} layout; "
                           f"pass format={found!r} or 'auto'")
    mod, fn = FORMATS[format].split(":")
    return getattr(importlib.import_module(mod), fn)(path, **kwargs)
