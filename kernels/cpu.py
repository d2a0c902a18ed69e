"""Numba CPU kernels (``@njit(parallel=True, cache=True)``): view entropy/divergence and superpixel overlap.

Layout: class vectors are made contiguous per pixel, (N, H, W, C), so that a gathered pixel's
distribution is one cache line run. ``log2(P + 1e-8)`` is precomputed once per scene (O(N·C·H·W)
memory), which turns each KL term into C multiply-adds. Frame pairs come as a CSR list from
``_common.candidate_pairs`` (pairs whose frusta cannot overlap are never visited).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _math

backproject_pixel = njit(inline="always", cache=True)(_math.backproject_pixel)
correspond = njit(inline="always", cache=True)(_math.correspond)

EPS_ENT = 1e-12


# reassociation lets LLVM vectorise the class loops (sums over classes); it only reorders float64 sums
# in the projection at the 1e-16 level, far below any rounding or depth-test decision in practice
@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def ve_vd_kernel(probs, logp, depths, Kinvs, Ks, nbr_ptr, nbr_j, nbr_M, mode, abs_tol, rel_tol, max_dist2,
                 ve, vd):
    """Fill ve, vd (N, H, W) float32.

    probs, logp: (N, H, W, C) float32 (distributions and log2(P + 1e-8)); depths (N, H, W) float32, invalid 0;
    Kinvs, Ks (N, 3, 3) float64; for target frame i the source frames are ``nbr_j[nbr_ptr[i]:nbr_ptr[i+1]]``
    with ``nbr_M[k]`` (3, 4) = cam_j_T_cam_i.

    One parallel task per target row; inside, source frames are the outer loop and the row's pixels the
    inner one, so that the gathered pixels of one source frame are read along a line (few memory streams)
    while the row's class accumulators (W x C float32) stay in cache.
    """
    n, h, w, c = probs.shape
    for row in prange(n * h):
        i = row // h
        v = row - i * h
        q = np.empty((w, c), np.float32)
        kl = np.zeros(w, np.float64)
        cnt = np.ones(w, np.int64)
        self_term = np.zeros(w, np.float64)   # sum_c p log p of the row's own pixels
        pts = np.empty((w, 3), np.float64)
        for u in range(w):
            st = 0.0
            for k in range(c):
                q[u, k] = probs[i, v, u, k]
                st += probs[i, v, u, k] * logp[i, v, u, k]
            self_term[u] = st
            d = depths[i, v, u]
            if d > 0.0:
                x, y, z = backproject_pixel(float(u), float(v), float(d), Kinvs[i])
                pts[u, 0] = x
                pts[u, 1] = y
                pts[u, 2] = z
        for e in range(nbr_ptr[i], nbr_ptr[i + 1]):
            j = nbr_j[e]
            Me = nbr_M[e]
            Kj = Ks[j]
            Kinvj = Kinvs[j]
            Dj = depths[j]
            for u in range(w):
                if not depths[i, v, u] > 0.0:
                    continue
                idx = correspond(pts[u, 0], pts[u, 1], pts[u, 2], Me, Kj, Kinvj, Dj, mode, abs_tol, rel_tol,
                                 max_dist2)
                if idx < 0:
                    continue
                vj = idx // w
                uj = idx - vj * w
                s = 0.0
                for k in range(c):
                    q[u, k] += probs[j, vj, uj, k]
                    s += probs[i, v, u, k] * logp[j, vj, uj, k]
                kl[u] += self_term[u] - s
                cnt[u] += 1
        for u in range(w):
            tot = 0.0
            for k in range(c):
                tot += q[u, k]
            ent = 0.0
            for k in range(c):
                p = q[u, k] / tot
                ent -= p * np.log2(p + EPS_ENT)
            ve[i, v, u] = ent
            vd[i, v, u] = kl[u] / cnt[u]


@njit(parallel=True, cache=True)
def overlap_kernel(superpixels, depths, Kinvs, Ks, pair_s, pair_t, pair_M, mode, abs_tol, rel_tol, max_dist2,
                   counts):
    """For each pair p (source s = pair_s[p] -> target t = pair_t[p]), count into counts[p, r, q] the valid
    pixels of superpixel q of frame s whose correspondence in frame t lies in superpixel r.

    superpixels (N, H, W) int32; pair_M (P, 3, 4) cam_t_T_cam_s; counts (P, Rmax, Rmax) int32, zeroed.
    """
    n, h, w = superpixels.shape
    for p in prange(pair_s.shape[0]):
        s = pair_s[p]
        t = pair_t[p]
        for v in range(h):
            for u in range(w):
                d = depths[s, v, u]
                if not d > 0.0:
                    continue
                x, y, z = backproject_pixel(float(u), float(v), float(d), Kinvs[s])
                idx = correspond(x, y, z, pair_M[p], Ks[t], Kinvs[t], depths[t], mode, abs_tol, rel_tol,
                                 max_dist2)
                if idx < 0:
                    continue
                vt = idx // w
                ut = idx - vt * w
                counts[p, superpixels[t, vt, ut], superpixels[s, v, u]] += 1


TINY = 1e-30


@njit(parallel=True, cache=True)
def to_pixel_major(probs, eps, out_p, out_logp):
    """(N, C, H, W) -> (N, H, W, C) copies of P and log2(P + eps) (float32; rows read contiguously).

    Probabilities below 1e-30 are copied as 0: softmax outputs underflow to float32 denormals, whose
    arithmetic is ~100x slower on x86; the scores change by less than 1e-28.
    """
    n, c, h, w = probs.shape
    e = np.float32(eps)
    tiny = np.float32(TINY)
    for row in prange(n * h):
        i = row // h
        v = row - i * h
        for k in range(c):
            for u in range(w):
                x = probs[i, k, v, u]
                if x < tiny:
                    x = np.float32(0.0)
                out_p[i, v, u, k] = x
                out_logp[i, v, u, k] = np.log2(x + e)
