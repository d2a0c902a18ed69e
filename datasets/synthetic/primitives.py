"""Primitive meshes (box, frustum, ellipsoid), rigid transforms, and :class:`Part`: one primitive with a
pose, a class and a material; :func:`placed` moves an object's parts into the room."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .materials import Material

__all__ = ["UV_BOX", "UV_CYL", "UV_SPHERE", "mesh_box", "mesh_frustum", "mesh_sphere", "rot_z", "rigid", "Part",
           "box_part", "placed"]

# how a primitive maps surface points to texture coordinates
UV_BOX, UV_CYL, UV_SPHERE = range(3)


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


def placed(parts: list[Part], yaw: float, pos) -> list[Part]:
    """Move object-frame parts to the room: rotate by ``yaw`` about z, then translate to ``pos``."""
    T = rigid(rot_z(yaw), pos)
    return [Part(p.shape, p.dims, T @ p.T, p.cls, p.mat) for p in parts]
