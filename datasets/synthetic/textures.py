"""Procedural textures: lattice value noise, its fractal sum, and the albedo of surface points under one of
eight patterns (plain, stripes, checker, noise, wood grain, planks, tiles, gradient), all pure NumPy."""
from __future__ import annotations

import numpy as np

__all__ = ["PLAIN", "STRIPES", "CHECKER", "NOISE", "WOOD", "PLANKS", "TILES", "GRADIENT", "value_noise", "fbm",
           "texture"]

# pattern ids
PLAIN, STRIPES, CHECKER, NOISE, WOOD, PLANKS, TILES, GRADIENT = range(8)


def _hash2(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Integer lattice hash → float in [0, 1). All inputs int64 arrays (broadcastable)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (seed * 83492791)
    h = (h & 0xFFFFFFFF).astype(np.uint64)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0x5BD1E995)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x27D4EB2D)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(1 << 24)


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1) at points (x, y) (any shape), lattice spacing 1."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a = _hash2(ix, iy, seed)
    b = _hash2(ix + 1, iy, seed)
    c = _hash2(ix, iy + 1, seed)
    d = _hash2(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fbm(x: np.ndarray, y: np.ndarray, seed: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, in [0, 1)."""
    out = np.zeros_like(x)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        out += amp * value_noise(x * (2 ** o), y * (2 ** o), seed + 7919 * o)
        tot += amp
        amp *= 0.5
    return out / tot


def texture(uv: np.ndarray, mats: dict[str, np.ndarray]) -> np.ndarray:
    """Albedo (N, 3) linear RGB of N surface points.

    Args:
        uv: (N, 2) surface coordinates in metres.
        mats: per-point material parameters: ``pattern`` (N,) int, ``c1``/``c2`` (N, 3), ``scale``,
            ``angle`` (N,) float, ``seed`` (N,) int.
    """
    pat, scale, ang, seed = mats["pattern"], mats["scale"], mats["angle"], mats["seed"]
    ca, sa = np.cos(ang), np.sin(ang)
    u = (uv[:, 0] * ca + uv[:, 1] * sa) / scale
    v = (-uv[:, 0] * sa + uv[:, 1] * ca) / scale
    t = np.zeros(len(uv))
    m = pat == PLAIN
    t[m] = 0.08 * (value_noise(u[m] * 4, v[m] * 4, seed[m]) - 0.5)
    m = pat == STRIPES
    t[m] = (np.mod(u[m], 1.0) < 0.5).astype(np.float64)
    m = pat == CHECKER
    t[m] = np.mod(np.floor(u[m]) + np.floor(v[m]), 2)
    m = pat == NOISE
    t[m] = np.clip((fbm(u[m], v[m], seed[m]) - 0.5) * 2.2 + 0.5, 0, 1)
    m = pat == WOOD
    if m.any():
        # grain along u: rings in v, distorted by low-frequency noise
        warp = fbm(u[m] * 0.08, v[m] * 0.5, seed[m], 2) * 6.0
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (v[m] + warp))
        t[m] = rings ** 3 * 0.8 + 0.2 * value_noise(u[m] * 0.5, v[m] * 8, seed[m] + 1)
    m = pat == PLANKS
    if m.any():
        # planks of width `scale` (across v), length 6*scale (along u), staggered per row
        row = np.floor(v[m])
        along = u[m] / 6.0 + 0.37 * row
        col = np.floor(along)
        shade = _hash2(row.astype(np.int64), col.astype(np.int64), seed[m])
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (np.mod(v[m], 1.0) * 3 + fbm(u[m] * 0.6, v[m] * 2, seed[m], 2) * 4))
        seam = (np.mod(v[m], 1.0) < 0.04) | (np.mod(along, 1.0) < 0.008)
        t[m] = np.where(seam, 1.0, 0.35 * grain ** 2 + 0.45 * shade)
    m = pat == TILES
    if m.any():
        fu, fv = np.mod(u[m], 1.0), np.mod(v[m], 1.0)
        grout = (fu < 0.03) | (fv < 0.03)
        jit = _hash2(np.floor(u[m]).astype(np.int64), np.floor(v[m]).astype(np.int64), seed[m])
        t[m] = np.where(grout, 1.0, 0.18 * jit + 0.1 * value_noise(u[m] * 6, v[m] * 6, seed[m]))
    m = pat == GRADIENT
    if m.any():
        t[m] = np.clip(0.5 + v[m] * 0.8 + 0.15 * (fbm(u[m] * 3, v[m] * 3, seed[m], 2) - 0.5), 0, 1)
    plain = pat == PLAIN
    out = mats["c1"] * (1 - t[:, None]) + mats["c2"] * t[:, None]
    out[plain] = mats["c1"][plain] * (1 + t[plain, None])
    return np.clip(out, 0, 1)
