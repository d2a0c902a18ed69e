"""Numba CUDA kernels: view entropy/divergence and superpixel overlap (backend ``"cuda"``).

Written as GPU kernels are: one thread per target pixel (per source pixel and frame pair for the
overlap), consecutive threads on consecutive pixels of a row so that reads of the channel-major
(N, C, H, W) arrays coalesce, no Python objects. The projection formulas are the ones of the CPU kernels
(``_math``), compiled here as ``cuda.jit(device=True)`` functions. Geometry is float64 (as on the CPU)
so that all backends take the same rounding decisions; probabilities are float32.

Splat (ViewAL's aggregation) is one thread per (source frame, source pixel) adding into float64 sums of
one target frame with atomics, then one thread per target pixel for the scores.
On a real GPU, NVVM may contract ``a * b + c`` into fused multiply-adds, which round differently from the
CPU: a point within an ulp of the depth-test threshold could then fall on the other side (the simulator,
which runs the Python formulas, cannot show it).

Tested without a GPU under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported).
Importing this module does not touch a device; the first call does.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from . import _math

backproject_pixel = cuda.jit(device=True)(_math.backproject_pixel)
correspond = cuda.jit(device=True)(_math.correspond)
pixel_landing = cuda.jit(device=True)(_math.make_pixel_landing(backproject_pixel, correspond))
pixel_scores = cuda.jit(device=True)(_math.pixel_scores)


@cuda.jit(device=True)
def _unravel(tid, h, w):
    """Thread ``tid`` of a grid over (E, H, W) pixels, consecutive threads on consecutive pixels of a row:
    ``(e, v, u)``."""
    e = tid // (h * w)
    rem = tid - e * h * w
    v = rem // w
    return e, v, rem - v * w


THREADS = 128
EPS_ENT = 1e-12
EPS_KL = 1e-8
_VE_VD: dict[int, object] = {}


def _ve_vd_kernel(c: int):
    """The gather kernel specialised for C classes (the per-thread class accumulators are local arrays)."""
    if c in _VE_VD:
        return _VE_VD[c]

    @cuda.jit
    def kernel(probs, logp, depths, Kinvs, Ks, nbr_ptr, nbr_j, nbr_M, mode, abs_tol, rel_tol, max_dist2, ve, vd):
        n = probs.shape[0]
        h = probs.shape[2]
        w = probs.shape[3]
        tid = cuda.grid(1)
        if tid >= n * h * w:
            return
        i, v, u = _unravel(tid, h, w)
        q = cuda.local.array(c, float64)
        ls = cuda.local.array(c, float64)
        for k in range(c):
            q[k] = probs[i, k, v, u]
            ls[k] = logp[i, k, v, u]
        count = 1
        d = depths[i, v, u]
        if d > 0.0:
            x, y, z = backproject_pixel(float64(u), float64(v), float64(d), Kinvs[i])
            for e in range(nbr_ptr[i], nbr_ptr[i + 1]):
                j = nbr_j[e]
                idx = correspond(x, y, z, nbr_M[e], Ks[j], Kinvs[j], depths[j], mode, abs_tol, rel_tol,
                                 max_dist2)
                if idx >= 0:
                    vj = idx // w
                    uj = idx - vj * w
                    for k in range(c):
                        q[k] += probs[j, k, vj, uj]
                        ls[k] += logp[j, k, vj, uj]
                    count += 1
        ve[i, v, u], vd[i, v, u] = pixel_scores(probs[i, :, v, u], logp[i, :, v, u], q, ls, count)

    _VE_VD[c] = kernel
    return kernel


@cuda.jit
def _splat_init_kernel(probs, logp, i, qsum, lsum, cnt):
    """Start target frame i's sums with each pixel itself: qsum, lsum (H, W, C) float64, cnt (H, W) int32."""
    h = probs.shape[2]
    w = probs.shape[3]
    tid = cuda.grid(1)
    if tid >= h * w:
        return
    _, v, u = _unravel(tid, h, w)
    for k in range(probs.shape[1]):
        qsum[v, u, k] = probs[i, k, v, u]
        lsum[v, u, k] = logp[i, k, v, u]
    cnt[v, u] = 1


@cuda.jit
def _splat_kernel(probs, logp, depths, Kinvs, Ks, i, others, Ms, mode, abs_tol, rel_tol, max_dist2, qsum, lsum, cnt):
    """One thread per (source frame others[e], source pixel): if the pixel's point lands in target frame i
    and passes the test against D_i (Ms[e] = cam_i_T_cam_source), atomically add its P and log P there."""
    h = depths.shape[1]
    w = depths.shape[2]
    tid = cuda.grid(1)
    if tid >= others.shape[0] * h * w:
        return
    e, v, u = _unravel(tid, h, w)
    j = others[e]
    vi, ui = pixel_landing(u, v, depths[j], Kinvs[j], Ms[e], Ks[i], Kinvs[i], depths[i], mode, abs_tol, rel_tol,
                           max_dist2)
    if vi < 0:
        return
    for k in range(probs.shape[1]):
        cuda.atomic.add(qsum, (vi, ui, k), float64(probs[j, k, v, u]))
        cuda.atomic.add(lsum, (vi, ui, k), float64(logp[j, k, v, u]))
    cuda.atomic.add(cnt, (vi, ui), 1)


@cuda.jit
def _splat_finish_kernel(probs, logp, i, qsum, lsum, cnt, ve, vd):
    """VE, VD of target frame i's pixels from their sums (``_math.pixel_scores``)."""
    h = probs.shape[2]
    w = probs.shape[3]
    tid = cuda.grid(1)
    if tid >= h * w:
        return
    _, v, u = _unravel(tid, h, w)
    ve[i, v, u], vd[i, v, u] = pixel_scores(probs[i, :, v, u], logp[i, :, v, u], qsum[v, u], lsum[v, u], cnt[v, u])


@cuda.jit
def _logp_kernel(probs, logp):
    """logp = log2(probs + 1e-8), elementwise over the flattened (N*C*H*W,) arrays."""
    t = cuda.grid(1)
    if t < probs.shape[0]:
        logp[t] = math.log2(probs[t] + EPS_KL)


@cuda.jit
def _overlap_kernel(superpixels, depths, Kinvs, Ks, pair_s, pair_t, pair_M, mode, abs_tol, rel_tol, max_dist2,
                    counts):
    """One thread per (pair p, source pixel): counts[p, r, q] += 1 where the pixel of superpixel q of frame
    pair_s[p] corresponds to a pixel of superpixel r of frame pair_t[p]."""
    h = superpixels.shape[1]
    w = superpixels.shape[2]
    tid = cuda.grid(1)
    if tid >= pair_s.shape[0] * h * w:
        return
    p, v, u = _unravel(tid, h, w)
    s = pair_s[p]
    t = pair_t[p]
    vt, ut = pixel_landing(u, v, depths[s], Kinvs[s], pair_M[p], Ks[t], Kinvs[t], depths[t], mode, abs_tol,
                           rel_tol, max_dist2)
    if vt < 0:
        return
    cuda.atomic.add(counts, (p, superpixels[t, vt, ut], superpixels[s, v, u]), 1)


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def ve_vd(P: np.ndarray, scene, ptr: np.ndarray, src: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host wrapper: P (N, C, H, W) float32, validated ``scene``, CSR lists (``views.neighbour_lists``) →
    ve, vd (N, H, W) float32. Splat runs one target frame at a time (float64 sums of (H, W, C))."""
    n, c, h, w = P.shape
    d_P = cuda.to_device(P)
    d_logp = cuda.device_array(P.size, np.float32)
    _logp_kernel[_blocks(P.size), THREADS](d_P.reshape(P.size), d_logp)
    d_logp = d_logp.reshape(P.shape)
    d_ve = cuda.device_array((n, h, w), np.float32)
    d_vd = cuda.device_array((n, h, w), np.float32)
    geo = (cuda.to_device(scene.depths), cuda.to_device(scene.Kinvs), cuda.to_device(scene.Ks))
    test = (scene.mode, scene.abs_tol, scene.rel_tol, scene.max_dist2)
    if scene.aggregation == _math.AGG_SPLAT:
        qsum = cuda.device_array((h, w, c), np.float64)
        lsum = cuda.device_array((h, w, c), np.float64)
        cnt = cuda.device_array((h, w), np.int32)
        for i in range(n):
            _splat_init_kernel[_blocks(h * w), THREADS](d_P, d_logp, i, qsum, lsum, cnt)
            a, b = int(ptr[i]), int(ptr[i + 1])
            if b > a:
                _splat_kernel[_blocks((b - a) * h * w), THREADS](
                    d_P, d_logp, *geo, i, cuda.to_device(np.ascontiguousarray(src[a:b])),
                    cuda.to_device(np.ascontiguousarray(M[a:b])), *test, qsum, lsum, cnt)
            _splat_finish_kernel[_blocks(h * w), THREADS](d_P, d_logp, i, qsum, lsum, cnt, d_ve, d_vd)
        return d_ve.copy_to_host(), d_vd.copy_to_host()
    M = M if M.shape[0] else np.zeros((1, 3, 4))      # zero-size arrays: keep the kernel signature simple
    src = src if src.shape[0] else np.zeros(1, np.int32)
    kernel = _ve_vd_kernel(c)
    kernel[_blocks(n * h * w), THREADS](
        d_P, d_logp, *geo, cuda.to_device(ptr), cuda.to_device(src), cuda.to_device(np.ascontiguousarray(M)),
        *test, d_ve, d_vd)
    return d_ve.copy_to_host(), d_vd.copy_to_host()


def overlap_counts(sps: np.ndarray, scene, s: np.ndarray, t: np.ndarray, M: np.ndarray, counts: np.ndarray) -> None:
    """Host wrapper: fill ``counts`` (P, Rmax, Rmax) int32 for pairs (s -> t) (see ``_overlap_kernel``)."""
    n, h, w = sps.shape
    d_counts = cuda.to_device(counts)
    _overlap_kernel[_blocks(s.shape[0] * h * w), THREADS](
        cuda.to_device(sps), cuda.to_device(scene.depths), cuda.to_device(scene.Kinvs), cuda.to_device(scene.Ks),
        cuda.to_device(s), cuda.to_device(t), cuda.to_device(np.ascontiguousarray(M)), scene.mode, scene.abs_tol,
        scene.rel_tol, scene.max_dist2, d_counts)
    d_counts.copy_to_host(counts)
