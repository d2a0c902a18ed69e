"""Test twins, not part of the package: naive reference implementations the tests compare the fast ones with,
and tiny synthetic scenes (a box room of planes ray-cast analytically with NumPy) for the kernel tests and
benchmarks.

Independent of ``viewal.datasets.synthetic``. The benchmark scripts import this module from ``tests/``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OVERLAP_THRESHOLD = 0.25  # viewal.selection.OVERLAP_THRESHOLD, restated: the twin is written from the paper


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 world_T_cam of an OpenCV camera (x right, y down, z forward) at ``eye`` looking at ``target``."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def intrinsics(h: int, w: int, fov_deg: float = 70.0) -> np.ndarray:
    f = 0.5 * w / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def raycast_box(K: np.ndarray, T: np.ndarray, h: int, w: int, size=(4.0, 3.0, 2.5),
                boxes=(((1.0, 0.8, 0.0), (1.8, 1.6, 0.9)),)) -> np.ndarray:
    """Depth (H, W) float32 of a room [0, sx]x[0, sy]x[0, sz] (camera inside) with axis-aligned box objects."""
    v, u = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    rays_c = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T       # z component = 1
    R, o = T[:3, :3], T[:3, 3]
    rays = rays_c @ R.T
    t_best = np.full((h, w), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):  # room walls from inside: nearest positive hit of the far planes
            for plane in (0.0, size[a]):
                t = (plane - o[a]) / rays[..., a]
                t = np.where(t > 1e-6, t, np.inf)
                t_best = np.minimum(t_best, t)
        for lo, hi in boxes:  # slab test
            lo, hi = np.asarray(lo), np.asarray(hi)
            t0 = (lo - o) / rays
            t1 = (hi - o) / rays
            tmin = np.nanmax(np.minimum(t0, t1), axis=-1)
            tmax = np.nanmin(np.maximum(t0, t1), axis=-1)
            hit = (tmax >= tmin) & (tmin > 1e-6)
            t_best = np.where(hit & (tmin < t_best), tmin, t_best)
    return np.where(np.isfinite(t_best), t_best, 0.0).astype(np.float32)  # z-depth since rays_c.z = 1


def smooth_probs(rng: np.random.Generator, n: int, c: int, h: int, w: int, sharp: float = 3.0) -> np.ndarray:
    """(N, C, H, W) float32 softmax of a smooth random field (low-frequency cosines)."""
    v, u = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    logits = np.zeros((n, c, h, w))
    for _ in range(3):
        fu, fv = rng.uniform(0.5, 3.0, size=(2, n, c, 1, 1))
        ph = rng.uniform(0, 2 * np.pi, size=(n, c, 1, 1))
        logits += rng.normal(size=(n, c, 1, 1)) * np.cos(2 * np.pi * (fu * u + fv * v) + ph)
    logits *= sharp
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def room_scene(n: int = 4, h: int = 24, w: int = 32, c: int = 5, seed: int = 0, hole_frac: float = 0.05):
    """A random scene in the box room: cameras near the centre looking at random points on the walls.

    Returns (probs (N,C,H,W) f32, depths (N,H,W) f32 with a few holes, Ks (N,3,3), poses (N,4,4)).
    """
    rng = np.random.default_rng(seed)
    K = intrinsics(h, w)
    poses, depths = [], []
    for _ in range(n):
        eye = rng.uniform([1.2, 1.0, 1.0], [2.8, 2.0, 1.8])
        target = eye + rng.normal(size=3) * np.array([1.0, 1.0, 0.3]) + np.array([0.0, 0.0, -0.2])
        T = look_at(eye, target)
        d = raycast_box(K, T, h, w)
        d[rng.random((h, w)) < hole_frac] = 0.0
        poses.append(T)
        depths.append(d)
    Ks = np.repeat(K[None], n, axis=0)
    return smooth_probs(rng, n, c, h, w), np.stack(depths), Ks, np.stack(poses)


def select_viewal_naive(score: Sequence[float], view: Sequence[float], sizes: Sequence[int],
                        available: Sequence[bool], coverage: dict[tuple[int, int], float], budget_pixels: int,
                        threshold: float = OVERLAP_THRESHOLD, choose_view: bool = True) -> list[int]:
    """Plain-Python twin of :func:`select_viewal`, written straight from ViewAL's paper (tests, benchmark).

    ``coverage[(t, s)]`` = fraction of region t covered by region s (global ids). Returns picked ids.
    """
    n = len(score)
    over: dict[int, set[int]] = {i: set() for i in range(n)}
    for (t, s), c in coverage.items():
        if c > threshold and t != s:
            over[t].add(s)
            over[s].add(t)
    flagged = [not a for a in available]
    key = [(-(x if x == x else -np.inf), i) for i, x in enumerate(score)]
    order = [i for _, i in sorted(key)]
    v = [(-np.inf if x != x else x) for x in view]
    picked, total = [], 0
    if budget_pixels <= 0:
        return picked
    for r in order:
        if flagged[r]:
            continue
        cands = [r] + sorted(q for q in over[r] if not flagged[q])
        best = cands[0]
        if choose_view:
            for q in cands[1:]:
                if v[q] > v[best]:
                    best = q
        for q in cands:
            flagged[q] = True
        for q in over[best]:
            flagged[q] = True
        flagged[best] = True
        picked.append(best)
        total += sizes[best]
        if total >= budget_pixels:
            break
    return picked


def labelling_scene(root, height: int, width: int, seed: int, class_names=("wall", "floor", "chair")):
    """A canonical dataset of one scene with two random frames ("000", "001") of ``height`` x ``width``,
    labels in 0..2, constant depth 2 m, identity poses: the labelling tests' export/import target."""
    from viewal.datasets.canonical import read_canonical, write_frame, write_meta, write_scene_intrinsics

    rng = np.random.default_rng(seed)
    K = np.array([[20.0, 0, (width - 1) / 2], [0, 20.0, (height - 1) / 2], [0, 0, 1]])
    write_scene_intrinsics(root, "scene0", K)
    for i in range(2):
        write_frame(root, "scene0", f"{i:03d}", rgb=rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                    depth=np.full((height, width), 2.0, np.float32), world_T_cam=np.eye(4),
                    labels=rng.integers(0, 3, (height, width)), color_ext=".png")
    write_meta(root, class_names=list(class_names), splits={"train": ["scene0"], "val": [], "test": []},
               height=height, width=width)
    return read_canonical(root)


def box_mask(height: int, width: int, y: int, x: int, h: int, w: int) -> np.ndarray:
    """(height, width) bool, True on the h x w box at (y, x)."""
    m = np.zeros((height, width), bool)
    m[y:y + h, x:x + w] = True
    return m
