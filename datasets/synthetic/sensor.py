"""Depth-sensor effects on exact depth: Kinect-like noise with disparity quantisation, and holes."""
from __future__ import annotations

import math

import numpy as np

from .textures import fbm

__all__ = ["apply_sensor_effects"]


def apply_sensor_effects(
    depth: np.ndarray,
    rng: np.random.Generator,
    K: np.ndarray,
    cos_incidence: np.ndarray,
    noise: bool = True,
    holes: bool = False,
    no_return: np.ndarray | None = None,
) -> np.ndarray:
    """Kinect-like depth: noise σ(z) = 0.0012 + 0.0019 (z - 0.4)² m, disparity quantisation
    (1/8 px of a 580 px, 7.5 cm baseline sensor, whatever the output size), and optionally holes (random blobs,
    grazing angles > 80°, and ``no_return`` pixels such as window glass).

    Args:
        depth: (H, W) exact depth in metres (0 = invalid).
        cos_incidence: (H, W) |cos| of the angle between viewing ray and surface normal.
    """
    d = depth.astype(np.float64).copy()
    valid = d > 0
    if noise:
        sigma = 0.0012 + 0.0019 * (d - 0.4) ** 2
        d = d + rng.normal(size=d.shape) * sigma
        fb = 0.075 * 580.0 * 8.0  # Kinect v1: baseline 7.5 cm, 580 px focal length, 1/8 px disparity steps
        d = np.where(valid, fb / np.maximum(np.round(fb / np.maximum(d, 1e-3)), 1), 0.0)
    if holes:
        h, w = d.shape
        cell = w / 14.0  # blob size relative to the image width
        yy, xx = np.meshgrid(np.arange(h) / cell, np.arange(w) / cell, indexing="ij")
        seed = np.full(d.shape, int(rng.integers(1 << 30)), np.int64)
        blob = fbm(xx, yy, seed, 2)
        thr = rng.uniform(0.74, 0.8)
        d[blob > thr] = 0.0
        d[cos_incidence < math.cos(math.radians(80))] = 0.0
        if no_return is not None:
            d[no_return] = 0.0
        # a few isolated dropouts
        d[rng.random(d.shape) < 0.003] = 0.0
    d[~valid] = 0.0
    return d
