"""Public entry point for view entropy / view divergence (ViewAL Sec. 3.2; docs/bench_kernels.md)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._common import Scene, candidate_pairs, check_depth_test, check_probs, check_scene, far_bounds, relative_poses
from ._math import AGG_SPLAT
from .depth_test import DEPTH_TEST, DepthTest
from .reference import ve_vd_reference

EPS_KL = 1e-8


def neighbour_lists(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists of the other frames of each target frame: (ptr (N+1,), other (P,) int32, M (P, 3, 4)).

    Only pairs whose points may land in the other frame are listed (``candidate_pairs``). Gather: target i's
    pixels are cross-projected into frames ``other[ptr[i]:ptr[i+1]]``, M = cam_other_T_cam_i. Splat: the
    pixels of those frames are cross-projected into target i, M = cam_i_T_cam_other. Either way M maps the
    projected points into the camera whose depth tests them.
    """
    a, b = candidate_pairs(scene)          # a's points may land in b (M = cam_b_T_cam_a)
    target, other = (b, a) if scene.aggregation == AGG_SPLAT else (a, b)
    order = np.lexsort((other, target))
    a, b, target, other = a[order], b[order], target[order], other[order]
    ptr = np.zeros(scene.n + 1, np.int64)
    np.cumsum(np.bincount(target, minlength=scene.n), out=ptr[1:])
    M = relative_poses(scene.poses, a, b) if a.size else np.zeros((0, 3, 4))
    return ptr, other.astype(np.int32), M


def view_entropy_divergence(probs: Any, depths: Any, Ks: Any, world_T_cams: Any, *,
                            depth_test: DepthTest = DEPTH_TEST) -> tuple[np.ndarray, np.ndarray]:
    """View entropy and view divergence of every pixel of one scene.

    For pixel x of frame i, S_x is (i, x) itself plus the pixels (j, y) of the other frames matched with x
    by the aggregation: ``"gather"`` (docs/methods.md, "ViewAL's own computation") — the pixel y that x
    cross-projects to in each frame j, if it passes the depth test (at most one per view); ``"splat"``
    (ViewAL's) — every valid pixel y of every other frame whose point cross-projects onto x and passes the
    test against D_i (any number per view).
    A pixel with invalid depth has S_x = {(i, x)} either way. ``ve`` = entropy (log2, eps 1e-12) of the
    normalised sum of P_j(y) over S_x; ``vd`` = mean over S_x of KL(P_i(x) || P_j(y)) (log2, eps 1e-8),
    clamped at 0.

    Args:
        probs: (N, C, H, W) float32 per-pixel class distributions (non-negative, sum to 1).
        depths: (N, H, W) metres along the optical axis; 0 or non-finite = invalid.
        Ks: (N, 3, 3) OpenCV intrinsics. world_T_cams: (N, 4, 4) camera-to-world rigid poses.
        depth_test: :class:`~viewal.kernels.DepthTest` — the test's mode and tolerances or distance, the
            aggregation and the backend (``"numpy"`` reference over every frame pair, ``"cpu"`` Numba,
            ``"cuda"`` Numba CUDA, chosen explicitly, never guessed; all agree within 1e-5). Default
            :data:`~viewal.kernels.DEPTH_TEST` (mode ``"z"``, (0.05 m, 0.02), gather, CPU).
    Returns:
        ve, vd: (N, H, W) float32.
    Raises:
        ValueError / GeometryError naming the argument on bad shapes, non-distributions, bad poses, an
        unusable backend; TypeError when ``depth_test`` is not a DepthTest.
    """
    backend = check_depth_test(depth_test).backend
    scene = check_scene(depths, Ks, world_T_cams, depth_test)
    P = check_probs(probs, scene.depths.shape)
    if backend == "numpy":
        return ve_vd_reference(P, scene)
    ptr, src, M = neighbour_lists(scene)
    n, c, h, w = P.shape
    ve = np.empty((n, h, w), np.float32)
    vd = np.empty((n, h, w), np.float32)
    if backend == "cpu":
        from . import cpu

        pl = np.empty((n, h, w, 2 * c), np.float32)
        cpu.to_pixel_major(P, EPS_KL, pl)
        kernel = cpu.ve_vd_splat_kernel if scene.aggregation == AGG_SPLAT else cpu.ve_vd_kernel
        kernel(pl, scene.depths, scene.Kinvs, scene.Ks, far_bounds(scene), ptr, src, M, scene.mode,
               scene.abs_tol, scene.rel_tol, scene.max_dist2, ve, vd)
        return ve, vd
    from . import cuda as cuda_backend

    return cuda_backend.ve_vd(P, scene, ptr, src, M)
