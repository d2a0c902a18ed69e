"""Materials: colour palettes shared between classes (so colour alone does not give the class) and
:func:`make_material`, a random :class:`Material` (texture pattern, two colours, scale) of a palette kind."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .textures import CHECKER, GRADIENT, NOISE, PLAIN, PLANKS, STRIPES, TILES, WOOD

__all__ = ["PALETTES", "Material", "make_material"]

# Palettes in sRGB 0..255. Several classes draw from each, so colour alone does not give the class.
PALETTES: dict[str, list[tuple[int, int, int]]] = {
    "wood": [(150, 100, 60), (120, 80, 45), (190, 150, 100), (90, 60, 40), (210, 180, 140), (165, 120, 75),
             (110, 70, 50)],
    "paint": [(235, 232, 225), (220, 215, 200), (200, 205, 210), (180, 200, 190), (230, 210, 190),
              (190, 190, 200), (242, 242, 240), (170, 185, 205), (215, 190, 170), (160, 170, 150)],
    "fabric": [(70, 90, 140), (140, 60, 60), (80, 120, 90), (120, 120, 130), (180, 160, 130), (60, 60, 70),
               (150, 130, 170), (200, 120, 80), (90, 140, 160), (170, 150, 110)],
    "metal": [(60, 60, 65), (150, 150, 155), (35, 35, 38), (190, 190, 195), (120, 110, 100)],
    "green": [(50, 110, 40), (70, 140, 60), (40, 90, 50), (90, 130, 50), (60, 120, 80)],
    "ceramic": [(170, 90, 60), (220, 220, 215), (60, 70, 90), (200, 180, 150), (140, 60, 50)],
    "screen": [(20, 22, 30), (15, 15, 18), (30, 35, 50)],
    "sky": [(165, 200, 235), (200, 222, 242), (150, 185, 225)],
}


@dataclass
class Material:
    """Procedural texture: ``pattern`` mixes colours ``c1``/``c2`` (linear RGB 0..1) at ``scale`` metres."""

    pattern: int
    c1: np.ndarray
    c2: np.ndarray
    scale: float = 0.1
    angle: float = 0.0
    seed: int = 0
    emissive: bool = False


def _lin(c) -> np.ndarray:
    return (np.asarray(c, dtype=np.float64) / 255.0) ** 2.2


def _jitter(rng: np.random.Generator, c, amount: float = 0.12) -> np.ndarray:
    """Per-instance colour variation: brightness and per-channel jitter, in sRGB."""
    c = np.asarray(c, dtype=np.float64) * rng.uniform(1 - amount, 1 + amount)
    c = c * rng.uniform(1 - amount / 2, 1 + amount / 2, size=3)
    return _lin(np.clip(c, 0, 255))


def _pick(rng: np.random.Generator, palette: str):
    p = PALETTES[palette]
    return p[rng.integers(len(p))]


def _bright(rng: np.random.Generator) -> np.ndarray:
    h = rng.uniform(0, 1)
    s = rng.uniform(0.4, 0.9)
    v = rng.uniform(0.5, 0.95)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return _lin(np.array(rgb) * 255)


def make_material(rng: np.random.Generator, kind: str) -> Material:
    """A random material of a palette ``kind`` (wood, paint, fabric, metal, green, ceramic, bright,
    screen, sky, floor, rug, cardboard)."""
    seed = int(rng.integers(1 << 30))
    angle = float(rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05))
    if kind == "wood":
        c1 = _jitter(rng, _pick(rng, "wood"))
        if rng.random() < 0.75:
            return Material(WOOD, c1, c1 * rng.uniform(0.55, 0.8), rng.uniform(0.015, 0.05), angle, seed)
        return Material(PLAIN, c1, c1, 0.1, angle, seed)
    if kind == "paint":
        c1 = _jitter(rng, _pick(rng, "paint"), 0.06)
        r = rng.random()
        if r < 0.55:
            return Material(PLAIN, c1, c1, 0.1, angle, seed)
        if r < 0.8:
            return Material(NOISE, c1, c1 * rng.uniform(0.8, 0.92), rng.uniform(0.05, 0.3), angle, seed)
        c2 = _jitter(rng, _pick(rng, "paint"), 0.06)
        return Material(STRIPES, c1, c2, rng.uniform(0.05, 0.25), angle, seed)
    if kind in ("fabric", "rug"):
        c1 = _jitter(rng, _pick(rng, "fabric"))
        c2 = _jitter(rng, _pick(rng, "fabric" if rng.random() < 0.6 else "paint"))
        probs = [0.3, 0.25, 0.2, 0.25] if kind == "fabric" else [0.05, 0.4, 0.3, 0.25]
        pat = int(rng.choice([PLAIN, STRIPES, CHECKER, NOISE], p=probs))
        if pat == NOISE:
            c2 = c1 * rng.uniform(0.6, 0.85)
        return Material(pat, c1, c2, rng.uniform(0.04, 0.2), angle, seed)
    if kind == "metal":
        c1 = _jitter(rng, _pick(rng, "metal"), 0.08)
        pat = PLAIN if rng.random() < 0.6 else NOISE
        return Material(pat, c1, c1 * 0.85, rng.uniform(0.02, 0.1), angle, seed)
    if kind == "green":
        c1 = _jitter(rng, _pick(rng, "green"), 0.15)
        return Material(NOISE, c1, c1 * rng.uniform(0.35, 0.6), rng.uniform(0.02, 0.06), angle, seed)
    if kind == "ceramic":
        c1 = _jitter(rng, _pick(rng, "ceramic"))
        pat = PLAIN if rng.random() < 0.6 else STRIPES
        return Material(pat, c1, c1 * 0.7, rng.uniform(0.03, 0.08), 0.0, seed)
    if kind == "bright":
        c1, c2 = _bright(rng), _bright(rng)
        pat = int(rng.choice([NOISE, STRIPES, CHECKER, GRADIENT]))
        return Material(pat, c1, c2, rng.uniform(0.03, 0.2), float(rng.uniform(0, math.pi)), seed)
    if kind == "cardboard":
        c1 = _jitter(rng, (175, 135, 90), 0.1)
        return Material(NOISE, c1, c1 * 0.85, 0.05, angle, seed)
    if kind == "screen":
        c1 = _jitter(rng, _pick(rng, "screen"), 0.1)
        c2 = c1 * 2.5 + 0.02 if rng.random() < 0.5 else _bright(rng) * 0.25
        return Material(int(rng.choice([GRADIENT, NOISE])), c1, c2, rng.uniform(0.1, 0.4), 0.0, seed)
    if kind == "sky":
        c1 = _jitter(rng, _pick(rng, "sky"), 0.05)
        c2 = _lin((235, 240, 245)) if rng.random() < 0.6 else _jitter(rng, (90, 130, 70), 0.2)
        return Material(GRADIENT, c1, c2, 1.0, math.pi / 2, seed, emissive=True)
    if kind == "floor":
        r = rng.random()
        if r < 0.45:
            c1 = _jitter(rng, _pick(rng, "wood"))
            return Material(PLANKS, c1, c1 * rng.uniform(0.6, 0.8), rng.uniform(0.12, 0.22), angle, seed)
        if r < 0.75:
            c1 = _jitter(rng, _pick(rng, "paint" if rng.random() < 0.6 else "ceramic"), 0.1)
            return Material(TILES, c1, c1 * 0.5, rng.uniform(0.3, 0.6), angle, seed)
        c1 = _jitter(rng, _pick(rng, "fabric"))
        return Material(NOISE, c1, c1 * 0.75, 0.03, angle, seed)
    raise ValueError(f"unknown material kind {kind!r}")
