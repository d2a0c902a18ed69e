"""Synthetic multi-view RGB-D indoor scenes, ray-cast with Open3D (the package's embedded dataset).

Each scene is a closed room (walls, floor, ceiling, a door and a window set into wall openings) with
furniture built from primitives (boxes, cylinders/frusta, ellipsoids): tables, chairs, sofas, beds,
cabinets, shelves, lamps, TVs/monitors, pictures, plants, boxes (clutter) and rugs. Sizes, layout,
colours and procedural textures (plain, stripes, checker, value noise, wood grain, planks, tiles,
gradients) vary per scene and per instance, and several classes draw from the same colour palettes
(wood, paint, fabric, metal), so that colour alone does not give the class.

A camera walks a smooth loop through the room at eye height (1.2-1.7 m) with a small roll, looking
across the room at its contents; consecutive views overlap heavily and objects occlude each other.
Every frame is one ray cast (``o3d.t.geometry.RaycastingScene``): labels come from the geometry id
hit, depth is the hit's z in the camera frame (``t_hit * d_z`` for a unit ray direction ``d`` in the
camera frame; *not* the ray length), RGB is the procedural albedo under Lambert shading from 1-3
point lights plus ambient, with cast shadows from a second (occlusion) ray per light.

Optional sensor effects (labels and RGB stay exact): ``depth_noise`` adds depth-proportional
Gaussian noise (Kinect-like σ(z) = 1.2 mm + 1.9 mm·(z-0.4)²) quantised in disparity steps;
``holes`` zeroes random blobs and pixels seen at grazing angles (> 80° from the surface normal).

Output: the canonical layout (:mod:`viewal.datasets.canonical`), splits by scene (70/15/15 %,
at least one scene each when there are ≥ 3 scenes). Deterministic: the same arguments give
byte-identical files.

Command line: ``viewal generate OUT [--scenes N] [--frames F] [--height H] [--width W] [--seed S]
[--depth-noise] [--holes] [--no-shadows] [--png]``. Defaults: 12 rooms × 20 views at 320×240 (train
8 rooms = 160 frames, val 2 rooms, test 2 rooms), exact depth. Measured (``time viewal generate data/demo``):
24.6 s wall on an idle 2-core machine; 66 s wall / 23.5 s CPU while ~5 other jobs shared the cores.
About 85 ms per frame: one cast, one occlusion cast per light, texturing, PNG/JPEG encoding.

Classes (``CLASS_NAMES``): wall, floor, ceiling, door, window, table, chair, sofa, bed, cabinet, shelf,
lamp, tv, picture, plant, box, rug; 255 = nothing hit (never happens inside a closed room). On the
default dataset walls cover 46 % of the pixels, floor 9 %, table 6 %, plant 6 %, cabinet 5 %, lamp 0.6 %
(the rarest); a pixel cross-projected into a neighbouring view where the depth test says it is visible
keeps its class 99.7 % of the time (the rest are object edges under nearest-pixel rounding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import IGNORE_INDEX

__all__ = [
    "CLASS_NAMES", "SceneSpec", "Part", "build_scene", "RoomRenderer", "camera_trajectory", "default_intrinsics",
    "render_frame", "generate_dataset", "split_scenes",
    "DEFAULT_SCENES", "DEFAULT_FRAMES", "DEFAULT_HEIGHT", "DEFAULT_WIDTH",
]

CLASS_NAMES = [
    "wall", "floor", "ceiling", "door", "window", "table", "chair", "sofa", "bed",
    "cabinet", "shelf", "lamp", "tv", "picture", "plant", "box", "rug",
]
C = {name: i for i, name in enumerate(CLASS_NAMES)}

DEFAULT_SCENES = 12
DEFAULT_FRAMES = 20
DEFAULT_HEIGHT = 240
DEFAULT_WIDTH = 320

# ------------------------------------------------------------------------------------------ materials

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

# pattern ids
PLAIN, STRIPES, CHECKER, NOISE, WOOD, PLANKS, TILES, GRADIENT = range(8)
UV_BOX, UV_CYL, UV_SPHERE = range(3)


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


# -------------------------------------------------------------------------------------- procedural noise

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


# -------------------------------------------------------------------------------------- primitive meshes

def mesh_box(size) -> tuple[np.ndarray, np.ndarray]:
    """Box centred at the origin: vertices (8, 3), triangles (12, 3), outward winding."""
    sx, sy, sz = np.asarray(size, dtype=np.float64) / 2
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = []
    for a, b, c, d in quads:
        tris += [(a, b, c), (a, c, d)]
    return v, np.array(tris)


def mesh_frustum(r0: float, r1: float, h: float, n: int = 20, caps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frustum (cylinder if r0 == r1) along z, centred: bottom radius r0 at -h/2, top radius r1 at +h/2."""
    a = 2 * np.pi * np.arange(n) / n
    bot = np.stack([r0 * np.cos(a), r0 * np.sin(a), np.full(n, -h / 2)], 1)
    top = np.stack([r1 * np.cos(a), r1 * np.sin(a), np.full(n, h / 2)], 1)
    v = np.concatenate([bot, top, [[0, 0, -h / 2], [0, 0, h / 2]]])
    tris = []
    for i in range(n):
        j = (i + 1) % n
        tris += [(i, j, n + j), (i, n + j, n + i)]
        if caps:
            tris += [(2 * n, j, i), (2 * n + 1, n + i, n + j)]
    return v, np.array(tris)


def mesh_sphere(radii, n_lat: int = 10, n_lon: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoid with semi-axes ``radii`` centred at the origin."""
    rx, ry, rz = radii
    verts = [[0, 0, -rz]]
    for i in range(1, n_lat):
        th = -np.pi / 2 + np.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * np.pi * j / n_lon
            verts.append([rx * np.cos(th) * np.cos(ph), ry * np.cos(th) * np.sin(ph), rz * np.sin(th)])
    verts.append([0, 0, rz])
    v = np.array(verts)
    top = len(v) - 1
    tris = []
    for j in range(n_lon):
        k = (j + 1) % n_lon
        tris.append((0, 1 + k, 1 + j))
        base = 1 + (n_lat - 2) * n_lon
        tris.append((top, base + j, base + k))
    for i in range(n_lat - 2):
        for j in range(n_lon):
            k = (j + 1) % n_lon
            a, b = 1 + i * n_lon + j, 1 + i * n_lon + k
            c, d = a + n_lon, b + n_lon
            tris += [(a, b, d), (a, d, c)]
    return v, np.array(tris)


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rigid(R: np.ndarray | None = None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = t
    return T


@dataclass
class Part:
    """One primitive: ``shape`` in {box, frustum, sphere} with ``dims``, pose ``T`` (part → world),
    class id ``cls`` and material."""

    shape: str
    dims: tuple
    T: np.ndarray
    cls: int
    mat: Material

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        if self.shape == "box":
            v, f = mesh_box(self.dims)
        elif self.shape == "frustum":
            r0, r1, h = self.dims[:3]
            caps = bool(self.dims[3]) if len(self.dims) > 3 else True
            v, f = mesh_frustum(r0, r1, h, caps=caps)
        elif self.shape == "sphere":
            v, f = mesh_sphere(self.dims)
        else:
            raise ValueError(f"unknown primitive shape {self.shape!r}")
        return v @ self.T[:3, :3].T + self.T[:3, 3], f

    @property
    def uv_mode(self) -> int:
        return {"box": UV_BOX, "frustum": UV_CYL, "sphere": UV_SPHERE}[self.shape]


def box_part(cls: int, mat: Material, size, center, R=None) -> Part:
    return Part("box", tuple(float(s) for s in size), rigid(R, center), cls, mat)


# ----------------------------------------------------------------------------------------- furniture
# Builders return parts in the object's frame: origin at the footprint centre on the floor, x = width,
# y = depth (front faces +y), z up. ``placed`` moves them into the room.

def _obj_table(rng, w, d, h, top_mat, leg_mat, cls=C["table"]) -> list[Part]:
    th = rng.uniform(0.025, 0.05)
    parts = [box_part(cls, top_mat, (w, d, th), (0, 0, h - th / 2))]
    if rng.random() < 0.75:
        lw = rng.uniform(0.03, 0.06)
        ix, iy = w / 2 - lw, d / 2 - lw
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(box_part(cls, leg_mat, (lw, lw, h - th), (sx * ix, sy * iy, (h - th) / 2)))
    else:  # pedestal table
        parts.append(Part("frustum", (0.05, 0.05, h - th), rigid(None, (0, 0, (h - th) / 2)), cls, leg_mat))
        parts.append(Part("frustum", (min(w, d) * 0.3, 0.06, 0.04), rigid(None, (0, 0, 0.02)), cls, leg_mat))
    return parts


def _obj_chair(rng) -> list[Part]:
    cls = C["chair"]
    w, d = rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5)
    sh, bh = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.5)
    seat = make_material(rng, rng.choice(["wood", "fabric", "paint"]))
    frame = make_material(rng, rng.choice(["wood", "metal"]))
    lw = 0.035
    parts = [box_part(cls, seat, (w, d, 0.05), (0, 0, sh - 0.025))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            at = (sx * (w / 2 - lw), sy * (d / 2 - lw), (sh - 0.05) / 2)
            parts.append(box_part(cls, frame, (lw, lw, sh - 0.05), at))
    # back rest at the rear (-y)
    parts.append(box_part(cls, seat if rng.random() < 0.5 else frame, (w, 0.04, bh), (0, -d / 2 + 0.02, sh + bh / 2)))
    return parts


def _obj_sofa(rng) -> tuple[list[Part], float, float, float]:
    cls = C["sofa"]
    w, d = rng.uniform(1.6, 2.3), rng.uniform(0.8, 0.95)
    fab = make_material(rng, "fabric")
    fab2 = make_material(rng, "fabric") if rng.random() < 0.3 else fab
    legs = make_material(rng, rng.choice(["wood", "metal"]))
    arm = rng.uniform(0.12, 0.22)
    base_h, seat_h, back_h = 0.12, rng.uniform(0.38, 0.45), rng.uniform(0.72, 0.9)
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(
                box_part(cls, legs, (0.05, 0.05, base_h), (sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), base_h / 2))
            )
    parts.append(box_part(cls, fab, (w, d, seat_h - base_h - 0.1), (0, 0, (seat_h - 0.1 + base_h) / 2)))
    n_cush = int(rng.integers(2, 4))
    cw = (w - 2 * arm) / n_cush
    for i in range(n_cush):
        x = -w / 2 + arm + cw * (i + 0.5)
        parts.append(box_part(cls, fab2, (cw - 0.01, d - 0.22, 0.1), (x, 0.08, seat_h - 0.05)))
    parts.append(box_part(cls, fab, (w, 0.2, back_h - base_h), (0, -d / 2 + 0.1, (back_h + base_h) / 2)))
    for sx in (-1, 1):
        parts.append(
            box_part(
                cls, fab, (arm, d, seat_h + 0.15 - base_h), (sx * (w / 2 - arm / 2), 0, (seat_h + 0.15 + base_h) / 2)
            )
        )
    return parts, w, d, back_h


def _obj_bed(rng) -> tuple[list[Part], float, float, float]:
    cls = C["bed"]
    w = rng.choice([0.95, 1.4, 1.6, 1.8]) + rng.uniform(-0.05, 0.05)
    d = rng.uniform(1.95, 2.15)
    frame = make_material(rng, rng.choice(["wood", "paint", "fabric"]))
    matt = make_material(rng, "paint")
    blanket = make_material(rng, "fabric")
    pillow = make_material(rng, rng.choice(["paint", "fabric"]))
    fh = rng.uniform(0.25, 0.35)
    mh = 0.2
    hb = rng.uniform(0.8, 1.1)
    parts = [
        box_part(cls, frame, (w, d, fh), (0, 0, fh / 2)),
        box_part(cls, matt, (w - 0.04, d - 0.06, mh), (0, 0.02, fh + mh / 2)),
        box_part(cls, frame, (w + 0.04, 0.06, hb), (0, -d / 2 - 0.03, hb / 2)),
    ]
    bl = d * rng.uniform(0.55, 0.7)
    parts.append(box_part(cls, blanket, (w + 0.02, bl, 0.05), (0, d / 2 - bl / 2 + 0.01, fh + mh + 0.02)))
    parts.append(
        box_part(cls, blanket, (0.03, bl, mh + 0.1), (w / 2 + 0.01, d / 2 - bl / 2 + 0.01, fh + mh / 2 - 0.03))
    )
    parts.append(
        box_part(cls, blanket, (0.03, bl, mh + 0.1), (-w / 2 - 0.01, d / 2 - bl / 2 + 0.01, fh + mh / 2 - 0.03))
    )
    n_p = 1 if w < 1.2 else 2
    pw = (w - 0.15) / n_p
    for i in range(n_p):
        x = -w / 2 + 0.075 + pw * (i + 0.5)
        parts.append(
            Part("sphere", (pw / 2 - 0.03, 0.2, 0.07), rigid(None, (x, -d / 2 + 0.3, fh + mh + 0.06)), cls, pillow)
        )
    return parts, w, d, hb


def _obj_cabinet(rng, w=None, d=None, h=None) -> tuple[list[Part], float, float, float]:
    cls = C["cabinet"]
    w = w or rng.uniform(0.45, 1.2)
    d = d or rng.uniform(0.4, 0.55)
    h = h or rng.uniform(0.5, 1.9)
    body = make_material(rng, rng.choice(["wood", "paint"]))
    front = body if rng.random() < 0.6 else make_material(rng, rng.choice(["wood", "paint"]))
    handle = make_material(rng, "metal")
    parts = [
        box_part(cls, body, (w, d - 0.02, h - 0.06), (0, -0.01, (h - 0.06) / 2 + 0.06)),
        box_part(cls, body, (w - 0.04, d - 0.06, 0.06), (0, -0.03, 0.03)),
    ]
    n_doors = 1 if w < 0.6 else 2
    rows = 1 if h < 1.0 else int(rng.integers(1, 3))
    dw, dh = w / n_doors, (h - 0.08) / rows
    for i in range(n_doors):
        for r in range(rows):
            x = -w / 2 + dw * (i + 0.5)
            z = 0.07 + dh * (r + 0.5)
            parts.append(box_part(cls, front, (dw - 0.012, 0.02, dh - 0.012), (x, d / 2 - 0.01, z)))
            hx = x + (dw / 2 - 0.06) * (1 if i == 0 and n_doors == 2 else -1 if n_doors == 2 else 1)
            parts.append(box_part(cls, handle, (0.015, 0.025, 0.12), (hx, d / 2 + 0.012, z)))
    return parts, w, d, h


def _obj_shelf(rng) -> tuple[list[Part], list[Part], float, float, float]:
    """Open bookshelf; returns (shelf parts, clutter parts on its boards, w, d, h)."""
    cls = C["shelf"]
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(1.1, 2.0)
    mat = make_material(rng, rng.choice(["wood", "paint"]))
    back = mat if rng.random() < 0.5 else make_material(rng, "paint")
    t = 0.025
    parts = [
        box_part(cls, mat, (t, d, h), (-w / 2 + t / 2, 0, h / 2)),
        box_part(cls, mat, (t, d, h), (w / 2 - t / 2, 0, h / 2)),
        box_part(cls, back, (w, 0.01, h), (0, -d / 2 + 0.005, h / 2)),
    ]
    n = max(2, int(h / rng.uniform(0.3, 0.42)))
    clutter = []
    for i in range(n + 1):
        z = 0.05 + (h - 0.05 - t) * i / n
        parts.append(box_part(cls, mat, (w - 2 * t, d - 0.01, t), (0, 0.005, z + t / 2)))
        if i < n:
            gap = (h - 0.05 - t) / n - t
            x = -w / 2 + t + 0.01
            while x < w / 2 - t - 0.08:
                bw = rng.uniform(0.03, 0.25)
                if rng.random() < 0.35:
                    x += bw
                    continue
                bw = min(bw, w / 2 - t - 0.01 - x)
                bh = min(gap - 0.02, rng.uniform(0.08, 0.3))
                bd = rng.uniform(0.12, d - 0.04)
                clutter.append(
                    box_part(
                        C["box"],
                        make_material(rng, rng.choice(["bright", "cardboard", "paint", "fabric"])),
                        (bw, bd, bh),
                        (x + bw / 2, -d / 2 + 0.02 + bd / 2, z + t + bh / 2),
                    )
                )
                x += bw + 0.005
    return parts, clutter, w, d, h


def _obj_floor_lamp(rng) -> tuple[list[Part], float]:
    cls = C["lamp"]
    base = make_material(rng, rng.choice(["metal", "ceramic"]))
    shade = make_material(rng, rng.choice(["paint", "fabric"]))
    h = rng.uniform(1.3, 1.75)
    rs = rng.uniform(0.15, 0.25)
    parts = [
        Part("frustum", (0.15, 0.13, 0.03), rigid(None, (0, 0, 0.015)), cls, base),
        Part("frustum", (0.015, 0.015, h - 0.2), rigid(None, (0, 0, (h - 0.2) / 2)), cls, base),
        Part("frustum", (rs, rs * 0.7, 0.3, 0), rigid(None, (0, 0, h - 0.15)), cls, shade),
    ]
    return parts, rs


def _obj_table_lamp(rng) -> list[Part]:
    cls = C["lamp"]
    base = make_material(rng, rng.choice(["metal", "ceramic"]))
    shade = make_material(rng, rng.choice(["paint", "fabric"]))
    h = rng.uniform(0.3, 0.5)
    r = rng.uniform(0.08, 0.13)
    return [
        Part("sphere", (0.07, 0.07, h * 0.3), rigid(None, (0, 0, h * 0.25)), cls, base),
        Part("frustum", (0.012, 0.012, h * 0.4), rigid(None, (0, 0, h * 0.6)), cls, base),
        Part("frustum", (r, r * 0.65, h * 0.35, 0), rigid(None, (0, 0, h - h * 0.175)), cls, shade),
    ]


def _obj_tv(rng, w=None) -> list[Part]:
    """TV/monitor standing on a surface at z = 0, screen facing +y."""
    cls = C["tv"]
    w = w or rng.uniform(0.45, 1.2)
    h = w * rng.uniform(0.56, 0.62)
    body = make_material(rng, "metal")
    screen = make_material(rng, "screen")
    lift = rng.uniform(0.06, 0.12)
    return [
        box_part(cls, body, (w * 0.35, 0.18, 0.02), (0, 0, 0.01)),
        box_part(cls, body, (0.05, 0.03, lift + 0.05), (0, -0.02, (lift + 0.05) / 2)),
        box_part(cls, body, (w, 0.04, h), (0, 0, lift + h / 2)),
        box_part(cls, screen, (w - 0.03, 0.006, h - 0.03), (0, 0.022, lift + h / 2)),
    ]


def _obj_plant(rng, small: bool = False) -> tuple[list[Part], float]:
    cls = C["plant"]
    pot = make_material(rng, rng.choice(["ceramic", "paint"]))
    leaves = make_material(rng, "green")
    s = rng.uniform(0.35, 0.55) if small else rng.uniform(0.8, 1.4)
    rp = 0.22 * s**0.6
    ph = rp * rng.uniform(1.0, 1.5)
    parts = [
        Part("frustum", (rp * 0.75, rp, ph), rigid(None, (0, 0, ph / 2)), cls, pot),
        Part("frustum", (0.015, 0.015, s * 0.5), rigid(None, (0, 0, ph + s * 0.25)), cls, leaves),
    ]
    for _ in range(int(rng.integers(2, 5))):
        r = s * rng.uniform(0.18, 0.3)
        c = (rng.normal(0, 0.12 * s), rng.normal(0, 0.12 * s), ph + s * rng.uniform(0.35, 0.8) - r * 0.3)
        parts.append(
            Part(
                "sphere",
                (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)),
                rigid(rot_z(rng.uniform(0, 6.3)), c),
                cls,
                leaves,
            )
        )
    return parts, rp + 0.1 * s


def _obj_boxes(rng, max_h: float = 0.6) -> list[Part]:
    """A small stack of 1-3 boxes."""
    parts, z = [], 0.0
    w0 = rng.uniform(0.2, 0.55)
    for _ in range(int(rng.integers(1, 4))):
        w = w0 * rng.uniform(0.6, 1.0)
        d = w * rng.uniform(0.6, 1.2)
        h = rng.uniform(0.1, 0.35)
        if z + h > max_h:
            break
        mat = make_material(rng, rng.choice(["cardboard", "cardboard", "bright", "paint", "wood"]))
        yaw = rng.normal(0, 0.2)
        parts.append(
            box_part(C["box"], mat, (w, d, h), (rng.normal(0, 0.03), rng.normal(0, 0.03), z + h / 2), rot_z(yaw))
        )
        z += h
        w0 = w
    return parts


def placed(parts: list[Part], yaw: float, pos) -> list[Part]:
    """Move object-frame parts to the room: rotate by ``yaw`` about z, then translate to ``pos``."""
    T = rigid(rot_z(yaw), pos)
    return [Part(p.shape, p.dims, T @ p.T, p.cls, p.mat) for p in parts]


# ----------------------------------------------------------------------------------------------- rooms


@dataclass
class SceneSpec:
    """A generated room: its parts, lights and size (interior x ∈ [0, Lx], y ∈ [0, Ly], z ∈ [0, Lz])."""

    parts: list[Part]
    lights: list[tuple[np.ndarray, float]]
    size: tuple[float, float, float]
    ambient: float
    kind: str
    exposure: float = 1.3
    central: tuple[float, float] = (0.0, 0.0)
    info: dict[str, Any] = field(default_factory=dict)


# wall w: 0 → y = 0 (inward +y), 1 → x = Lx (inward -x), 2 → y = Ly (inward -y), 3 → x = 0 (inward +x)
_WALL_YAW = [0.0, math.pi / 2, math.pi, -math.pi / 2]


def _wall_length(w: int, L) -> float:
    return L[0] if w in (0, 2) else L[1]


def _wall_point(w: int, s: float, off: float, L) -> tuple[float, float]:
    """Room (x, y) of position ``s`` along wall ``w`` (counter-clockwise) at ``off`` metres from it."""
    Lx, Ly = L[0], L[1]
    if w == 0:
        return s, off
    if w == 1:
        return Lx - off, s
    if w == 2:
        return Lx - s, Ly - off
    return off, Ly - s


class _Layout:
    """Axis-aligned footprint rectangles on the floor (rejection sampling of placements)."""

    def __init__(self, L):
        self.L = L
        self.rects: list[tuple[float, float, float, float, float]] = []  # x0, y0, x1, y1, height

    @staticmethod
    def footprint(w, d, yaw, x, y):
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        hw, hd = (w * c + d * s) / 2, (w * s + d * c) / 2
        return x - hw, y - hd, x + hw, y + hd

    def free(self, r, margin=0.05) -> bool:
        x0, y0, x1, y1 = r
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.L[0] + 1e-6 or y1 > self.L[1] + 1e-6:
            return False
        for a0, b0, a1, b1, _ in self.rects:
            if x0 < a1 + margin and a0 < x1 + margin and y0 < b1 + margin and b0 < y1 + margin:
                return False
        return True

    def add(self, r, h):
        self.rects.append((*r, h))

    def against_wall(self, rng, w, d, h, walls=(0, 1, 2, 3), tries=40, gap=0.02):
        """Try to place a (w × d) object with its back to a wall; returns (yaw, x, y, wall) or None."""
        for _ in range(tries):
            wall = int(rng.choice(walls))
            Lw = _wall_length(wall, self.L)
            if Lw < w + 0.1:
                continue
            s = rng.uniform(w / 2 + 0.02, Lw - w / 2 - 0.02)
            x, y = _wall_point(wall, s, d / 2 + gap, self.L)
            yaw = _WALL_YAW[wall]
            r = self.footprint(w, d, yaw, x, y)
            if self.free(r):
                self.add(r, h)
                return yaw, x, y, wall
        return None


def _wall_with_openings(L, wall: int, openings, mat: Material, thick: float = 0.12) -> list[Part]:
    """Boxes of one wall (outside the interior), with rectangular openings (s0, s1, z0, z1)."""
    Lw = _wall_length(wall, L) + 2 * thick
    Lz = L[2]
    # wall-local frame: s along the wall from -thick, z up, n = inward normal; box centre at -thick/2
    pieces = []
    cuts = sorted(openings)
    s_prev = -thick
    for s0, s1, z0, z1 in cuts:
        pieces.append((s_prev, s0, 0.0, Lz))
        pieces.append((s0, s1, 0.0, z0))
        pieces.append((s0, s1, z1, Lz))
        s_prev = s1
    pieces.append((s_prev, Lw - thick, 0.0, Lz))
    parts = []
    yaw = _WALL_YAW[wall]
    for s0, s1, z0, z1 in pieces:
        if s1 - s0 < 1e-4 or z1 - z0 < 1e-4:
            continue
        sm = (s0 + s1) / 2
        x, y = _wall_point(wall, sm, -thick / 2, L)
        parts.append(box_part(C["wall"], mat, (s1 - s0, thick, z1 - z0), (x, y, (z0 + z1) / 2), rot_z(yaw)))
    return parts


def build_scene(rng: np.random.Generator) -> SceneSpec:
    """A random furnished room (see module docstring)."""
    kind = str(rng.choice(["living", "bedroom", "office"]))
    Lx, Ly = rng.uniform(3.8, 6.0), rng.uniform(3.6, 5.5)
    Lz = rng.uniform(2.5, 2.9)
    L = (Lx, Ly, Lz)
    parts: list[Part] = []
    wall_mat = make_material(rng, "paint" if rng.random() < 0.85 else "wood")
    wall_mat2 = make_material(rng, "paint") if rng.random() < 0.35 else wall_mat  # an accent wall
    accent = int(rng.integers(4))
    lay = _Layout(L)

    # door and window openings
    door_wall = int(rng.integers(4))
    win_wall = int(rng.choice([w for w in range(4) if w != door_wall]))
    openings: dict[int, list[tuple[float, float, float, float]]] = {w: [] for w in range(4)}
    dw, dh = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.15)
    ds = rng.uniform(0.25 + dw / 2, _wall_length(door_wall, L) - 0.25 - dw / 2)
    openings[door_wall].append((ds - dw / 2, ds + dw / 2, 0.0, dh))
    ww = rng.uniform(0.9, min(2.0, _wall_length(win_wall, L) - 1.0))
    wz0, wz1 = rng.uniform(0.8, 1.0), min(Lz - 0.25, rng.uniform(2.0, 2.3))
    wsp = rng.uniform(0.4 + ww / 2, _wall_length(win_wall, L) - 0.4 - ww / 2)
    openings[win_wall].append((wsp - ww / 2, wsp + ww / 2, wz0, wz1))
    for w in range(4):
        parts += _wall_with_openings(L, w, openings[w], wall_mat2 if w == accent else wall_mat)

    # floor, ceiling
    T = 0.1
    parts.append(box_part(C["floor"], make_material(rng, "floor"), (Lx + 0.4, Ly + 0.4, T), (Lx / 2, Ly / 2, -T / 2)))
    parts.append(
        box_part(C["ceiling"], make_material(rng, "paint"), (Lx + 0.4, Ly + 0.4, T), (Lx / 2, Ly / 2, Lz + T / 2))
    )

    # door: a panel set into the opening, a frame, a handle
    yaw = _WALL_YAW[door_wall]
    door_mat = make_material(rng, rng.choice(["wood", "paint"]))
    frame_mat = make_material(rng, rng.choice(["paint", "wood"]))
    dp = [
        box_part(C["door"], door_mat, (dw, 0.04, dh), (0, -0.07, dh / 2)),
        box_part(C["door"], make_material(rng, "metal"), (0.12, 0.05, 0.025), (dw / 2 - 0.1, -0.03, 1.0)),
    ]
    for sx in (-1, 1):
        dp.append(
            box_part(C["door"], frame_mat, (0.06, 0.02, dh + 0.06), (sx * (dw / 2 + 0.03), 0.01, (dh + 0.06) / 2))
        )
    dp.append(box_part(C["door"], frame_mat, (dw + 0.12, 0.02, 0.06), (0, 0.01, dh + 0.03)))
    x, y = _wall_point(door_wall, ds, 0.0, L)
    parts += placed(dp, yaw, (x, y, 0.0))
    lay.add(_Layout.footprint(dw + 0.5, 1.6, yaw, *_wall_point(door_wall, ds, 0.8, L)), 0.0)

    # window: bright pane outside the wall, glazing bars, frame, sill
    yaw = _WALL_YAW[win_wall]
    wmat = make_material(rng, rng.choice(["paint", "wood", "metal"]))
    whh = wz1 - wz0
    wp = [box_part(C["window"], make_material(rng, "sky"), (ww + 1.2, 0.02, whh + 1.2), (0, -0.2, whh / 2))]
    wp.append(box_part(C["window"], wmat, (0.04, 0.04, whh), (0, -0.08, whh / 2)))
    if rng.random() < 0.6:
        wp.append(box_part(C["window"], wmat, (ww, 0.04, 0.04), (0, -0.08, whh * rng.uniform(0.5, 0.7))))
    for sx in (-1, 1):
        wp.append(box_part(C["window"], wmat, (0.05, 0.06, whh), (sx * (ww / 2 - 0.025), -0.07, whh / 2)))
    for z in (0.025, whh - 0.025):
        wp.append(box_part(C["window"], wmat, (ww, 0.06, 0.05), (0, -0.07, z)))
    wp.append(box_part(C["window"], wmat, (ww + 0.1, 0.16, 0.03), (0, 0.02, -0.015)))
    x, y = _wall_point(win_wall, wsp, 0.0, L)
    parts += placed(wp, yaw, (x, y, wz0))

    def blocks_opening(wall, s, w, h):
        for s0, s1, z0, _ in openings[wall]:
            if s - w / 2 < s1 + 0.05 and s0 - 0.05 < s + w / 2 and h > z0 - 0.05:
                return True
        return False

    def put_against_wall(obj_parts, w, d, h, tries=40):
        for _ in range(tries):
            res = lay.against_wall(rng, w, d, h, tries=1)
            if res is None:
                continue
            yaw, x, y, wall = res
            s = _wall_s(wall, x, y, L)
            if blocks_opening(wall, s, w, h):
                lay.rects.pop()
                continue
            parts.extend(placed(obj_parts, yaw, (x, y, 0.0)))
            return yaw, x, y, wall
        return None

    # large furniture by room kind
    tops: list[tuple[float, float, float, float, float, float]] = []  # (yaw, x, y, w, d, z) surfaces
    if kind == "bedroom":
        bp, bw, bd, bh = _obj_bed(rng)
        res = put_against_wall(bp, bw, bd, bh)
        if res is not None:
            for sx in (-1, 1):  # nightstands
                yaw, x, y, wall = res
                off = rot_z(yaw) @ np.array([sx * (bw / 2 + 0.3), -bd / 2 + 0.22, 0])
                cp, cw, cd, ch = _obj_cabinet(rng, 0.45, 0.4, rng.uniform(0.45, 0.6))
                r = _Layout.footprint(cw, cd, yaw, x + off[0], y + off[1])
                if lay.free(r, 0.01):
                    lay.add(r, ch)
                    parts.extend(placed(cp, yaw, (x + off[0], y + off[1], 0.0)))
                    tops.append((yaw, x + off[0], y + off[1], cw, cd, ch))
    if kind == "living" or (kind == "bedroom" and rng.random() < 0.3):
        sp, sw, sd, sh = _obj_sofa(rng)
        put_against_wall(sp, sw, sd, sh)
    if kind == "office" or rng.random() < 0.5:
        # desk against a wall with a monitor and a chair
        w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
        tp = _obj_table(
            rng,
            w,
            d,
            h,
            make_material(rng, rng.choice(["wood", "paint"])),
            make_material(rng, rng.choice(["metal", "wood"])),
        )
        res = put_against_wall(tp, w, d + 0.5, h)
        if res is not None:
            yaw, x, y, wall = res
            off = rot_z(yaw) @ np.array([0, -0.25, 0])
            # the object was reserved with extra depth for the chair; shift the desk back
            parts[-len(tp) :] = placed(tp, yaw, (x + off[0], y + off[1], 0.0))
            mon = _obj_tv(rng, rng.uniform(0.45, 0.7))
            moff = rot_z(yaw) @ np.array([rng.uniform(-0.2, 0.2) * w, -d / 2 + 0.15, 0])
            parts.extend(placed(mon, yaw, (x + off[0] + moff[0], y + off[1] + moff[1], h)))
            coff = rot_z(yaw) @ np.array([rng.uniform(-0.15, 0.15), d / 2 + 0.05, 0])
            parts.extend(placed(_obj_chair(rng), yaw + math.pi + rng.normal(0, 0.3), (x + coff[0], y + coff[1], 0.0)))
            tops.append((yaw, x + off[0], y + off[1], w * 0.45, d * 0.6, h))

    # storage: cabinets and shelves
    for _ in range(int(rng.integers(1, 3))):
        cp, cw, cd, ch = _obj_cabinet(rng)
        res = put_against_wall(cp, cw, cd, ch)
        if res is not None and ch < 1.3:
            tops.append((res[0], res[1], res[2], cw, cd, ch))
    for _ in range(int(rng.integers(1, 3))):
        sp, clutter, sw, sd, sh = _obj_shelf(rng)
        put_against_wall(sp + clutter, sw, sd, sh)

    # TV on a low cabinet (living rooms)
    if kind == "living":
        cp, cw, cd, ch = _obj_cabinet(rng, rng.uniform(1.2, 1.8), 0.45, rng.uniform(0.4, 0.55))
        res = put_against_wall(cp, cw, cd, ch)
        if res is not None:
            yaw, x, y, _ = res
            parts.extend(placed(_obj_tv(rng, rng.uniform(0.8, min(1.3, cw))), yaw, (x, y, ch)))

    # central table with chairs (and a rug under it)
    cx, cy = Lx / 2 + rng.normal(0, 0.2), Ly / 2 + rng.normal(0, 0.2)
    central_h = 0.0
    if kind != "bedroom" or rng.random() < 0.3:
        coffee = kind == "living"
        w = rng.uniform(0.9, 1.3) if coffee else rng.uniform(1.0, 1.6)
        d = rng.uniform(0.5, 0.7) if coffee else rng.uniform(0.75, 0.95)
        h = rng.uniform(0.38, 0.46) if coffee else rng.uniform(0.72, 0.76)
        yaw = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.1)
        if rng.random() < 0.8:
            rw, rd = w + rng.uniform(0.8, 1.4), d + rng.uniform(0.8, 1.4)
            parts.extend(
                placed(
                    [box_part(C["rug"], make_material(rng, "rug"), (rw, rd, 0.012), (0, 0, 0.006))],
                    yaw + rng.normal(0, 0.05),
                    (cx, cy, 0.0),
                )
            )
        tp = _obj_table(
            rng,
            w,
            d,
            h,
            make_material(rng, rng.choice(["wood", "paint", "metal"])),
            make_material(rng, rng.choice(["metal", "wood"])),
        )
        parts.extend(placed(tp, yaw, (cx, cy, 0.0)))
        lay.add(_Layout.footprint(w, d, yaw, cx, cy), h)
        central_h = h
        if not coffee:
            n_ch = int(rng.integers(2, 5))
            spots = [
                (0, d / 2 + 0.25, math.pi),
                (0, -d / 2 - 0.25, 0.0),
                (w / 2 + 0.25, 0, math.pi / 2),
                (-w / 2 - 0.25, 0, -math.pi / 2),
            ]
            for i in rng.permutation(4)[:n_ch]:
                sx, sy, a = spots[i]
                off = rot_z(yaw) @ np.array([sx + rng.normal(0, 0.05), sy + rng.normal(0, 0.08), 0])
                chair_yaw = yaw + a + rng.normal(0, 0.25)
                parts.extend(placed(_obj_chair(rng), chair_yaw, (cx + off[0], cy + off[1], 0.0)))
        # items on the central table (kept low: the camera walks above it)
        for _ in range(int(rng.integers(1, 4))):
            px, py = rng.uniform(-0.35, 0.35) * w, rng.uniform(-0.3, 0.3) * d
            off = rot_z(yaw) @ np.array([px, py, 0])
            r = rng.random()
            items = (
                _obj_boxes(rng, 0.25)
                if r < 0.55
                else _obj_plant(rng, small=True)[0]
                if r < 0.85
                else _obj_table_lamp(rng)
            )
            parts.extend(placed(items, rng.uniform(0, 6.3), (cx + off[0], cy + off[1], h)))
    else:
        if rng.random() < 0.8:
            rw, rd = rng.uniform(1.4, 2.4), rng.uniform(1.0, 1.8)
            parts.extend(
                placed(
                    [box_part(C["rug"], make_material(rng, "rug"), (rw, rd, 0.012), (0, 0, 0.006))],
                    rng.uniform(0, 3.2),
                    (cx, cy, 0.0),
                )
            )

    # things on cabinets / nightstands / desks
    for yaw, x, y, w, d, h in tops:
        if rng.random() < 0.8:
            px = rng.uniform(-0.3, 0.3) * w
            off = rot_z(yaw) @ np.array([px, rng.uniform(-0.15, 0.15) * d, 0])
            r = rng.random()
            items = (
                _obj_table_lamp(rng)
                if r < 0.4
                else _obj_plant(rng, small=True)[0]
                if r < 0.65
                else _obj_boxes(rng, 0.4)
            )
            parts.extend(placed(items, yaw + rng.normal(0, 0.3), (x + off[0], y + off[1], h)))

    # floor lamps, plants, box stacks in free spots along the walls
    for _ in range(int(rng.integers(1, 3))):
        lp, r = _obj_floor_lamp(rng)
        put_against_wall(lp, 2 * r, 2 * r, 1.7)
    for _ in range(int(rng.integers(1, 3))):
        pp, r = _obj_plant(rng)
        put_against_wall(pp, 2 * r, 2 * r, 1.5)
    for _ in range(int(rng.integers(1, 4))):
        put_against_wall(_obj_boxes(rng), 0.55, 0.55, 0.6)

    # pictures on walls: between 1.1 and 2.2 m, never over an opening or in front of tall furniture
    n_pic = int(rng.integers(1, 4))
    for _ in range(n_pic * 10):
        if n_pic == 0:
            break
        wall = int(rng.integers(4))
        pw, ph = rng.uniform(0.3, 1.1), rng.uniform(0.25, 0.8)
        Lw = _wall_length(wall, L)
        if Lw < pw + 0.4:
            continue
        s = rng.uniform(pw / 2 + 0.2, Lw - pw / 2 - 0.2)
        z0 = rng.uniform(1.1, max(1.15, Lz - 0.3 - ph))
        if any(s - pw / 2 < s1 + 0.1 and s0 - 0.1 < s + pw / 2 for s0, s1, _, _ in openings[wall]):
            continue
        x, y = _wall_point(wall, s, 0.3, L)
        foot = _Layout.footprint(pw, 0.6, _WALL_YAW[wall], x, y)
        if any(
            foot[0] < a1 and a0 < foot[2] and foot[1] < b1 and b0 < foot[3] and hh > z0 - 0.05
            for a0, b0, a1, b1, hh in lay.rects
        ):
            continue
        fm = make_material(rng, rng.choice(["wood", "metal", "paint"]))
        canvas = make_material(rng, "bright")
        fr = 0.03
        pp = [box_part(C["picture"], canvas, (pw - 2 * fr, 0.02, ph - 2 * fr), (0, 0.01, ph / 2))]
        for sx in (-1, 1):
            pp.append(box_part(C["picture"], fm, (fr, 0.03, ph), (sx * (pw / 2 - fr / 2), 0.015, ph / 2)))
        for z in (fr / 2, ph - fr / 2):
            pp.append(box_part(C["picture"], fm, (pw, 0.03, fr), (0, 0.015, z)))
        x, y = _wall_point(wall, s, 0.0, L)
        parts.extend(placed(pp, _WALL_YAW[wall], (x, y, z0)))
        openings[wall].append((s - pw / 2, s + pw / 2, 99.0, 99.0))  # keep pictures apart
        n_pic -= 1

    # lights near the ceiling
    lights = []
    for _ in range(int(rng.integers(1, 4))):
        pos = np.array([rng.uniform(0.2, 0.8) * Lx, rng.uniform(0.2, 0.8) * Ly, Lz - rng.uniform(0.2, 0.5)])
        lights.append((pos, float(rng.uniform(0.7, 1.2))))
    tot = sum(i for _, i in lights)
    lights = [(p, i * rng.uniform(1.3, 1.9) / tot) for p, i in lights]
    return SceneSpec(
        parts,
        lights,
        L,
        ambient=float(rng.uniform(0.22, 0.35)),
        kind=kind,
        exposure=float(rng.uniform(1.1, 1.5)),
        central=(cx, cy),
        info={"central_height": central_h},
    )


def _wall_s(wall: int, x: float, y: float, L) -> float:
    """Inverse of :func:`_wall_point` for the along-wall coordinate."""
    if wall == 0:
        return x
    if wall == 1:
        return y
    if wall == 2:
        return L[0] - x
    return L[1] - y


# ---------------------------------------------------------------------------------------------- camera


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """Pinhole K (3, 3): fx = fy = 0.9·W (≈ 58° horizontal field of view, like ScanNet's depth camera),
    principal point at the image centre (integer pixel centres)."""
    f = 0.9 * width
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """world_T_cam (4, 4) of an OpenCV camera at ``eye`` looking at ``target`` (z up), rolled by ``roll``."""
    f = target - eye
    f = f / np.linalg.norm(f)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, down, f, eye
    return T


def camera_trajectory(rng: np.random.Generator, spec: SceneSpec, n: int) -> list[np.ndarray]:
    """``n`` poses (world_T_cam) along a smooth walk through the room.

    The eye follows a wobbly ellipse around the room centre at 1.2-1.7 m; it looks across the room
    at a target moving along the opposite walls at 0.55-1.45 m, with a small roll (≤ ~4°).
    The walk advances 14-20° around the room per frame (at most 1.3-2 turns of π in all), so
    consecutive views overlap heavily whatever ``n`` is; wobbles depend on the angle travelled.
    """
    Lx, Ly, Lz = spec.size
    c = np.array([Lx / 2, Ly / 2])
    ax, ay = max(0.25, Lx / 2 - 1.15), max(0.25, Ly / 2 - 1.15)
    tx, ty = Lx / 2 - 0.35, Ly / 2 - 0.35
    total = min(rng.uniform(1.3, 2.0) * math.pi, math.radians(rng.uniform(14, 20)) * max(n - 1, 1))
    sign = float(rng.choice([-1, 1]))
    th0 = rng.uniform(0, 2 * math.pi)
    ph = rng.uniform(0, 2 * math.pi, size=6)
    h0 = rng.uniform(1.35, 1.55)
    poses = []
    for k in range(n):
        a = total * k / max(n - 1, 1)  # angle travelled so far
        th = th0 + sign * a
        rad = 1.0 + 0.2 * math.sin(1.5 * a + ph[0])
        eye = np.array(
            [c[0] + ax * rad * math.cos(th), c[1] + ay * rad * math.sin(th), h0 + 0.13 * math.sin(1.2 * a + ph[1])]
        )
        tth = th + math.pi + 0.55 * math.sin(0.9 * a + ph[2])
        trad = 0.55 + 0.4 * (0.5 + 0.5 * math.sin(0.7 * a + ph[3]))
        target = np.array(
            [c[0] + tx * trad * math.cos(tth), c[1] + ty * trad * math.sin(tth), 1.0 + 0.45 * math.sin(0.8 * a + ph[4])]
        )
        roll = 0.06 * math.sin(1.1 * a + ph[5])
        poses.append(look_at(eye, target, roll))
    return poses


# ----------------------------------------------------------------------------------------------- render


class RoomRenderer:
    """Open3D raycasting scene of a :class:`SceneSpec` plus per-geometry class and material tables."""

    def __init__(self, spec: SceneSpec):
        import open3d as o3d

        self.o3d = o3d
        self.spec = spec
        self.scene = o3d.t.geometry.RaycastingScene()
        n = len(spec.parts)
        self.cls = np.full(n + 1, IGNORE_INDEX, dtype=np.uint8)  # last entry: miss
        self.pattern = np.zeros(n + 1, np.int64)
        self.c1 = np.zeros((n + 1, 3))
        self.c2 = np.zeros((n + 1, 3))
        self.scale = np.ones(n + 1)
        self.angle = np.zeros(n + 1)
        self.seed = np.zeros(n + 1, np.int64)
        self.emissive = np.zeros(n + 1, bool)
        self.uv_mode = np.zeros(n + 1, np.int64)
        self.R = np.tile(np.eye(3), (n + 1, 1, 1))
        self.t = np.zeros((n + 1, 3))
        self.radius = np.ones(n + 1)
        for i, p in enumerate(spec.parts):
            v, f = p.mesh()
            gid = self.scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
            if gid != i:
                raise RuntimeError(f"Open3D gave geometry id {gid} to part {i}")
            self.cls[i] = p.cls
            m = p.mat
            self.pattern[i], self.c1[i], self.c2[i] = m.pattern, m.c1, m.c2
            self.scale[i], self.angle[i], self.seed[i], self.emissive[i] = m.scale, m.angle, m.seed, m.emissive
            self.uv_mode[i] = p.uv_mode
            self.R[i], self.t[i] = p.T[:3, :3], p.T[:3, 3]
            if p.shape == "frustum":
                self.radius[i] = (p.dims[0] + p.dims[1]) / 2
            elif p.shape == "sphere":
                self.radius[i] = float(np.mean(p.dims[:2]))

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        """Cast rays (..., 3) origins and directions → ``t_hit``, ``geometry_ids``, ``primitive_normals``."""
        rays = np.concatenate([np.broadcast_to(origins, dirs.shape), dirs], axis=-1).astype(np.float32)
        out = self.scene.cast_rays(self.o3d.core.Tensor(rays))
        return {k: out[k].numpy() for k in ("t_hit", "geometry_ids", "primitive_normals")}

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, tfar: float) -> np.ndarray:
        rays = np.concatenate([origins, dirs], axis=-1).astype(np.float32)
        return self.scene.test_occlusions(self.o3d.core.Tensor(rays), tnear=0.0, tfar=tfar).numpy()

    def uv(self, gid: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Surface coordinates (N, 2) in metres of hits ``p`` (N, 3) with normals ``n`` on parts ``gid``."""
        R = self.R[gid]
        pl = np.einsum("nji,nj->ni", R, p - self.t[gid])
        nl = np.abs(np.einsum("nji,nj->ni", R, n))
        ax = np.argmax(nl, axis=1)
        uv = np.where((ax == 0)[:, None], pl[:, [1, 2]], np.where((ax == 1)[:, None], pl[:, [0, 2]], pl[:, [0, 1]]))
        curved = (self.uv_mode[gid] != UV_BOX) & (ax != 2) | (self.uv_mode[gid] == UV_SPHERE)
        if curved.any():
            ang = np.arctan2(pl[curved, 1], pl[curved, 0])
            uv[curved] = np.stack([ang * self.radius[gid[curved]], pl[curved, 2]], 1)
        return uv


def _pixel_rays(K: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (H, W, 3) in the camera frame through pixel centres, and their z component."""
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d, d[..., 2]


def render_frame(
    renderer: RoomRenderer,
    K: np.ndarray,
    world_T_cam: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator | None = None,
    depth_noise: bool = False,
    holes: bool = False,
    shadows: bool = True,
) -> dict[str, np.ndarray]:
    """Render one view.

    Returns ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres along the optical axis (0 = invalid),
    ``labels`` (H, W) uint8 (255 where a ray hits nothing), ``t_hit`` (H, W) ray length of unit rays and
    ``ray_dirs_cam`` (H, W, 3) their camera-frame directions. ``rng`` drives the sensor effects only.
    """
    d_cam, dz = _pixel_rays(K, height, width)
    R, t = world_T_cam[:3, :3], world_T_cam[:3, 3]
    d_world = d_cam @ R.T
    hit = renderer.cast(t, d_world)
    t_hit = hit["t_hit"].astype(np.float64)
    gid = hit["geometry_ids"].astype(np.int64)
    valid = np.isfinite(t_hit) & (gid != renderer.scene.INVALID_ID)
    gid = np.where(valid, gid, len(renderer.cls) - 1)
    labels = renderer.cls[gid]
    depth = np.where(valid, t_hit * dz, 0.0)

    # shading
    idx = np.flatnonzero(valid.ravel())
    g = gid.ravel()[idx]
    dw = d_world.reshape(-1, 3)[idx]
    p = t + dw * t_hit.ravel()[idx, None]
    n = hit["primitive_normals"].reshape(-1, 3)[idx].astype(np.float64)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    facing = np.einsum("ij,ij->i", n, dw)
    n[facing > 0] *= -1  # normals face the camera
    mats = {
        "pattern": renderer.pattern[g],
        "c1": renderer.c1[g],
        "c2": renderer.c2[g],
        "scale": renderer.scale[g],
        "angle": renderer.angle[g],
        "seed": renderer.seed[g],
    }
    albedo = texture(renderer.uv(g, p, n), mats)
    spec = renderer.spec
    light = np.full(len(idx), spec.ambient) * (0.8 + 0.2 * np.abs(n[:, 2]))
    for lp, inten in spec.lights:
        L = lp - p
        dist = np.linalg.norm(L, axis=1)
        ldir = L / dist[:, None]
        lam = np.clip(np.einsum("ij,ij->i", n, ldir), 0, None)
        if shadows:
            lit = lam > 0
            occ = np.zeros(len(idx), bool)
            if lit.any():
                occ[lit] = renderer.occluded(p[lit] + n[lit] * 2e-3, L[lit], tfar=0.999)
            lam = np.where(occ, 0.0, lam)
        light += inten * lam / (1.0 + 0.08 * dist**2)
    em = renderer.emissive[g]
    col = albedo * np.where(em, 1.0, light)[:, None]
    rgb_lin = np.zeros((height * width, 3))
    rgb_lin[idx] = col
    rgb_lin = 1.0 - np.exp(-spec.exposure * rgb_lin)  # soft highlight roll-off instead of clipping
    rgb = (np.clip(rgb_lin, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)

    if depth_noise or holes:
        if rng is None:
            raise ValueError("render_frame: depth_noise/holes need an rng")
        glass = np.zeros(height * width, bool)
        glass[idx] = renderer.emissive[g]  # window panes: no return from glass
        depth = apply_sensor_effects(
            depth,
            rng,
            K,
            cos_incidence=_cos_map(facing, idx, height, width),
            noise=depth_noise,
            holes=holes,
            no_return=glass.reshape(height, width),
        )
    return {
        "rgb": rgb,
        "depth": depth.astype(np.float32),
        "labels": labels.astype(np.uint8),
        "t_hit": np.where(valid, t_hit, np.inf).astype(np.float32),
        "ray_dirs_cam": d_cam,
    }


def _cos_map(facing: np.ndarray, idx: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros(h * w)
    out[idx] = np.abs(facing)
    return out.reshape(h, w)


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


# ---------------------------------------------------------------------------------------------- dataset


def split_scenes(scene_ids: list[str], frames: dict[str, list[str]]) -> dict[str, list[str]]:
    """Splits by scene, 70/15/15 % with at least one scene each (≥ 3 scenes); with fewer scenes the last
    scene's frames are divided (2 scenes: train = scene 0, val/test = halves of scene 1)."""
    n = len(scene_ids)
    if n >= 3:
        n_val = max(1, int(round(0.15 * n)))
        n_test = max(1, int(round(0.15 * n)))
        n_train = n - n_val - n_test
        return {
            "train": scene_ids[:n_train],
            "val": scene_ids[n_train : n_train + n_val],
            "test": scene_ids[n_train + n_val :],
        }
    last = scene_ids[-1]
    fk = [f"{last}/{f}" for f in frames[last]]
    if n == 2:
        half = max(1, len(fk) // 2)
        return {"train": [scene_ids[0]], "val": fk[:half], "test": fk[half:] or fk[-1:]}
    a, b = max(1, int(0.7 * len(fk))), max(2, int(0.85 * len(fk)))
    return {"train": fk[:a], "val": fk[a:b] or fk[-1:], "test": fk[b:] or fk[-1:]}


def _prepare_output(out: Path) -> None:
    """Create ``out``; if it holds an earlier output of this generator, delete that output first (its
    scene directories, ``viewal.json`` and the derived ``.viewal_cache``, whose superpixels would be stale).
    Refuses a non-empty directory that is not generator output."""
    import json
    import shutil

    if out.exists() and not out.is_dir():
        raise ValueError(f"generate: output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        meta_path = out / "viewal.json"
        meta = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError:
                meta = {}
        if (meta.get("generator") or {}).get("name") != "viewal.datasets.synthetic":
            raise ValueError(
                f"generate: output directory {out} is not empty and was not written by "
                "'viewal generate'; choose a new directory"
            )
        for p in out.iterdir():
            if p.is_dir() and (p.name.startswith("scene") or p.name == ".viewal_cache"):
                shutil.rmtree(p)
        meta_path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out: str | Path,
    scenes: int = DEFAULT_SCENES,
    frames: int = DEFAULT_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    depth_noise: bool = False,
    holes: bool = False,
    shadows: bool = True,
    color_ext: str = ".jpg",
    progress: bool = True,
) -> Path:
    """Generate ``scenes`` rooms × ``frames`` views into ``out`` (canonical layout) and return ``out``.

    Scene ``k`` depends only on ``(seed, k)``, so a larger ``scenes`` adds rooms without changing the
    first ones. Deterministic: the same arguments give byte-identical files.
    """
    from viewal.progress import progress_bar

    from .canonical import write_frame, write_meta, write_scene_intrinsics

    if scenes < 1 or frames < 1:
        raise ValueError(f"generate_dataset: need scenes >= 1 and frames >= 1, got scenes={scenes}, frames={frames}")
    if height < 8 or width < 8:
        raise ValueError(f"generate_dataset: image size {width}x{height} too small")
    if color_ext not in (".jpg", ".png"):
        raise ValueError(f"generate_dataset: color_ext must be '.jpg' or '.png', got {color_ext!r}")
    out = Path(out)
    _prepare_output(out)
    K = default_intrinsics(height, width)
    scene_ids = [f"scene{k:04d}" for k in range(scenes)]
    frame_ids = {s: [f"{i:06d}" for i in range(frames)] for s in scene_ids}
    kinds = {}
    bar = progress_bar(total=scenes * frames, desc="generate", unit="frame", disable=not progress)
    for k, sid in enumerate(scene_ids):
        rng = np.random.default_rng([seed, k])
        spec = build_scene(rng)
        kinds[sid] = spec.kind
        renderer = RoomRenderer(spec)
        poses = camera_trajectory(np.random.default_rng([seed, k, 1]), spec, frames)
        write_scene_intrinsics(out, sid, K)
        for i, (fid, pose) in enumerate(zip(frame_ids[sid], poses)):
            frng = np.random.default_rng([seed, k, 2, i])
            r = render_frame(
                renderer, K, pose, height, width, rng=frng, depth_noise=depth_noise, holes=holes, shadows=shadows
            )
            write_frame(
                out, sid, fid, rgb=r["rgb"], depth=r["depth"], world_T_cam=pose, labels=r["labels"], color_ext=color_ext
            )
            bar.update(1)
    bar.close()
    write_meta(
        out,
        class_names=CLASS_NAMES,
        splits=split_scenes(scene_ids, frame_ids),
        height=height,
        width=width,
        generator={
            "name": "viewal.datasets.synthetic",
            "scenes": scenes,
            "frames": frames,
            "seed": seed,
            "depth_noise": depth_noise,
            "holes": holes,
            "shadows": shadows,
        },
        scene_kinds=kinds,
    )
    return out
