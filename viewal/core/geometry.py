"""Geometry conventions of viewal, stated once and checked at public entry points.

Conventions
-----------
* **Intrinsics** ``K``: 3×3 OpenCV pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
  Pixel centres are at integer coordinates: pixel ``(u, v)`` (column ``u``, row ``v``) covers
  ``[u - 0.5, u + 0.5) × [v - 0.5, v + 0.5)``. A 3D point projects to ``round(x/z), round(y/z)``.
* **Depth**: metres along the camera's optical (z) axis, *not* the ray length. ``0`` or a non-finite
  value means "no measurement". Unit conversion (millimetres, ScanNet's ``depthShift``) happens in
  loaders only.
* **Pose** ``world_T_cam``: 4×4 rigid camera-to-world transform, ``X_world = world_T_cam @ X_cam``.
  The camera looks down +z, x to the right, y down (OpenCV).

Everything here is a small pure function on NumPy arrays; the Numba kernels in ``viewal.kernels``
implement the same formulas in their hot loops and are tested against these.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "GeometryError",
    "check_intrinsics",
    "check_pose",
    "check_depth",
    "check_image",
    "invalid_depth_mask",
    "scale_intrinsics",
    "pixel_grid",
    "backproject",
    "project",
    "transform",
    "invert_pose",
    "frustum_corners",
]

RIGID_TOL = 1e-3


class GeometryError(ValueError):
    """Bad geometric input: the message names the argument or file at fault."""


def _where(name: str, source: Any = None) -> str:
    return f"{name} ({source})" if source is not None else name


def check_intrinsics(K: Any, name: str = "K", source: Any = None) -> np.ndarray:
    """Validate an intrinsic matrix and return it as float64 (3, 3).

    Accepts a 3×3 matrix, or a 4×4 one (ScanNet's ``intrinsic_*.txt``) whose top-left 3×3 is used.
    Raises :class:`GeometryError` naming ``name``/``source`` on wrong shape, non-finite entries,
    non-positive focal lengths or a last row other than ``[0, 0, 1]``.
    """
    where = _where(name, source)
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (4, 4):
        K = K[:3, :3]
    if K.shape != (3, 3):
        raise GeometryError(f"{where}: intrinsics must be 3x3 (or 4x4), got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise GeometryError(f"{where}: intrinsics contain non-finite values")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise GeometryError(f"{where}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0], atol=1e-6):
        raise GeometryError(f"{where}: last row of K must be [0, 0, 1], got {K[2].tolist()}")
    return np.ascontiguousarray(K)


def check_pose(T: Any, name: str = "world_T_cam", source: Any = None, tol: float = RIGID_TOL) -> np.ndarray:
    """Validate a 4×4 rigid camera-to-world pose and return it as float64 (4, 4).

    Raises :class:`GeometryError` if the shape is wrong, any entry is non-finite (ScanNet writes
    ``-inf`` poses for frames where tracking failed), the last row is not ``[0, 0, 0, 1]`` or the
    rotation part is not orthonormal with determinant +1 (within ``tol``).
    """
    where = _where(name, source)
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise GeometryError(f"{where}: pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise GeometryError(f"{where}: pose contains non-finite values (tracking failure?)")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise GeometryError(f"{where}: last row of a pose must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    err = np.abs(R @ R.T - np.eye(3)).max()
    det = np.linalg.det(R)
    if err > tol or abs(det - 1.0) > tol:
        raise GeometryError(
            f"{where}: pose is not rigid (|R R^T - I|max = {err:.2e}, det R = {det:.4f}); "
            "expected a camera-to-world rotation + translation"
        )
    return np.ascontiguousarray(T)


def invalid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where depth carries no measurement (0, negative, or non-finite)."""
    depth = np.asarray(depth)
    return ~(np.isfinite(depth) & (depth > 0))


def check_depth(
    depth: Any,
    name: str = "depth",
    source: Any = None,
    shape: tuple[int, int] | None = None,
    allow_nonfinite: bool = True,
) -> np.ndarray:
    """Validate a depth map in metres and return it as float32 (H, W), invalid pixels set to 0.

    ``allow_nonfinite=False`` is for stored files: a NaN/inf in a depth *file* means a corrupt file
    (sensors write 0 for "no measurement"), so loaders raise instead of silently dropping it.
    Negative depths are always an error.
    """
    where = _where(name, source)
    d = np.asarray(depth)
    if d.ndim != 2:
        raise GeometryError(f"{where}: depth must be 2-D (H, W), got shape {d.shape}")
    if shape is not None and d.shape != tuple(shape):
        raise GeometryError(f"{where}: depth has shape {d.shape}, expected {tuple(shape)}")
    d = d.astype(np.float32, copy=True)
    finite = np.isfinite(d)
    if not allow_nonfinite and not finite.all():
        raise GeometryError(f"{where}: depth contains {int((~finite).sum())} NaN/inf values")
    if np.any(d[finite] < 0):
        raise GeometryError(f"{where}: depth contains negative values (min {float(d[finite].min())})")
    d[~finite] = 0.0
    return d


def check_image(img: Any, name: str = "rgb", source: Any = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate an RGB image: uint8 (H, W, 3); optionally of a given (H, W)."""
    where = _where(name, source)
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise GeometryError(f"{where}: image must be (H, W, 3), got shape {a.shape}")
    if a.dtype != np.uint8:
        raise GeometryError(f"{where}: image must be uint8, got {a.dtype}")
    if shape is not None and a.shape[:2] != tuple(shape):
        raise GeometryError(f"{where}: image has size {a.shape[1]}x{a.shape[0]}, expected {shape[1]}x{shape[0]}")
    return a


def scale_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``src_size`` to ``dst_size`` (both (H, W)).

    With integer pixel centres, a resize by factor s maps pixel coordinate u to
    ``(u + 0.5) * s - 0.5``, so ``fx' = s fx`` and ``cx' = s (cx + 0.5) - 0.5``.
    """
    K = np.asarray(K, dtype=np.float64)[:3, :3].copy()
    sy = dst_size[0] / src_size[0]
    sx = dst_size[1] / src_size[1]
    out = K.copy()
    out[0, 0] = K[0, 0] * sx
    out[0, 1] = K[0, 1] * sx
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 1] = K[1, 1] * sy
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel centres: ``u`` (H, W) column index and ``v`` (H, W) row index, float64."""
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return u, v


def transform(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply a 4×4 transform to points ``X`` (..., 3) → (..., 3)."""
    return X @ T[:3, :3].T + T[:3, 3]


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4×4 transform (exact for rigid poses)."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def backproject(depth: np.ndarray, K: np.ndarray, world_T_cam: np.ndarray | None = None) -> np.ndarray:
    """Back-project every pixel: depth (H, W) → points (H, W, 3), world frame if a pose is given.

    ``X = world_T_cam · [K⁻¹ (u·d, v·d, d)ᵀ; 1]``. Invalid pixels give NaN points.
    """
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    u, v = pixel_grid(h, w)
    d = np.where(invalid_depth_mask(depth), np.nan, depth)
    yn = (v - K[1, 2]) / K[1, 1]
    xn = (u - K[0, 2] - K[0, 1] * yn) / K[0, 0]  # skew K[0, 1] (0 for real cameras) inverted like in project()
    X = np.stack([xn * d, yn * d, d], axis=-1)
    if world_T_cam is not None:
        X = transform(world_T_cam, X)
    return X


def project(X_world: np.ndarray, K: np.ndarray, world_T_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project world points (..., 3) into a camera.

    Returns ``(u, v, z)``: continuous pixel coordinates (..., ) and camera-frame depth (...,).
    Callers round ``u, v`` to the nearest integer pixel centre and check ``z > 0`` and bounds.
    """
    Xc = transform(invert_pose(world_T_cam), X_world)
    z = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * Xc[..., 0] / z + K[0, 1] * Xc[..., 1] / z + K[0, 2]
        v = K[1, 1] * Xc[..., 1] / z + K[1, 2]
    return u, v, z


def frustum_corners(K: np.ndarray, world_T_cam: np.ndarray, h: int, w: int, near: float, far: float) -> np.ndarray:
    """World-frame corners (8, 3) of the view frustum between depths ``near`` and ``far``."""
    uv = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    pts = []
    for d in (near, far):
        x = (uv[:, 0] - K[0, 2]) / K[0, 0] * d
        y = (uv[:, 1] - K[1, 2]) / K[1, 1] * d
        pts.append(np.stack([x, y, np.full(4, d)], axis=1))
    return transform(world_T_cam, np.concatenate(pts))
