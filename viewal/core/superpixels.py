"""Superpixels (SEEDS, SLIC) per frame, computed once and cached beside the dataset.

ViewAL pools pixel scores over superpixels and labels whole superpixels. It made them with the
reSEEDS command-line tool (``--superpixels 40 --spatial-weight 0.2 --iterations 10``), which gives
42 regions on every 320×240 frame of its ScanNet sample. viewal uses OpenCV's SEEDS
(``cv2.ximgproc.createSuperpixelSEEDS``), which has no spatial weight, and SLIC as an alternative.

**SEEDS quantises the count.** OpenCV's SEEDS starts from a grid of equal blocks, so the number of
superpixels is the number of top-level blocks, which jumps between a few values: for 320×240 and
``num_levels=4`` any ``num_superpixels`` in 34-47 gives 25 blocks, 48-85 gives 48, 86-129 gives 70.
``num`` here is therefore a *target*: :func:`seeds_argument` picks the ``num_superpixels`` argument whose
grid count is closest to it. The default ``num=40`` gives the 48-block grid at 320×240 (of the grids
SEEDS can make, 25 and 48, the nearest to 40; ViewAL's reSEEDS gave 42). Measured on the default
synthetic dataset (``viewal generate data/demo``: 240 frames at 320×240;
``viewal superpixels data/demo --stats``): SEEDS, defaults: 48 regions on every frame (mean 48.0,
min 48, max 48). SLIC (SLICO) with ``num=40`` (region size 44 px, a 7×5 grid, small fragments merged):
mean 34.8, min 32, max 37. On the 37 real ScanNet frames of ViewAL's sample: SEEDS 48 on every frame
(ViewAL's own reSEEDS files: 42), SLIC mean 35.0. Cost (2 shared cores, contended): SEEDS ~35 ms, SLIC ~100 ms
per frame.

Output of every method: (H, W) int32 ids ``0..R-1``, contiguous (relabelled in raster order of first
appearance). A SEEDS superpixel need not be connected.

Cache: ``<root>/.viewal_cache/superpixels/<method>-<hash>/<scene>/<frame>.png`` (16-bit PNG, atomic
writes; ``cache_dir=`` / ``--cache-dir`` puts it elsewhere), where ``<hash>`` covers the method, every setting
and the image size, so a changed setting never reads a stale cache. ``settings.json`` in that directory records
what the hash stands for.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.io import read_image, write_image, write_json
from viewal.core.progress import progress_bar

__all__ = [
    "METHODS", "DEFAULTS", "seeds", "slic", "relabel", "seeds_grid_count", "seeds_argument",
    "compute_superpixels", "superpixels_for_frame", "SuperpixelCache", "compute_all", "settings_hash",
    "count_stats", "CACHE_DIR",
]

CACHE_DIR = Path(".viewal_cache") / "superpixels"
CACHE_VERSION = 1

DEFAULTS: dict[str, dict[str, Any]] = {
    # SEEDS on Lab colour; num is a target count (see module docstring)
    "seeds": {"num": 40, "levels": 4, "prior": 2, "bins": 5, "iterations": 10, "double_step": False},
    # SLICO (parameter-free compactness) with region size sqrt(H W / num)
    "slic": {"num": 40, "ruler": 10.0, "iterations": 10, "algorithm": "slico", "min_size": 0.25},
}
METHODS = tuple(DEFAULTS)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Contiguous ids: (H, W) integer labels → (H, W) int32 ids 0..R-1 in raster order of first appearance."""
    labels = np.asarray(labels)
    _, first, inv = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each unique value by first appearance
    return order[inv].reshape(labels.shape).astype(np.int32)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"superpixels: rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    return rgb


def seeds_grid_count(height: int, width: int, num_superpixels: int, levels: int = 4) -> int:
    """Number of top-level blocks OpenCV SEEDS makes for this size and argument (what it really gives)."""
    import cv2

    return int(cv2.ximgproc.createSuperpixelSEEDS(width, height, 3, int(num_superpixels), int(levels))
               .getNumberOfSuperpixels())


_ARG_CACHE: dict[tuple[int, int, int, int], int] = {}


def seeds_argument(height: int, width: int, target: int, levels: int = 4) -> int:
    """The ``num_superpixels`` argument whose SEEDS grid count is closest to ``target`` (smallest on ties)."""
    key = (height, width, int(target), int(levels))
    if key not in _ARG_CACHE:
        best = None
        for n in range(max(2, target // 3), 3 * target + 2):
            err = abs(seeds_grid_count(height, width, n, levels) - target)
            if best is None or err < best[0]:
                best = (err, n)
        _ARG_CACHE[key] = best[1]
    return _ARG_CACHE[key]


def seeds(rgb: np.ndarray, num: int = 40, levels: int = 4, prior: int = 2, bins: int = 5, iterations: int = 10,
          double_step: bool = False) -> np.ndarray:
    """SEEDS superpixels of an RGB image (H, W, 3) uint8 → (H, W) int32 contiguous ids.

    ``num`` is a target count: SEEDS can only make a few grid counts (see module docstring).
    """
    import cv2

    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    s = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, seeds_argument(h, w, num, levels), int(levels), int(prior),
                                           int(bins), bool(double_step))
    s.iterate(lab, int(iterations))
    return relabel(s.getLabels())


def slic(rgb: np.ndarray, num: int = 40, ruler: float = 10.0, iterations: int = 10, algorithm: str = "slico",
         min_size: float = 0.25) -> np.ndarray:
    """SLIC superpixels (OpenCV ximgproc) of an RGB image → (H, W) int32 contiguous ids.

    Region size ``round(sqrt(H W / num))``; ``ruler`` is SLIC's compactness (ignored by SLICO);
    segments smaller than ``min_size`` × the region area are merged into neighbours.
    """
    import cv2

    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    algos = {"slic": cv2.ximgproc.SLIC, "slico": cv2.ximgproc.SLICO, "mslic": cv2.ximgproc.MSLIC}
    if algorithm not in algos:
        raise ValueError(f"slic: algorithm must be one of {sorted(algos)}, got {algorithm!r}")
    size = max(4, int(round(np.sqrt(h * w / max(1, num)))))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    s = cv2.ximgproc.createSuperpixelSLIC(lab, algos[algorithm], size, float(ruler))
    s.iterate(int(iterations))
    s.enforceLabelConnectivity(max(1, int(min_size * 100)))
    return relabel(s.getLabels())


_FUNCS = {"seeds": seeds, "slic": slic}


def resolve_settings(method: str, **settings) -> dict[str, Any]:
    """Defaults of ``method`` updated with ``settings``; unknown names raise an error listing valid ones."""
    if method not in DEFAULTS:
        raise ValueError(f"unknown superpixel method {method!r}; valid: {', '.join(METHODS)}")
    out = dict(DEFAULTS[method])
    bad = sorted(set(settings) - set(out))
    if bad:
        raise ValueError(f"unknown {method} setting(s) {bad}; valid: {sorted(out)}")
    out.update({k: v for k, v in settings.items() if v is not None})
    return out


def compute_superpixels(rgb: np.ndarray, method: str = "seeds", **settings) -> np.ndarray:
    """Superpixels of an RGB image (H, W, 3) uint8 → (H, W) int32 ids 0..R-1."""
    resolved = resolve_settings(method, **settings)
    return _FUNCS[method](rgb, **resolved)


def superpixels_for_frame(frame, method: str = "seeds", **settings) -> np.ndarray:
    """Superpixels of a :class:`viewal.datasets.Frame` (computed, not cached) → (H, W) int32."""
    return compute_superpixels(frame.rgb, method, **settings)


def settings_hash(method: str, settings: dict[str, Any], size: tuple[int, int]) -> str:
    """Short hash of everything that determines the output (method, settings, image size, cache version)."""
    blob = json.dumps({"method": method, "settings": settings, "size": list(size), "version": CACHE_VERSION},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


class SuperpixelCache:
    """Per-frame superpixels cached under ``<root>/.viewal_cache/superpixels/<method>-<hash>/``.

    Args:
        root: dataset root (the cache lives beside the data).
        method: ``"seeds"`` or ``"slic"``.
        size: (H, W) of the frames; taken from the first frame's RGB when omitted.
        cache_dir: where to keep the cache instead of ``<root>/.viewal_cache/superpixels`` (for a
            dataset directory that must stay untouched).
        **settings: method settings (see :data:`DEFAULTS`); part of the cache key.
    """

    def __init__(self, root: str | Path, method: str = "seeds", size: tuple[int, int] | None = None,
                 cache_dir: str | Path | None = None, **settings):
        self.root = Path(root)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / CACHE_DIR
        self.method = method
        self.settings = resolve_settings(method, **settings)
        self.size = tuple(size) if size is not None else None
        self.hits = 0
        self.misses = 0

    def directory(self, size: tuple[int, int] | None = None) -> Path:
        size = size or self.size
        if size is None:
            raise ValueError("SuperpixelCache.directory: image size unknown (pass size= or call get(frame) first)")
        return self.cache_dir / f"{self.method}-{settings_hash(self.method, self.settings, size)}"

    def path(self, frame, size: tuple[int, int] | None = None) -> Path:
        return self.directory(size) / frame.scene_id / f"{frame.frame_id}.png"

    def get(self, frame) -> np.ndarray:
        """(H, W) int32 superpixel ids of ``frame``: read from the cache, or computed and stored."""
        if self.size is None:
            self.size = tuple(frame.rgb.shape[:2])
        path = self.path(frame)
        if path.is_file():
            ids = read_image(path, rgb=False)
            if ids.shape != self.size:
                raise ValueError(f"{path}: cached superpixels have shape {ids.shape}, expected {self.size}")
            self.hits += 1
            return ids.astype(np.int32)
        ids = superpixels_for_frame(frame, self.method, **self.settings)
        if ids.shape != self.size:
            raise ValueError(f"frame {frame.key}: image size {ids.shape} differs from the cache's {self.size}")
        if ids.max() > 65535:
            raise ValueError(f"frame {frame.key}: {ids.max() + 1} superpixels do not fit a 16-bit PNG")
        settings_file = self.directory() / "settings.json"
        if not settings_file.is_file():
            write_json(settings_file, {"method": self.method, "settings": self.settings, "size": list(self.size),
                                       "version": CACHE_VERSION})
        write_image(path, ids.astype(np.uint16), rgb=False)
        self.misses += 1
        return ids


def compute_all(dataset, method: str = "seeds", progress: bool = True, cache_dir: str | Path | None = None,
                **settings) -> SuperpixelCache:
    """Compute (or find cached) superpixels of every frame of ``dataset``; returns the cache."""
    cache = SuperpixelCache(dataset.root, method, size=(dataset.height, dataset.width), cache_dir=cache_dir,
                            **settings)
    for frame in progress_bar(list(dataset.all_frames()), desc=f"superpixels ({method})", unit="frame",
                              disable=not progress):
        cache.get(frame)
    return cache


def count_stats(cache: SuperpixelCache, dataset) -> dict[str, float]:
    """Mean/min/max number of superpixels per frame (reads the cache)."""
    counts = [int(cache.get(f).max()) + 1 for f in dataset.all_frames()]
    return {"mean": float(np.mean(counts)), "min": int(np.min(counts)), "max": int(np.max(counts)),
            "frames": len(counts)}
