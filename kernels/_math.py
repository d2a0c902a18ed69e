"""The projection formulas of the kernels, written once as plain scalar Python.

These functions are compiled twice: with ``numba.njit`` for the CPU kernels (``viewal.kernels.cpu``)
and with ``numba.cuda.jit(device=True)`` for the CUDA kernels (``viewal.kernels.cuda``). They use only
scalar arithmetic and array indexing, so both compilers accept them unchanged. A step that composes them
(``make_pixel_landing``: one source pixel's depth check, back-projection and correspondence) is built
from each compiler's versions of the formulas, then compiled by that compiler. The NumPy reference
(``viewal.kernels.reference``) does *not* use them: it is the independent twin they are tested against,
written with :mod:`viewal.core.geometry`.

Conventions (see :mod:`viewal.core.geometry`): OpenCV ``K``, integer pixel centres, pixel ``(u, v)`` covers
``[u - 0.5, u + 0.5) x [v - 0.5, v + 0.5)`` so a continuous coordinate ``x`` falls in pixel
``floor(x + 0.5)``; depth along the optical axis, ``<= 0`` = invalid (inputs are sanitised first).

Depth-test modes (integers so that the kernels stay free of Python objects):
``MODE_Z`` — keep if ``|p_z - D_j(u', v')| <= abs_tol + rel_tol * p_z``;
``MODE_VIEWAL`` — keep if ``||X - X'||^2 < max_dist2`` where ``X'`` back-projects ``D_j(u', v')``
(ViewAL: 1.0 m). The distance is measured in camera j's frame (the frame whose depth is tested), equal to
the world distance for a rigid pose. Every backend takes this decision with the same arithmetic: the same
``cam_j_T_cam_i`` matrix (``_common.relative_poses``), these formulas in this operation order, the squared
distance against ``max_dist2`` (no square root), so that a point on the threshold falls on the same side
in all of them (the NumPy reference writes the same operations vectorised).

Aggregations (how the correspondences of a target pixel x of frame i are collected):
``AGG_GATHER`` — x is cross-projected into every other frame j and gathers the one pixel it lands on
(docs/methods.md, "ViewAL's own computation"; one pixel per view); ``AGG_SPLAT`` — ViewAL's: every valid
pixel of every other frame j is cross-projected into frame i and lands, if it passes the test against D_i,
on the pixel it projects to, so one view can add 0 to 100+ points (each with weight 1) to one pixel.
"""
from __future__ import annotations

import math

MODE_Z = 0
MODE_VIEWAL = 1
MODES = {"z": MODE_Z, "viewal": MODE_VIEWAL}

AGG_GATHER = 0
AGG_SPLAT = 1
AGGREGATIONS = {"gather": AGG_GATHER, "splat": AGG_SPLAT}
# the aggregation of each mode when none is given: mode "viewal" is ViewAL's computation (splat)
DEFAULT_AGGREGATION = {"z": "gather", "viewal": "splat"}

# ViewAL's world-distance threshold (metres) for mode="viewal".
VIEWAL_WORLD_DISTANCE = 1.0


def backproject_pixel(u, v, d, Kinv):
    """Camera-frame point of pixel ``(u, v)`` at depth ``d``: ``d * Kinv @ (u, v, 1)``. Returns (x, y, z)."""
    x = d * (Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2])
    y = d * (Kinv[1, 0] * u + Kinv[1, 1] * v + Kinv[1, 2])
    z = d * (Kinv[2, 0] * u + Kinv[2, 1] * v + Kinv[2, 2])
    return x, y, z


def correspond(x, y, z, M, K, Kinv, depth, mode, abs_tol, rel_tol, max_dist2):
    """Cross-project a camera-i point into frame j and run the depth test.

    Args:
        x, y, z: the point in camera i's frame.
        M: (3, 4) ``cam_j_T_cam_i`` (rotation | translation).
        K, Kinv: (3, 3) intrinsics of frame j and their inverse.
        depth: (H, W) depth of frame j, invalid pixels ``<= 0``.
        mode: ``MODE_Z`` or ``MODE_VIEWAL``; abs_tol, rel_tol: mode-z tolerances; max_dist2: mode-viewal
            squared distance threshold.

    Returns:
        The flat index ``v' * W + u'`` of the corresponding pixel of frame j, or -1 if the point is behind
        the camera, outside the image, lands on invalid depth or fails the depth test.
    """
    h = depth.shape[0]
    w = depth.shape[1]
    px = M[0, 0] * x + M[0, 1] * y + M[0, 2] * z + M[0, 3]
    py = M[1, 0] * x + M[1, 1] * y + M[1, 2] * z + M[1, 3]
    pz = M[2, 0] * x + M[2, 1] * y + M[2, 2] * z + M[2, 3]
    if not pz > 0.0:
        return -1
    uf = (K[0, 0] * px + K[0, 1] * py + K[0, 2] * pz) / pz
    vf = (K[1, 0] * px + K[1, 1] * py + K[1, 2] * pz) / pz
    uf = math.floor(uf + 0.5)
    vf = math.floor(vf + 0.5)
    if not (uf >= 0.0 and uf < w and vf >= 0.0 and vf < h):
        return -1
    ui = int(uf)
    vi = int(vf)
    dj = depth[vi, ui]
    if not dj > 0.0:
        return -1
    if mode == 0:
        if abs(pz - dj) > abs_tol + rel_tol * pz:
            return -1
    else:
        # back-project D_j(u', v') (same formula as backproject_pixel, inlined: these functions are compiled
        # separately for CPU and CUDA and must not call module globals)
        qx = dj * (Kinv[0, 0] * uf + Kinv[0, 1] * vf + Kinv[0, 2])
        qy = dj * (Kinv[1, 0] * uf + Kinv[1, 1] * vf + Kinv[1, 2])
        qz = dj * (Kinv[2, 0] * uf + Kinv[2, 1] * vf + Kinv[2, 2])
        dist2 = (px - qx) * (px - qx) + (py - qy) * (py - qy) + (pz - qz) * (pz - qz)
        if not dist2 < max_dist2:
            return -1
    return vi * w + ui


def make_pixel_landing(backproject_pixel, correspond):
    """The per-source-pixel step shared by the overlap kernels (CPU, CUDA), CUDA's splat kernel and the label
    propagation kernels (``propagate``), built from
    one compiler's ``backproject_pixel`` and ``correspond`` (a function of this module may not call a module
    global: the globals here are the uncompiled formulas). ``viewal.kernels.cpu`` compiles the result with
    ``numba.njit``, ``viewal.kernels.cuda`` with ``numba.cuda.jit(device=True)``.
    """

    def pixel_landing(u, v, depth_s, Kinv_s, M, K_t, Kinv_t, depth_t, mode, abs_tol, rel_tol, max_dist2):
        """Where source pixel ``(u, v)`` of frame s lands in frame t: ``(v', u')``, or ``(-1, -1)``.

        Args:
            u, v: integer pixel of frame s. depth_s: (H, W) depth of frame s, invalid ``<= 0``;
                Kinv_s: (3, 3) its inverse intrinsics.
            M, K_t, Kinv_t, depth_t, mode, abs_tol, rel_tol, max_dist2: as for :func:`correspond`
                (M = (3, 4) ``cam_t_T_cam_s``; the test is against ``depth_t``).

        Returns:
            ``(v', u')`` of the corresponding pixel of frame t; ``(-1, -1)`` if the source depth is invalid or
            :func:`correspond` rejects the point.
        """
        d = depth_s[v, u]
        if not d > 0.0:
            return -1, -1
        x, y, z = backproject_pixel(float(u), float(v), float(d), Kinv_s)
        idx = correspond(x, y, z, M, K_t, Kinv_t, depth_t, mode, abs_tol, rel_tol, max_dist2)
        if idx < 0:
            return -1, -1
        w = depth_t.shape[1]
        vt = idx // w
        return vt, idx - vt * w

    return pixel_landing


def box_outside_frustum(lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, M, K, w, h, zfar):
    """True if the axis-aligned box ``[lo, hi]`` (camera-i frame) certainly has no point that frame j sees.

    The box's 8 corners are moved into camera j (``M`` = (3, 4) ``cam_j_T_cam_i``); the box is outside
    if all corners violate one of j's frustum half-spaces: in front of the camera, inside the four image
    borders (pixel centres ``-0.5 .. W - 0.5``), nearer than ``zfar`` (the farthest depth j can confirm).
    Conservative (a small epsilon keeps boundary points in): a ``False`` only means "look closer".
    """
    out_near = True
    out_left = True
    out_right = True
    out_top = True
    out_bottom = True
    out_far = True
    for a in range(8):
        x = lo_x if (a & 1) == 0 else hi_x
        y = lo_y if (a & 2) == 0 else hi_y
        z = lo_z if (a & 4) == 0 else hi_z
        px = M[0, 0] * x + M[0, 1] * y + M[0, 2] * z + M[0, 3]
        py = M[1, 0] * x + M[1, 1] * y + M[1, 2] * z + M[1, 3]
        pz = M[2, 0] * x + M[2, 1] * y + M[2, 2] * z + M[2, 3]
        ku = K[0, 0] * px + K[0, 1] * py + K[0, 2] * pz     # u' * z
        kv = K[1, 0] * px + K[1, 1] * py + K[1, 2] * pz     # v' * z
        eps = 1e-9 * (1.0 + abs(px) + abs(py) + abs(pz))
        if pz > -eps:
            out_near = False
        if ku + 0.5 * pz >= -eps:
            out_left = False
        if (w - 0.5) * pz - ku > -eps:
            out_right = False
        if kv + 0.5 * pz >= -eps:
            out_top = False
        if (h - 0.5) * pz - kv > -eps:
            out_bottom = False
        if pz <= zfar + eps:
            out_far = False
    return out_near or out_left or out_right or out_top or out_bottom or out_far


def pixel_scores(p, logp, qsum, lsum, cnt):
    """View entropy and view divergence of one pixel from the sums over its correspondence set S.

    Args:
        p, logp: (C,) the pixel's own distribution P_i(x) and log2(P_i(x) + 1e-8).
        qsum: (C,) sum over S of P_j(y); lsum: (C,) sum over S of log2(P_j(y) + 1e-8) (S includes the pixel).
        cnt: |S| >= 1.
    Returns:
        (VE, VD): VE = entropy (log2, eps 1e-12) of qsum normalised; VD = mean over S of KL(P_i(x) || P_j(y))
        = sum_c P_c log P_c - (1/|S|) sum_c P_c lsum_c, clamped at 0 (a mean of KL terms is >= 0; the sum of
        logs can round to -1e-9).
    """
    c = qsum.shape[0]
    tot = 0.0
    for k in range(c):
        tot += qsum[k]
    ent = 0.0
    self_term = 0.0
    cross = 0.0
    for k in range(c):
        q = qsum[k] / tot
        ent -= q * math.log2(q + 1e-12)
        self_term += p[k] * logp[k]
        cross += p[k] * lsum[k]
    vd = (cnt * self_term - cross) / cnt
    if not vd > 0.0:
        vd = 0.0
    return ent, vd
