"""Test-only port of ViewAL's view entropy / view divergence (nihalsid/ViewAL, active_selection/view_entropy.py).

Written for this project from a reading of ``get_projected_prediction_entropy``, ``entropy_function`` and
``kldiv_function`` (and ``project_image_to_world``): their torch/CUDA float32 arithmetic redone in NumPy
float32 on the CPU, organised as ViewAL organises it. Used only to check ``view_entropy_divergence(...,
mode="viewal")`` against ViewAL's computation (tests/test_viewal_port.py, scripts/bench_kernels.py).

What ViewAL computes, for one scene of N frames (all at H x W, one intrinsic matrix K for the scene):

* every pixel of every frame, the destination frame included, is back-projected to world coordinates,
  ``world_T_cam @ inv(K4) @ (u d, v d, d, 1)`` — a pixel with depth 0 becomes its camera's centre;
* for destination frame t, every world point is projected with ``K4 @ inv(world_T_cam_t)``; x / z and y / z
  are rounded (``torch.round``: half to even); points with z = 0 (NaN) or outside the image are dropped
  (there is no z > 0 test);
* the destination depth at the rounded pixel is back-projected the same way (depth 0 -> camera t's centre),
  and the point is kept if its world distance to it is < ``WORLD_DISTANCE_THRESHOLD`` (1.0 m in the code);
* entropy: the kept points' class vectors are ``index_add_``ed onto their pixels, normalised, entropy in
  log2 with eps 1e-12; a pixel that received nothing (0 / 0 = NaN) scores 0;
* divergence: ``log2((P_point + 1e-8) / (P_t(x) + 1e-8))`` summed per pixel and class, divided by the number
  of points, ``-sum_c P_t(x)_c * mean`` — the mean over the points of KL(P_t(x) || P_point); NaN -> 0.

``depth0_quirks=False`` switches off what depth 0 does in ViewAL (source pixels with depth 0 travel as their
camera's centre; destination pixels with depth 0 test against the camera centre): both are dropped, as the
package does. The rest (float32, rounding half to even, no z > 0 test, 0 for pixels nothing lands on) stays.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _k4(K: np.ndarray) -> np.ndarray:
    K4 = np.eye(4)
    K4[:3, :3] = K
    return K4


def world_points(depths: np.ndarray, K: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """(4, N*H*W) float32 world points of every pixel (ViewAL's ``project_images_to_world``)."""
    n, h, w = depths.shape
    v, u = np.meshgrid(np.arange(h, dtype=F32), np.arange(w, dtype=F32), indexing="ij")
    Kinv4 = np.linalg.inv(_k4(K)).astype(F32)
    out = np.empty((4, n * h * w), F32)
    for i in range(n):
        d = depths[i].reshape(-1).astype(F32)
        hom = np.stack([u.reshape(-1) * d, v.reshape(-1) * d, d, np.ones_like(d)])
        out[:, i * h * w:(i + 1) * h * w] = poses[i].astype(F32) @ (Kinv4 @ hom)
    return out


def viewal_ve_vd(probs: np.ndarray, depths: np.ndarray, K: np.ndarray, poses: np.ndarray,
                 world_distance: float = 1.0, depth0_quirks: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ViewAL's VE and VD maps of one scene.

    probs (N, C, H, W) float32 distributions; depths (N, H, W) metres (0 = invalid); K (3, 3) the scene's
    intrinsics; poses (N, 4, 4) camera-to-world. Returns ve, vd (N, H, W) float32.
    """
    n, c, h, w = probs.shape
    hw = h * w
    X = world_points(depths, K, poses)
    P = np.ascontiguousarray(probs.transpose(0, 2, 3, 1).reshape(n * hw, c), dtype=F32)
    src_valid = depths.reshape(-1) > 0
    K4 = _k4(K)
    Kinv4 = np.linalg.inv(K4).astype(F32)
    ve = np.zeros((n, hw), F32)
    vd = np.zeros((n, hw), F32)
    for t in range(n):
        proj = (K4.astype(F32) @ np.linalg.inv(poses[t]).astype(F32)) @ X
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.round(proj[0] / proj[2])
            y = np.round(proj[1] / proj[2])
            zz = proj[2] / proj[2]
            m = ~np.isnan(zz) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        if not depth0_quirks:
            m &= src_valid
        sel = np.flatnonzero(m)
        px, py = x[sel], y[sel]
        flat = (py * w + px).astype(np.int64)
        dt = depths[t].reshape(-1).astype(F32)[flat]
        hom = np.stack([px * dt, py * dt, dt, np.ones_like(dt)])
        back = (poses[t].astype(F32) @ (Kinv4 @ hom))[:3]
        keep = np.linalg.norm(X[:3, sel] - back, axis=0) < F32(world_distance)
        if not depth0_quirks:
            keep &= dt > 0
        sel, flat = sel[keep], flat[keep]
        Pp = P[sel]
        Pt = P[t * hw:(t + 1) * hw]
        qsum = np.stack([np.bincount(flat, weights=Pp[:, k], minlength=hw) for k in range(c)], 1).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            Q = qsum / qsum.sum(axis=1, keepdims=True)
            ent = -np.sum(Q * np.log2(Q + F32(1e-12)), axis=1)
            logr = np.log2((Pp + F32(1e-8)) / (Pt[flat] + F32(1e-8)))
            lsum = np.stack([np.bincount(flat, weights=logr[:, k], minlength=hw) for k in range(c)], 1).astype(F32)
            cnt = np.bincount(flat, minlength=hw).astype(F32)
            mean = lsum / cnt[:, None]
            kl = -np.sum(Pt * np.nan_to_num(mean, nan=0.0), axis=1)
        ve[t] = np.nan_to_num(ent, nan=0.0)
        vd[t] = np.where(cnt > 0, kl, 0.0)
    return ve.reshape(n, h, w), vd.reshape(n, h, w)


def viewal_scene(root, sid: str):
    """One scene of the real sample as ViewAL saw it: (superpixels (N, H, W) int32, depths (N, H, W) float32
    nearest-resized, K (3, 3) ViewAL's halved depth intrinsics, poses (N, 4, 4), frame names)."""
    from pathlib import Path

    from viewal.datasets.viewal_original import load_viewal_superpixels, read_info, read_viewal_original

    ds = read_viewal_original(root)
    frames = ds.scenes[sid]
    sp = np.stack([load_viewal_superpixels(ds, f) for f in frames])
    D = np.stack([f.depth for f in frames]).astype(np.float32)
    T = np.stack([f.world_T_cam for f in frames])
    K = np.asarray(read_info(Path(root) / "raw" / "selections" / "info" / f"{sid}.txt")["K_depth"], float)[:3, :3]
    K = K.copy()
    K[:2] /= 2.0        # ViewAL: fx, fy, cx, cy halved
    return sp, D, K, T, [f"{f.scene_id}_{f.frame_id}" for f in frames]


def random_pixel_probs(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(N, C, H, W) float32: an independent random distribution per pixel (softmax of N(0, 2^2) logits)."""
    logits = np.random.default_rng(seed).normal(0.0, 2.0, (n, c, h, w))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def superpixel_means(x: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Mean of x (N, H, W) over each (frame, superpixel id present) -> (number of such pairs,)."""
    out = []
    for i in range(x.shape[0]):
        s = sp[i].reshape(-1)
        cnt = np.bincount(s)
        out.append((np.bincount(s, weights=x[i].reshape(-1).astype(np.float64)) / np.maximum(cnt, 1))[cnt > 0])
    return np.concatenate(out)


def compare(root, sid: str, world_distance: float, c: int = 13, seed: int = 0, depth0_quirks: bool = False,
            backend: str = "cpu") -> dict:
    """Package (mode "viewal") vs the port on one real scene: Spearman of superpixel-mean VE and VD, and
    per-pixel differences split by where they come from (valid / invalid target depth)."""
    from scipy.stats import spearmanr

    from viewal.kernels import DepthTest, view_entropy_divergence

    sp, D, K, T, names = viewal_scene(root, sid)
    n, h, w = D.shape
    P = random_pixel_probs(n, c, h, w, seed)
    ve_p, vd_p = viewal_ve_vd(P, D, K, T, world_distance, depth0_quirks=depth0_quirks)
    Ks = np.repeat(K[None], n, 0)
    test = DepthTest(mode="viewal", world_distance=world_distance, backend=backend)
    ve, vd = view_entropy_divergence(P, D, Ks, T, depth_test=test)
    valid = D > 0
    # ViewAL scores a pixel nothing lands on 0; the package gives it its own values: compare as ViewAL ranks
    ve_v, vd_v = np.where(valid, ve, 0.0), np.where(valid, vd, 0.0)
    dve, dvd = np.abs(ve_v - ve_p), np.abs(vd_v - vd_p)
    return {
        "scene": sid, "N": n, "world_distance": world_distance,
        "spearman_ve": float(spearmanr(superpixel_means(ve_v, sp), superpixel_means(ve_p, sp))[0]),
        "spearman_vd": float(spearmanr(superpixel_means(vd_v, sp), superpixel_means(vd_p, sp))[0]),
        "spearman_ve_own_values": float(spearmanr(superpixel_means(ve, sp), superpixel_means(ve_p, sp))[0]),
        "max_dve_valid": float(dve[valid].max()), "max_dvd_valid": float(dvd[valid].max()),
        "n_dve_valid_1e-4": int((dve[valid] > 1e-4).sum()), "n_dvd_valid_1e-4": int((dvd[valid] > 1e-4).sum()),
        "n_valid": int(valid.sum()), "n_pixels": int(valid.size),
        "max_dve_invalid": float(dve[~valid].max(initial=0)),
        "ve_own_invalid_mean": float(ve[~valid].mean()) if (~valid).any() else 0.0,
    }
