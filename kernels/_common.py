"""Input validation and the frame-pair bound shared by every backend (NumPy only, no Numba)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from viewal.core.geometry import GeometryError, check_intrinsics, check_pose

from ._math import AGGREGATIONS, MODES, VIEWAL_WORLD_DISTANCE
from .depth_test import BACKENDS, DEPTH_TEST, DepthTest

PROB_SUM_TOL = 1e-3


@dataclass(frozen=True)
class Scene:
    """Validated geometry of one scene.

    depths: (N, H, W) float32, invalid pixels set to 0; Ks, Kinvs: (N, 3, 3) float64;
    poses: (N, 4, 4) float64 world_T_cam; mode: int (``_math.MODE_*``); abs_tol, rel_tol: floats;
    world_distance: mode-viewal threshold (metres); aggregation: int (``_math.AGG_*``).
    """

    depths: np.ndarray
    Ks: np.ndarray
    Kinvs: np.ndarray
    poses: np.ndarray
    mode: int
    abs_tol: float
    rel_tol: float
    world_distance: float = VIEWAL_WORLD_DISTANCE
    aggregation: int = AGGREGATIONS["gather"]

    @property
    def n(self) -> int:
        return self.depths.shape[0]

    @property
    def max_dist2(self) -> float:
        return self.world_distance ** 2


def check_backend(backend: str) -> str:
    """``backend`` when it is known and usable here: ``"cuda"`` needs a CUDA GPU that Numba can see."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "cuda" and not cuda_available():
        raise ValueError("backend 'cuda': no CUDA GPU found (numba.cuda.is_available() is False); "
                         f"backends: {', '.join(BACKENDS)}; 'cpu' (Numba, parallel) runs anywhere")
    return backend


def cuda_available() -> bool:
    """True when Numba finds a usable CUDA GPU (never raises)."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # no CUDA toolkit, driver or device
        return False


def check_depth_test(depth_test: Any) -> DepthTest:
    """``depth_test`` when it is a :class:`DepthTest` whose backend is usable here (``check_backend``)."""
    if not isinstance(depth_test, DepthTest):
        raise TypeError(f"depth_test: expected a viewal.kernels.DepthTest, got {type(depth_test).__name__} "
                        "(DepthTest.from_dict builds one from a dict)")
    check_backend(depth_test.backend)
    return depth_test


def check_scene(depths: Any, Ks: Any, world_T_cams: Any, test: DepthTest = DEPTH_TEST) -> Scene:
    """Validate the geometric inputs of a scene (the depth test ``test`` is validated when it is built);
    raise errors naming the argument at fault."""
    d = np.asarray(depths)
    if d.ndim != 3:
        raise GeometryError(f"depths: expected shape (N, H, W), got {d.shape}")
    n = d.shape[0]
    if n == 0:
        raise GeometryError("depths: a scene needs at least one frame (N = 0)")
    if not np.issubdtype(d.dtype, np.number):
        raise GeometryError(f"depths: expected a numeric array, got dtype {d.dtype}")
    d = d.astype(np.float32, copy=True)
    finite = np.isfinite(d)
    if np.any(d[finite] < 0):
        raise GeometryError(f"depths: negative depth values (min {float(d[finite].min())})")
    d[~finite] = 0.0
    Ks_a = np.asarray(Ks, dtype=np.float64)
    if Ks_a.ndim != 3 or Ks_a.shape[0] != n:
        raise GeometryError(f"Ks: expected shape ({n}, 3, 3) to match depths, got {Ks_a.shape}")
    Ks_a = np.stack([check_intrinsics(Ks_a[i], name=f"Ks[{i}]") for i in range(n)])
    T = np.asarray(world_T_cams, dtype=np.float64)
    if T.ndim != 3 or T.shape[0] != n:
        raise GeometryError(f"world_T_cams: expected shape ({n}, 4, 4) to match depths, got {T.shape}")
    T = np.stack([check_pose(T[i], name=f"world_T_cams[{i}]") for i in range(n)])
    Kinvs = np.linalg.inv(Ks_a)
    return Scene(np.ascontiguousarray(d), Ks_a, Kinvs, T, MODES[test.mode], *test.depth_tol, test.world_distance,
                 AGGREGATIONS[test.aggregation])


def check_probs(probs: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Validate per-pixel class distributions (N, C, H, W) matching depths (N, H, W); return float32."""
    p = np.asarray(probs)
    n, h, w = shape
    if p.ndim != 4 or p.shape[0] != n or p.shape[2:] != (h, w):
        raise ValueError(f"probs: expected shape ({n}, C, {h}, {w}) to match depths, got {p.shape}")
    if p.shape[1] < 1:
        raise ValueError("probs: need at least one class (C = 0)")
    p = np.ascontiguousarray(p, dtype=np.float32)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs: contains NaN/inf values")
    if p.min() < 0:
        raise ValueError(f"probs: contains negative values (min {float(p.min())}); expected distributions")
    s = p.sum(axis=1, dtype=np.float64)
    err = float(np.abs(s - 1.0).max())
    if err > PROB_SUM_TOL:
        raise ValueError(f"probs: class probabilities must sum to 1 per pixel (max |sum - 1| = {err:.3g}); "
                         "pass softmax outputs, not logits")
    return p


def check_superpixels(superpixels: Any, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate superpixel id maps (N, H, W), ids 0..R_i-1; return (int32 maps, (N,) counts R_i)."""
    s = np.asarray(superpixels)
    if s.shape != tuple(shape):
        raise ValueError(f"superpixels: expected shape {tuple(shape)} to match depths, got {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"superpixels: expected integer ids, got dtype {s.dtype}")
    if s.size and s.min() < 0:
        raise ValueError(f"superpixels: ids must be >= 0, got min {int(s.min())}")
    s = np.ascontiguousarray(s, dtype=np.int32)
    counts = s.reshape(s.shape[0], -1).max(axis=1).astype(np.int64) + 1
    return s, counts


def relative_poses(poses: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(P, 3, 4) ``cam_dst_T_cam_src`` for index arrays ``src``, ``dst`` (P,)."""
    R = poses[:, :3, :3]
    t = poses[:, :3, 3]
    Rd_T = np.transpose(R[dst], (0, 2, 1))
    Rm = Rd_T @ R[src]
    tm = np.einsum("pij,pj->pi", Rd_T, t[src] - t[dst])
    return np.ascontiguousarray(np.concatenate([Rm, tm[:, :, None]], axis=2))


def camera_boxes(scene: Scene, sources: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (N, 8, 3) corners of the camera-frame bounding box of its valid back-projected points,
    and (N,) bool "has at least one valid pixel". ``sources``: optional (N, H, W) bool, the pixels to bound
    (only the valid ones among them count); default every valid pixel."""
    n, h, w = scene.depths.shape
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    corners = np.zeros((n, 8, 3))
    has = np.zeros(n, bool)
    for i in range(n):
        d = scene.depths[i].astype(np.float64)
        m = d > 0 if sources is None else (d > 0) & sources[i]
        if not m.any():
            continue
        has[i] = True
        ray = np.stack([u[m], v[m], np.ones(int(m.sum()))])
        X = (scene.Kinvs[i] @ ray) * d[m]
        lo, hi = X.min(axis=1), X.max(axis=1)
        corners[i] = np.array([[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                               for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    return corners, has


def far_bounds(scene: Scene) -> np.ndarray:
    """(N,) float64: per frame j, the largest camera-j depth p_z a point can have and still pass the depth
    test in j (its farthest valid depth plus the test's tolerance)."""
    n = scene.depths.shape[0]
    dmax = np.array([float(scene.depths[j].max()) if scene.depths[j].size else 0.0 for j in range(n)])
    if scene.mode == MODES["z"]:
        return (dmax + scene.abs_tol) / (1.0 - scene.rel_tol)
    return dmax + scene.world_distance


def candidate_pairs(scene: Scene, sources: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ordered frame pairs (src, dst), src != dst, whose points may pass the test in dst.

    The cheap, conservative bound: the camera-frame bounding box of src's valid points, moved into dst's
    camera, must not lie entirely outside one of dst's frustum half-spaces (in front of the camera,
    inside the four image borders, nearer than the farthest depth dst could confirm). ``sources``: optional
    (N, H, W) bool, the only pixels of each src frame that will be projected (e.g. the labelled ones): the
    box bounds those, and a frame without any is no src; dst frames keep all their valid pixels. Returns
    two int64 arrays (P,), sorted by src then dst.
    """
    n, h, w = scene.depths.shape
    corners, has_src = camera_boxes(scene, sources)
    has = has_src if sources is None else (scene.depths > 0).reshape(n, -1).any(axis=1)
    zfar = far_bounds(scene)
    src, dst = np.nonzero(~np.eye(n, dtype=bool) & has_src[:, None] & has[None, :])
    if src.size == 0:
        return src.astype(np.int64), dst.astype(np.int64)
    keep = np.empty(src.size, bool)
    step = 65536
    for a in range(0, src.size, step):
        s, d = src[a:a + step], dst[a:a + step]
        M = relative_poses(scene.poses, s, d)
        P = np.einsum("pij,pkj->pki", M[:, :, :3], corners[s]) + M[:, None, :, 3]  # (p, 8, 3) in cam dst
        K = scene.Ks[d]
        ku = np.einsum("pj,pkj->pk", K[:, 0], P)  # K row 0 . p  (= u' * z)
        kv = np.einsum("pj,pkj->pk", K[:, 1], P)
        z = P[..., 2]
        eps = 1e-9 * (1.0 + np.abs(P).max(axis=(1, 2)))[:, None]
        planes = [
            z > -eps,                                # in front of the camera
            ku + 0.5 * z >= -eps,                    # u' >= -0.5
            (w - 0.5) * z - ku > -eps,               # u' <  W - 0.5
            kv + 0.5 * z >= -eps,                    # v' >= -0.5
            (h - 0.5) * z - kv > -eps,               # v' <  H - 0.5
            z <= zfar[d][:, None] + eps,             # not beyond what dst's depth can confirm
        ]
        ok = np.ones(s.size, bool)
        for inside in planes:
            ok &= inside.any(axis=1)
        keep[a:a + step] = ok
    return src[keep].astype(np.int64), dst[keep].astype(np.int64)
