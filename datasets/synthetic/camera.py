"""Cameras: pinhole intrinsics, look-at poses and the smooth walk through a room that gives each frame's pose."""
from __future__ import annotations

import math

import numpy as np

from .room import SceneSpec

__all__ = ["default_intrinsics", "look_at", "camera_trajectory"]


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
