"""Numba CUDA kernels: view entropy/divergence and superpixel overlap (backend ``"cuda"``).

Written as GPU kernels are: one thread per target pixel (per source pixel and frame pair for the
overlap), consecutive threads on consecutive pixels of a row so that reads of the channel-major
(N, C, H, W) arrays coalesce, no Python objects. The projection formulas are the ones of the CPU kernels
(``_math``), compiled here as ``cuda.jit(device=True)`` functions. Geometry is float64 (as on the CPU)
so that all backends take the same rounding decisions; probabilities are float32.

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

THREADS = 128
EPS_ENT = 1e-12
EPS_KL = 1e-8
_VE_VD: dict[int, object] = {}


def _ve_vd_kernel(c: int):
    """The VE/VD kernel specialised for C classes (the per-thread class accumulator is a local array)."""
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
        i = tid // (h * w)
        rem = tid - i * h * w
        v = rem // w
        u = rem - v * w
        q = cuda.local.array(c, float64)
        for k in range(c):
            q[k] = probs[i, k, v, u]
        count = 1
        kl = 0.0
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
                    s = 0.0
                    for k in range(c):
                        q[k] += probs[j, k, vj, uj]
                        s += probs[i, k, v, u] * (logp[i, k, v, u] - logp[j, k, vj, uj])
                    kl += s
                    count += 1
        tot = 0.0
        for k in range(c):
            tot += q[k]
        ent = 0.0
        for k in range(c):
            p = q[k] / tot
            ent -= p * math.log2(p + EPS_ENT)
        ve[i, v, u] = ent
        vd[i, v, u] = kl / count

    _VE_VD[c] = kernel
    return kernel


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
    p = tid // (h * w)
    rem = tid - p * h * w
    v = rem // w
    u = rem - v * w
    s = pair_s[p]
    t = pair_t[p]
    d = depths[s, v, u]
    if not d > 0.0:
        return
    x, y, z = backproject_pixel(float64(u), float64(v), float64(d), Kinvs[s])
    idx = correspond(x, y, z, pair_M[p], Ks[t], Kinvs[t], depths[t], mode, abs_tol, rel_tol, max_dist2)
    if idx < 0:
        return
    vt = idx // w
    ut = idx - vt * w
    cuda.atomic.add(counts, (p, superpixels[t, vt, ut], superpixels[s, v, u]), 1)


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def ve_vd(P: np.ndarray, scene, ptr: np.ndarray, src: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host wrapper: P (N, C, H, W) float32, validated ``scene``, CSR pairs → ve, vd (N, H, W) float32."""
    n, c, h, w = P.shape
    d_P = cuda.to_device(P)
    d_logp = cuda.device_array(P.size, np.float32)
    _logp_kernel[_blocks(P.size), THREADS](d_P.reshape(P.size), d_logp)
    d_logp = d_logp.reshape(P.shape)
    d_ve = cuda.device_array((n, h, w), np.float32)
    d_vd = cuda.device_array((n, h, w), np.float32)
    M = M if M.shape[0] else np.zeros((1, 3, 4))      # zero-size arrays: keep the kernel signature simple
    src = src if src.shape[0] else np.zeros(1, np.int32)
    kernel = _ve_vd_kernel(c)
    kernel[_blocks(n * h * w), THREADS](
        d_P, d_logp, cuda.to_device(scene.depths), cuda.to_device(scene.Kinvs), cuda.to_device(scene.Ks),
        cuda.to_device(ptr), cuda.to_device(src), cuda.to_device(np.ascontiguousarray(M)), scene.mode,
        scene.abs_tol, scene.rel_tol, scene.max_dist2, d_ve, d_vd)
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
