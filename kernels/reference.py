"""NumPy reference of the kernels: vectorised, short, obviously right, and slow (every frame pair).

Written with :mod:`viewal.geometry` (``backproject``, ``project``) and not with the shared scalar
formulas of ``_math`` so that it is an independent twin of the Numba/CUDA kernels. Inputs are assumed
validated (``_common.check_*``): depths (N, H, W) float32 with invalid = 0.
"""
from __future__ import annotations

import numpy as np

from viewal.geometry import backproject, project, transform

from ._math import MODE_Z, VIEWAL_WORLD_DISTANCE

EPS_ENT = 1e-12
EPS_KL = 1e-8


def correspondences(X: np.ndarray, valid: np.ndarray, depth_j: np.ndarray, K_j: np.ndarray, T_j: np.ndarray,
                    mode: int, abs_tol: float, rel_tol: float,
                    world_distance: float = VIEWAL_WORLD_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Where world points land in frame j and whether they pass the depth test.

    Args:
        X: (M, 3) world points; valid: (M,) bool (points with a valid depth).
        depth_j: (H, W) depth of frame j (invalid = 0); K_j (3, 3); T_j (4, 4) world_T_cam.
    Returns:
        idx: (M,) int64 flat pixel index ``v' * W + u'`` in frame j (0 where not ok); ok: (M,) bool.
    """
    h, w = depth_j.shape
    Xs = np.where(valid[:, None], X, 0.0)
    u, v, z = project(Xs, K_j, T_j)
    with np.errstate(invalid="ignore"):
        ui = np.floor(u + 0.5)
        vi = np.floor(v + 0.5)
        ok = valid & (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    idx = np.where(ok, vi * w + ui, 0).astype(np.int64)
    dj = depth_j.reshape(-1)[idx].astype(np.float64)
    ok &= dj > 0
    if mode == MODE_Z:
        ok &= np.abs(z - dj) <= abs_tol + rel_tol * z
    else:
        pix = np.stack([idx % w, idx // w, np.ones_like(idx)], axis=1).astype(np.float64)
        Xp = transform(T_j, (pix @ np.linalg.inv(K_j).T) * dj[:, None])   # back-projected D_j(u', v')
        with np.errstate(invalid="ignore"):
            ok &= np.linalg.norm(Xs - Xp, axis=1) < world_distance
    return np.where(ok, idx, 0), ok


def ve_vd_reference(probs: np.ndarray, scene) -> tuple[np.ndarray, np.ndarray]:
    """View entropy and view divergence (Siddiqui et al., CVPR 2020, Sec. 3.2), every frame against every frame.

    probs (N, C, H, W) float32; scene: ``_common.Scene``. Returns ve, vd: (N, H, W) float32.
    """
    n, c, h, w = probs.shape
    P = probs.reshape(n, c, h * w).astype(np.float64)
    logP = np.log2(P + EPS_KL)
    ve = np.zeros((n, h * w))
    vd = np.zeros((n, h * w))
    for i in range(n):
        X = backproject(scene.depths[i], scene.Ks[i], scene.poses[i]).reshape(-1, 3)
        valid = (scene.depths[i] > 0).reshape(-1)
        qsum = P[i].copy()                 # the pixel itself is always in S_x
        count = np.ones(h * w)
        kl = np.zeros(h * w)
        for j in range(n):
            if j == i:
                continue
            idx, ok = correspondences(X, valid, scene.depths[j], scene.Ks[j], scene.poses[j],
                                      scene.mode, scene.abs_tol, scene.rel_tol, scene.world_distance)
            qsum[:, ok] += P[j][:, idx[ok]]
            kl[ok] += np.sum(P[i][:, ok] * (logP[i][:, ok] - logP[j][:, idx[ok]]), axis=0)
            count[ok] += 1
        Q = qsum / qsum.sum(axis=0, keepdims=True)
        ve[i] = -np.sum(Q * np.log2(Q + EPS_ENT), axis=0)
        vd[i] = kl / count
    return ve.reshape(n, h, w).astype(np.float32), vd.reshape(n, h, w).astype(np.float32)


def overlap_reference(superpixels: np.ndarray, counts: np.ndarray, scene) -> dict[tuple[int, int, int, int], float]:
    """Superpixel overlap as a dict ``(t, r, s, q) -> cov`` (ViewAL Sec. 3.4; docs/bench_kernels.md), every frame pair.

    cov(t, r; s, q) = #(depth-consistent pixels of superpixel q of frame s landing in r of frame t) / |r|.
    Self rows: each pixel corresponds to itself, so cov(s, q; s, q) = 1 for every non-empty q.
    superpixels: (N, H, W) int32; counts: (N,) superpixel counts R_i.
    """
    n, h, w = superpixels.shape
    out: dict[tuple[int, int, int, int], float] = {}
    sizes = [np.bincount(superpixels[t].reshape(-1), minlength=int(counts[t])) for t in range(n)]
    for s in range(n):
        X = backproject(scene.depths[s], scene.Ks[s], scene.poses[s]).reshape(-1, 3)
        valid = (scene.depths[s] > 0).reshape(-1)
        sp_s = superpixels[s].reshape(-1)
        for q in np.nonzero(sizes[s])[0]:
            out[(s, int(q), s, int(q))] = 1.0
        for t in range(n):
            if t == s:
                continue
            idx, ok = correspondences(X, valid, scene.depths[t], scene.Ks[t], scene.poses[t],
                                      scene.mode, scene.abs_tol, scene.rel_tol, scene.world_distance)
            if not ok.any():
                continue
            r = superpixels[t].reshape(-1)[idx[ok]]
            q = sp_s[ok]
            pairs, cnt = np.unique(np.stack([r, q], axis=1), axis=0, return_counts=True)
            for (rr, qq), k in zip(pairs, cnt):
                out[(t, int(rr), s, int(qq))] = float(k) / float(sizes[t][rr])
    return out
