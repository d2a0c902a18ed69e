"""NumPy reference of the kernels: vectorised, short, obviously right, and slow (every frame pair).

The aggregation (which pixels a target pixel collects, and the entropy / KL of what it collects) is
written independently of the Numba/CUDA kernels: KL term by term, sums with ``np.add.at``, no sums of
logs. The per-point geometry is the same arithmetic as ``_math.correspond`` written vectorised
(``correspond_points``): the depth test is a comparison with a threshold, and a point *on* the threshold
must fall on the same side in every backend, which needs the same frame, the same matrices and the same
operation order (a test checks ``correspond_points`` against the scalar formula bit for bit).
Inputs are assumed validated (``_common.check_*``): depths (N, H, W) float32 with invalid = 0.
"""
from __future__ import annotations

import numpy as np

from ._common import relative_poses
from ._math import AGG_SPLAT, MODE_Z

EPS_ENT = 1e-12
EPS_KL = 1e-8


def camera_points(depth: np.ndarray, Kinv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame points of the valid pixels of one frame (``_math.backproject_pixel``, vectorised).

    depth (H, W) float32, invalid 0; Kinv (3, 3). Returns (pix (M,) int64 flat indices of the valid pixels,
    x, y, z (M,) float64).
    """
    h, w = depth.shape
    pix = np.flatnonzero(depth.reshape(-1) > 0)
    u = (pix % w).astype(np.float64)
    v = (pix // w).astype(np.float64)
    d = depth.reshape(-1)[pix].astype(np.float64)
    x = d * (Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2])
    y = d * (Kinv[1, 0] * u + Kinv[1, 1] * v + Kinv[1, 2])
    z = d * (Kinv[2, 0] * u + Kinv[2, 1] * v + Kinv[2, 2])
    return pix, x, y, z


def correspond_points(x: np.ndarray, y: np.ndarray, z: np.ndarray, M: np.ndarray, K: np.ndarray, Kinv: np.ndarray,
                      depth: np.ndarray, mode: int, abs_tol: float, rel_tol: float, max_dist2: float) -> np.ndarray:
    """``_math.correspond`` for many points at once: (M,) int64 flat pixel index in frame j, or -1.

    x, y, z (M,) float64 points in camera i's frame; M (3, 4) cam_j_T_cam_i; K, Kinv (3, 3) of frame j;
    depth (H, W) of frame j; mode, abs_tol, rel_tol, max_dist2 as in ``_math.correspond``.
    """
    h, w = depth.shape
    px = M[0, 0] * x + M[0, 1] * y + M[0, 2] * z + M[0, 3]
    py = M[1, 0] * x + M[1, 1] * y + M[1, 2] * z + M[1, 3]
    pz = M[2, 0] * x + M[2, 1] * y + M[2, 2] * z + M[2, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uf = np.floor((K[0, 0] * px + K[0, 1] * py + K[0, 2] * pz) / pz + 0.5)
        vf = np.floor((K[1, 0] * px + K[1, 1] * py + K[1, 2] * pz) / pz + 0.5)
        ok = (pz > 0.0) & (uf >= 0.0) & (uf < w) & (vf >= 0.0) & (vf < h)
    uf = np.where(ok, uf, 0.0)
    vf = np.where(ok, vf, 0.0)
    idx = vf.astype(np.int64) * w + uf.astype(np.int64)
    dj = depth.reshape(-1)[idx].astype(np.float64)
    ok &= dj > 0.0
    if mode == MODE_Z:
        ok &= ~(np.abs(pz - dj) > abs_tol + rel_tol * pz)
    else:
        qx = dj * (Kinv[0, 0] * uf + Kinv[0, 1] * vf + Kinv[0, 2])
        qy = dj * (Kinv[1, 0] * uf + Kinv[1, 1] * vf + Kinv[1, 2])
        qz = dj * (Kinv[2, 0] * uf + Kinv[2, 1] * vf + Kinv[2, 2])
        dist2 = (px - qx) * (px - qx) + (py - qy) * (py - qy) + (pz - qz) * (pz - qz)
        ok &= dist2 < max_dist2
    return np.where(ok, idx, -1)


def matches(scene, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels of frame a whose points land in frame b and pass the depth test there.

    Returns (pix_a, pix_b): (M,) int64 flat pixel indices in frame a and the pixels of b they land on.
    """
    pix, x, y, z = camera_points(scene.depths[a], scene.Kinvs[a])
    M = relative_poses(scene.poses, np.array([a]), np.array([b]))[0]
    idx = correspond_points(x, y, z, M, scene.Ks[b], scene.Kinvs[b], scene.depths[b], scene.mode, scene.abs_tol,
                            scene.rel_tol, scene.max_dist2)
    ok = idx >= 0
    return pix[ok], idx[ok]


def ve_vd_reference(probs: np.ndarray, scene) -> tuple[np.ndarray, np.ndarray]:
    """View entropy and view divergence (Siddiqui et al., CVPR 2020, Sec. 3.2), every frame against every frame.

    The set of target pixel x of frame i is (i, x) itself plus, for every other frame j, the pixels y of j
    matched with x: gather = x's point lands on y in j; splat (``scene.aggregation``) = y's point lands on x
    in i (any number of y per view). VE = entropy of the normalised sum of their P; VD = mean KL(P_i(x) || P_j(y)),
    clamped at 0. probs (N, C, H, W) float32; scene: ``_common.Scene``. Returns ve, vd: (N, H, W) float32.
    """
    n, c, h, w = probs.shape
    P = probs.reshape(n, c, h * w).astype(np.float64)
    logP = np.log2(P + EPS_KL)
    ve = np.zeros((n, h * w))
    vd = np.zeros((n, h * w))
    splat = scene.aggregation == AGG_SPLAT
    for i in range(n):
        qsum = P[i].T.copy()               # (HW, C); the pixel itself is always in its set
        count = np.ones(h * w)
        kl = np.zeros(h * w)
        for j in range(n):
            if j == i:
                continue
            if splat:
                y, x = matches(scene, j, i)
            else:
                x, y = matches(scene, i, j)
            np.add.at(qsum, x, P[j][:, y].T)
            np.add.at(kl, x, np.sum(P[i][:, x] * (logP[i][:, x] - logP[j][:, y]), axis=0))
            np.add.at(count, x, 1.0)
        Q = qsum / qsum.sum(axis=1, keepdims=True)
        ve[i] = -np.sum(Q * np.log2(Q + EPS_ENT), axis=1)
        vd[i] = np.maximum(kl / count, 0.0)
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
        sp_s = superpixels[s].reshape(-1)
        for q in np.nonzero(sizes[s])[0]:
            out[(s, int(q), s, int(q))] = 1.0
        for t in range(n):
            if t == s:
                continue
            ps, pt = matches(scene, s, t)
            if not ps.size:
                continue
            r = superpixels[t].reshape(-1)[pt]
            q = sp_s[ps]
            pairs, cnt = np.unique(np.stack([r, q], axis=1), axis=0, return_counts=True)
            for (rr, qq), k in zip(pairs, cnt):
                out[(t, int(rr), s, int(qq))] = float(k) / float(sizes[t][rr])
    return out
