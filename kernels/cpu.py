"""Numba CPU kernels (``@njit(parallel=True, cache=True)``): view entropy/divergence and superpixel overlap.

Layout: per pixel its class vector P and ``log2(P + 1e-8)`` side by side, (N, H, W, 2C), so that a
gathered pixel is one contiguous run; the logs are computed once per scene (O(N·C·H·W) memory), and
KL terms reduce to sums of logs (see ``ve_vd_kernel``); ``ve_vd_splat_kernel`` is ViewAL's aggregation.
Frame pairs come as a CSR list from
``_common.candidate_pairs`` (pairs whose frusta cannot overlap are never visited); inside a pair, row
segments whose bounding box lies outside the source frustum are skipped.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _math

# backproject_pixel, correspond and pixel_landing (the two composed, _math.make_pixel_landing) are compiled
# on their own, without fastmath: the kernels that call them reassociate float sums, and the depth test must
# take the same decision, bit for bit, as the NumPy reference and the CUDA kernel (a point on the threshold
# falls on the same side everywhere)
backproject_pixel = njit(cache=True)(_math.backproject_pixel)
correspond = njit(cache=True)(_math.correspond)
pixel_landing = njit(cache=True)(_math.make_pixel_landing(backproject_pixel, correspond))
box_outside_frustum = njit(inline="always", cache=True)(_math.box_outside_frustum)
pixel_scores = njit(inline="always", cache=True)(_math.pixel_scores)

EPS_ENT = 1e-12


SEGMENT = 32  # pixels of a row culled together against a frustum
FLUSH = 16     # source frames summed in float32 before the float64 log sums take them (error ~ FLUSH * 27 * 6e-8)


@njit(inline="always", cache=True)
def _flush(lsum, acc):
    """lsum += acc[:, C:]; acc[:, C:] = 0 (lsum (W, C) float64, acc (W, 2C) float32)."""
    c = lsum.shape[1]
    for u in range(lsum.shape[0]):
        for k in range(c):
            lsum[u, k] += acc[u, c + k]
            acc[u, c + k] = 0.0


@njit(inline="always", cache=True)
def _row_points(depth, v, Kinv, pts, box, seen):
    """Camera-frame points of the valid pixels of row v, and the bounding box of each row segment.

    depth (H, W) float32 (invalid <= 0); Kinv (3, 3). Fills pts (W, 3) (valid pixels only), box (S, 6)
    per segment min xyz, max xyz, seen (S,) bool "the segment has a valid pixel".
    """
    w = depth.shape[1]
    seen[:] = False
    for u in range(w):
        d = depth[v, u]
        if d > 0.0:
            x, y, z = backproject_pixel(float(u), float(v), float(d), Kinv)
            pts[u, 0] = x
            pts[u, 1] = y
            pts[u, 2] = z
            s = u // SEGMENT
            if not seen[s]:
                seen[s] = True
                box[s, 0] = box[s, 3] = x
                box[s, 1] = box[s, 4] = y
                box[s, 2] = box[s, 5] = z
            else:
                box[s, 0] = min(box[s, 0], x)
                box[s, 1] = min(box[s, 1], y)
                box[s, 2] = min(box[s, 2], z)
                box[s, 3] = max(box[s, 3], x)
                box[s, 4] = max(box[s, 4], y)
                box[s, 5] = max(box[s, 5], z)


# reassociation lets LLVM vectorise the class loops (sums over classes); the projection and depth test are
# compiled apart without it (see correspond above)
@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def ve_vd_kernel(pl, depths, Kinvs, Ks, zfar, nbr_ptr, nbr_j, nbr_M, mode, abs_tol, rel_tol, max_dist2, ve, vd):
    """Gather: fill ve, vd (N, H, W) float32.

    pl: (N, H, W, 2C) float32, per pixel its distribution P then log2(P + 1e-8) (one contiguous run per
    gathered pixel); depths (N, H, W) float32, invalid 0; Kinvs, Ks (N, 3, 3) float64; zfar (N,) the
    farthest depth each frame can confirm (``_common.far_bounds``); for target frame i the source frames
    are ``nbr_j[nbr_ptr[i]:nbr_ptr[i+1]]`` with ``nbr_M[k]`` (3, 4) = cam_j_T_cam_i.

    One parallel task per target row; inside, source frames are the outer loop and the row's pixels the
    inner one, so that the gathered pixels of one source frame are read along a line (few memory streams)
    while the row's accumulators stay in cache. The row is cut into segments of
    ``SEGMENT`` pixels whose 3D bounding box is tested against each source frustum first: a segment that
    cannot be seen is skipped without projecting its pixels. Per correspondence the kernel adds P_j(y)
    and log2 P_j(y) to the accumulators; VD = sum_c P_i log P_i - (1/|S|) sum_c P_i sum_y log P_j(y).
    """
    n, h, w, c2 = pl.shape
    c = c2 // 2
    nseg = (w + SEGMENT - 1) // SEGMENT
    for row in prange(n * h):
        i = row // h
        v = row - i * h
        # sums over the correspondence set: acc = [sum P | partial sum log2 P] in float32, the log half moved
        # into the float64 lsum every FLUSH source frames (up to N terms of magnitude ~27 in all)
        acc = np.empty((w, c2), np.float32)
        lsum = np.zeros((w, c), np.float64)
        cnt = np.ones(w, np.int64)
        pts = np.empty((w, 3), np.float64)
        box = np.empty((nseg, 6), np.float64)  # per segment: min xyz, max xyz of its valid points
        seen = np.zeros(nseg, np.bool_)
        for u in range(w):
            for k in range(c2):
                acc[u, k] = pl[i, v, u, k]
        _row_points(depths[i], v, Kinvs[i], pts, box, seen)
        for e in range(nbr_ptr[i], nbr_ptr[i + 1]):
            if (e - nbr_ptr[i]) % FLUSH == FLUSH - 1:
                _flush(lsum, acc)
            j = nbr_j[e]
            Me = nbr_M[e]
            Kj = Ks[j]
            Kinvj = Kinvs[j]
            Dj = depths[j]
            for s in range(nseg):
                if not seen[s] or box_outside_frustum(box[s, 0], box[s, 1], box[s, 2], box[s, 3], box[s, 4],
                                                      box[s, 5], Me, Kj, w, h, zfar[j]):
                    continue
                for u in range(s * SEGMENT, min(w, (s + 1) * SEGMENT)):
                    if not depths[i, v, u] > 0.0:
                        continue
                    idx = correspond(pts[u, 0], pts[u, 1], pts[u, 2], Me, Kj, Kinvj, Dj, mode, abs_tol, rel_tol,
                                     max_dist2)
                    if idx < 0:
                        continue
                    vj = idx // w
                    uj = idx - vj * w
                    for k in range(c2):
                        acc[u, k] += pl[j, vj, uj, k]
                    cnt[u] += 1
        _flush(lsum, acc)
        for u in range(w):
            ve[i, v, u], vd[i, v, u] = pixel_scores(pl[i, v, u, :c], pl[i, v, u, c:], acc[u, :c], lsum[u], cnt[u])


@njit(parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def ve_vd_splat_kernel(pl, depths, Kinvs, Ks, zfar, nbr_ptr, nbr_j, nbr_M, mode, abs_tol, rel_tol, max_dist2,
                       ve, vd):
    """Splat (ViewAL's aggregation): fill ve, vd (N, H, W) float32.

    Arguments as for ``ve_vd_kernel``, except that for target frame i the frames
    ``nbr_j[nbr_ptr[i]:nbr_ptr[i+1]]`` are the *sources* whose points land in i, with ``nbr_M[k]`` (3, 4) =
    cam_i_T_cam_j (the test is against D_i, in camera i's frame).

    One parallel task per target frame, with float64 accumulators (H, W, C) for the sums of P and of
    log2 P (a pixel can receive hundreds of points): each valid pixel of each source frame is projected
    into frame i (source rows are cut into segments culled against frame i's frustum first) and, when it
    passes the test, adds its P and log2 P to the pixel it lands on. The target pixel itself starts the sums.
    """
    n, h, w, c2 = pl.shape
    c = c2 // 2
    nseg = (w + SEGMENT - 1) // SEGMENT
    for i in prange(n):
        qsum = np.empty((h, w, c), np.float64)
        lsum = np.empty((h, w, c), np.float64)
        cnt = np.ones((h, w), np.int64)
        pts = np.empty((w, 3), np.float64)
        box = np.empty((nseg, 6), np.float64)
        seen = np.zeros(nseg, np.bool_)
        for v in range(h):
            for u in range(w):
                for k in range(c):
                    qsum[v, u, k] = pl[i, v, u, k]
                    lsum[v, u, k] = pl[i, v, u, c + k]
        Ki = Ks[i]
        Kinvi = Kinvs[i]
        Di = depths[i]
        for e in range(nbr_ptr[i], nbr_ptr[i + 1]):
            j = nbr_j[e]
            Me = nbr_M[e]
            for v in range(h):
                _row_points(depths[j], v, Kinvs[j], pts, box, seen)
                for s in range(nseg):
                    if not seen[s] or box_outside_frustum(box[s, 0], box[s, 1], box[s, 2], box[s, 3], box[s, 4],
                                                          box[s, 5], Me, Ki, w, h, zfar[i]):
                        continue
                    for u in range(s * SEGMENT, min(w, (s + 1) * SEGMENT)):
                        if not depths[j, v, u] > 0.0:
                            continue
                        idx = correspond(pts[u, 0], pts[u, 1], pts[u, 2], Me, Ki, Kinvi, Di, mode, abs_tol,
                                         rel_tol, max_dist2)
                        if idx < 0:
                            continue
                        vi = idx // w
                        ui = idx - vi * w
                        for k in range(c):
                            qsum[vi, ui, k] += pl[j, v, u, k]
                            lsum[vi, ui, k] += pl[j, v, u, c + k]
                        cnt[vi, ui] += 1
        for v in range(h):
            for u in range(w):
                ve[i, v, u], vd[i, v, u] = pixel_scores(pl[i, v, u, :c], pl[i, v, u, c:], qsum[v, u], lsum[v, u],
                                                        cnt[v, u])


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
                vt, ut = pixel_landing(u, v, depths[s], Kinvs[s], pair_M[p], Ks[t], Kinvs[t], depths[t], mode,
                                       abs_tol, rel_tol, max_dist2)
                if vt >= 0:
                    counts[p, superpixels[t, vt, ut], superpixels[s, v, u]] += 1


TINY = 1e-30


@njit(parallel=True, cache=True)
def to_pixel_major(probs, eps, out):
    """(N, C, H, W) -> (N, H, W, 2C) float32: per pixel P then log2(P + eps) (one contiguous run).

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
                out[i, v, u, k] = x
                out[i, v, u, c + k] = np.log2(x + e)
