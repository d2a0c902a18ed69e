#!/usr/bin/env python
"""Benchmark of the multi-view kernels (``viewal.kernels``); prints tables, writes nothing.

1. Exact view entropy/divergence on one synthetic scene per size (N views at 240x320, C classes):
   the NumPy reference, the Numba CPU kernel with both aggregations on the same inputs — "gather" (one
   pixel per view, docs/methods.md) and "splat" (ViewAL's: every point that lands on the pixel) — and their
   cost ratio, and a "ViewAL-algorithm" baseline — the same computation organised the way ViewAL's code
   does it (torch on the CPU: every target frame re-projects *all* points of the scene, world-distance
   test, ``index_add_`` of the class vectors, per-class Python loops for entropy and divergence). Numba's
   first call (compilation, in a fresh cache directory) is reported apart. All methods use ViewAL's test
   (``DepthTest(mode="viewal")``, 1 m) so that they do the same work.
2. Fused (voxel) mode against exact at N = 25 ... 400: time and Spearman correlation of superpixel-mean
   view entropy (and divergence); superpixels are a regular grid of 40x40-pixel cells (48 per frame).
3. The real ScanNet sample (ViewAL's 37 frames): kernel times (mode "viewal" with gather and with splat side
   by side, and their ratio), and our overlap table
   (``DepthTest(mode="viewal")``) against ViewAL's own ``coverage_superpixel_table`` on ViewAL's superpixels.
4. ("port") The real sample again: ``view_entropy_divergence`` with ``DepthTest(mode="viewal")`` (splat) against
   the test-only port of ViewAL's own VE/VD code (tests/viewal_port.py): Spearman of superpixel-mean VE and VD and the
   per-pixel differences, at ViewAL's published 1.0 m and the 0.1 m its tables match. No timing.

Scenes come from ``viewal.datasets.synthetic`` (Open3D ray-cast rooms, camera walking a loop; depth only)
when it is importable, else from the analytic box room of ``tests/twins.py``. Class
distributions are a smooth random field over *world* space (consistent across views) plus a smaller
per-view image-space field (so that views disagree), softmaxed — no model is involved.

Every part prints its wall and process CPU seconds (user + sys, all threads); ``--json PATH`` also writes
every number of the tables, per part, to one JSON file (rewritten atomically after each part).

Usage:  NUMBA_THREADING_LAYER=omp python scripts/bench_kernels.py [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# honest compile times: Numba compiles into a fresh cache directory (set before numba is imported)
if "--warm-cache" not in sys.argv:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="viewal-bench-numba-")
os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import numpy as np  # noqa: E402

# ------------------------------------------------------------------------------------------ scenes

def synthetic_geometry(n: int, h: int, w: int, seed: int = 0):
    """(depths (N,H,W) f32, Ks (N,3,3), poses (N,4,4), source name) of one synthetic room."""
    try:
        from viewal.datasets import synthetic as syn

        rng = np.random.default_rng([seed, 0])
        spec = syn.build_scene(rng)
        renderer = syn.RoomRenderer(spec)
        poses = np.stack(syn.camera_trajectory(np.random.default_rng([seed, 0, 1]), spec, n))
        K = syn.default_intrinsics(h, w)
        v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
        depths = np.zeros((n, h, w), np.float32)
        for i, T in enumerate(poses):
            hit = renderer.cast(T[:3, 3], d_cam @ T[:3, :3].T)
            t = hit["t_hit"].astype(np.float64)
            depths[i] = np.where(np.isfinite(t), t * d_cam[..., 2], 0.0)
        return depths, np.repeat(K[None], n, 0), poses, "viewal.datasets.synthetic (Open3D room)"
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test scenes live with the tests
        from twins import intrinsics, look_at, raycast_box

        rng = np.random.default_rng(seed)
        K = intrinsics(h, w, 60.0)
        poses, depths = [], []
        for k in range(n):
            a = 2 * np.pi * k / max(n, 1) * 0.8
            eye = np.array([2.0 + 0.6 * np.cos(a), 1.5 + 0.4 * np.sin(a), 1.4])
            tgt = np.array([2.0 - 1.5 * np.cos(a), 1.5 - 1.2 * np.sin(a), 1.0]) + rng.normal(0, 0.1, 3)
            T = look_at(eye, tgt)
            poses.append(T)
            depths.append(raycast_box(K, T, h, w))
        return np.stack(depths), np.repeat(K[None], n, 0), np.stack(poses), "analytic box room (tests/twins.py)"


def field_probs(depths, Ks, poses, c: int, seed: int = 0, n_feat: int = 12):
    """(N, C, H, W) float32: softmax of a smooth random field over world space + a per-view image field."""
    from viewal.core.geometry import backproject

    rng = np.random.default_rng(seed)
    n, h, w = depths.shape
    F = rng.normal(size=(n_feat, 3)) * 1.2            # cycles per metre
    ph = rng.uniform(0, 2 * np.pi, n_feat)
    A = rng.normal(size=(n_feat, c)) * 1.6
    v, u = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        X = np.nan_to_num(backproject(depths[i], Ks[i], poses[i]).reshape(-1, 3))
        logits = np.cos(2 * np.pi * X @ F.T + ph) @ A       # (HW, C)
        fu, fv, pv = rng.uniform(0.5, 2.5, 4), rng.uniform(0.5, 2.5, 4), rng.uniform(0, 2 * np.pi, 4)
        img = np.cos(2 * np.pi * (fu * u.reshape(-1, 1) + fv * v.reshape(-1, 1)) + pv)   # (HW, 4)
        logits = logits + img @ (rng.normal(size=(4, c)) * 0.8)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out[i] = (p / p.sum(axis=1, keepdims=True)).T.reshape(c, h, w)
    return out


# ------------------------------------------------------------------------------- ViewAL-algorithm

def viewal_algorithm(probs, depths, Ks, poses, world_distance: float = 1.0):
    """VE/VD computed the way ViewAL's code organises it, in torch on the CPU (float32).

    All points of the scene are back-projected once into one (4, N*H*W) tensor; then every target frame
    re-projects all of them, keeps those that land inside it and pass the world-distance test against
    its own back-projected depth, ``index_add_``s their class vectors onto the target pixels, and loops
    over classes in Python for the entropy and the divergence. (Splatting: the set of a target pixel is
    the source points that land on it; the exact kernels gather one pixel per frame instead. The two
    agree up to how many points of a view land on one pixel — compared in the output.)
    """
    import torch

    n, c, h, w = probs.shape
    hw = h * w
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    world = torch.zeros(4, n * hw)
    for i in range(n):
        d = torch.from_numpy(depths[i].reshape(-1))
        I = torch.stack([u * d, v * d, d, torch.ones(hw)])  # noqa: E741  (homogeneous image points, as ViewAL)
        Kinv = torch.from_numpy(np.linalg.inv(Ks[i])).float()
        cam = torch.cat([Kinv @ I[:3], I[3:]])
        world[:, i * hw:(i + 1) * hw] = torch.from_numpy(poses[i]).float() @ cam
    valid_all = torch.from_numpy(depths.reshape(-1) > 0)
    P = torch.from_numpy(probs.transpose(0, 2, 3, 1).reshape(n * hw, c).copy())
    ve = np.zeros((n, h, w), np.float32)
    vd = np.zeros((n, h, w), np.float32)
    for t in range(n):
        K = torch.from_numpy(Ks[t]).float()
        T = torch.from_numpy(poses[t]).float()
        proj = (K @ torch.linalg.inv(T)[:3]) @ world
        z = proj[2]
        px = torch.round(proj[0] / z)
        py = torch.round(proj[1] / z)
        m = valid_all & (z > 0) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
        idx = (py[m] * w + px[m]).long()
        dt = torch.from_numpy(depths[t].reshape(-1))[idx]
        Kinv = torch.linalg.inv(K)
        back = T[:3, :3] @ (Kinv @ torch.stack([px[m] * dt, py[m] * dt, dt])) + T[:3, 3:]
        keep = (torch.linalg.norm(world[:3, m] - back, dim=0) < world_distance) & (dt > 0)
        idx = idx[keep]
        src = P[m][keep]
        acc = torch.zeros(hw, c)
        acc.index_add_(0, idx, src)
        acc = acc / acc.sum(dim=1, keepdim=True)
        ent = torch.zeros(hw)
        for k in range(c):
            ent -= acc[:, k] * torch.log2(acc[:, k] + 1e-12)
        Pt = P[t * hw:(t + 1) * hw]
        logq = torch.zeros(hw, c)
        logq.index_add_(0, idx, torch.log2((src + 1e-8) / (Pt[idx] + 1e-8)))
        cnt = torch.zeros(hw).index_add_(0, idx, torch.ones(idx.shape[0]))
        kl = torch.zeros(hw)
        for k in range(c):
            kl -= Pt[:, k] * logq[:, k] / cnt
        ve[t] = torch.nan_to_num(ent).reshape(h, w).numpy()
        vd[t] = torch.nan_to_num(kl).reshape(h, w).numpy()
    return ve, vd


# --------------------------------------------------------------------------------------- helpers

CPU_TIMES: list[float] = []
RESULTS: dict = {}      # everything the tables show, per part (written by --json)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its waited-for children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def num(x, digits: int = 4):
    """A table value for the JSON file: None stays None, floats are rounded."""
    return None if x is None else round(float(x), digits)


def run_part(name: str, f, args) -> None:
    """Run one part, print and record its wall and CPU seconds, rewrite the JSON file."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    f(args)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    RESULTS.setdefault("parts", {}).setdefault(name, {}).update(wall_s=num(wall, 1), cpu_s=num(cpu, 1))
    print(f"[part {name}: wall {wall:.0f} s, CPU {cpu:.0f} s (user+sys, all threads)]")
    save_json(args)


def save_json(args) -> None:
    if args.json:
        from viewal.core.io import write_json

        write_json(args.json, RESULTS)


def timed(f, repeats: int = 1):
    """(result of the last call, median wall seconds); the median process CPU seconds (all threads) of the
    same calls is appended to ``CPU_TIMES`` — less sensitive than wall time to other jobs on the machine."""
    ts, cs = [], []
    out = None
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    CPU_TIMES.append(float(np.median(cs)))
    return out, float(np.median(ts))


def grid_superpixels(n: int, h: int, w: int, cell: int = 40) -> np.ndarray:
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sp = (v // cell) * (-(-w // cell)) + u // cell
    return np.repeat(sp[None], n, axis=0).astype(np.int32)


def region_means(x: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """(R,) superpixel means of (N, H, W) maps: the package's one region mean (``viewal.selection.pool_frames``)."""
    from viewal.selection import pool_frames

    return pool_frames(x, sp)[0]


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def print_table(rows, header):
    widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(len(header))]
    line = "  ".join(str(hh).rjust(wd) for hh, wd in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(x).rjust(wd) for x, wd in zip(r, widths)))


# ------------------------------------------------------------------------------------------ parts

def bench_exact(args):
    import torch

    from viewal.kernels import DepthTest, cpu, view_entropy_divergence

    h, w = args.h, args.w
    torch.set_num_threads(args.threads)
    print(f"\n## 1. Exact VE/VD, one scene per size, {w}x{h}, mode='viewal', gather and splat on the same inputs "
          "(times: median seconds per scene)")
    # compilation apart: first call on a tiny scene (both aggregations)
    d0, K0, T0, _ = synthetic_geometry(3, 24, 32, seed=99)
    p0 = field_probs(d0, K0, T0, 5)
    _, t_first = timed(lambda: [view_entropy_divergence(p0, d0, K0, T0, depth_test=DepthTest(mode="viewal",
                                                                                             aggregation=agg))
                                for agg in ("gather", "splat")])
    hits = sum(cpu.ve_vd_kernel.stats.cache_hits.values())
    print(f"Numba first call (compilation{' from cache' if hits else ''}, incl. tiny run): {t_first:.2f} s")
    part = RESULTS.setdefault("parts", {}).setdefault("exact", {})
    part.update(width=w, height=h, first_call_s=num(t_first, 2), first_call_from_cache=bool(hits), rows=[])
    rows = []
    source = None
    for n in args.sizes:
        depths, Ks, poses, source = synthetic_geometry(n, h, w, seed=args.seed)
        for c in args.classes:
            probs = field_probs(depths, Ks, poses, c, seed=args.seed)
            out, t, cput = {}, {}, {}
            for agg in ("gather", "splat"):
                out[agg], t[agg] = timed(partial(view_entropy_divergence, probs, depths, Ks, poses,
                                                 depth_test=DepthTest(mode="viewal", aggregation=agg)),
                                         repeats=args.repeats)
                cput[agg] = CPU_TIMES[-1]
            t_np = t_base = c_base = err = rho_g = rho_s = None
            if n <= args.numpy_max_n:
                (ve_r, vd_r), t_np = timed(partial(view_entropy_divergence, probs, depths, Ks, poses,
                                                   depth_test=DepthTest(mode="viewal", aggregation="gather",
                                                                        backend="numpy")))
                ve, vd = out["gather"]
                err = max(float(np.abs(ve - ve_r).max()), float(np.abs(vd - vd_r).max()))
            if n <= args.baseline_max_n:
                (ve_b, vd_b), t_base = timed(partial(viewal_algorithm, probs, depths, Ks, poses))
                c_base = CPU_TIMES[-1]
                valid = depths > 0
                rho_g = float(np.corrcoef(out["gather"][0][valid], ve_b[valid])[0, 1])
                rho_s = float(np.corrcoef(out["splat"][0][valid], ve_b[valid])[0, 1])
            ratio, cratio = t["splat"] / t["gather"], cput["splat"] / cput["gather"]
            rows.append((n, c, fmt(t_np), fmt(t_base), fmt(t["gather"], ".3f"), fmt(t["splat"], ".3f"),
                         fmt(ratio, ".2f"), fmt(cratio, ".2f"),
                         fmt(t_base / t["gather"] if t_base else None, ".1f"),
                         fmt(c_base / cput["gather"] if c_base else None, ".1f"),
                         fmt(t_base / t["splat"] if t_base else None, ".1f"),
                         fmt(t_np / t["gather"] if t_np else None, ".1f"),
                         fmt(err, ".1e"), fmt(rho_g, ".3f"), fmt(rho_s, ".3f")))
            part["rows"].append(dict(
                n=n, c=c, numpy_s=num(t_np), viewal_alg_s=num(t_base), viewal_alg_cpu_s=num(c_base),
                gather_s=num(t["gather"]), gather_cpu_s=num(cput["gather"]), splat_s=num(t["splat"]),
                splat_cpu_s=num(cput["splat"]), splat_over_gather=num(ratio, 3), splat_over_gather_cpu=num(cratio, 3),
                max_abs_gather_minus_numpy=None if err is None else float(f"{err:.2e}"),
                corr_ve_gather_viewal_alg=num(rho_g), corr_ve_splat_viewal_alg=num(rho_s)))
            print(f"  done N={n} C={c}", file=sys.stderr, flush=True)
    part["scene"] = source
    print(f"scene: {source}; pairs skipped by the frustum bound are never visited")
    print_table(rows, ("N", "C", "numpy s", "ViewAL-alg s", "gather s", "splat s", "splat/gather x", "(CPU-time x)",
                       "ViewAL/gather x", "(CPU-time x)", "ViewAL/splat x", "numpy/gather x", "max|gather-numpy|",
                       "corr VE gather", "corr VE splat"))
    print("gather s, splat s = the Numba CPU kernel with mode='viewal' and either aggregation, same inputs;"
          "\nsplat/gather x = their wall-time ratio (the cost of ViewAL's aggregation), (CPU-time x) the same in"
          "\nprocess CPU seconds (all threads), robust to contention; ViewAL/gather x, ViewAL/splat x = speed-up of"
          "\nthe kernel over the ViewAL-algorithm baseline (torch, splats); corr = Pearson correlation of per-pixel"
          "\nVE between the baseline and the kernel (gather differs by definition, splat is the same computation)."
          "\nThe NumPy reference runs the gather aggregation.")


def bench_fused(args):
    from scipy.stats import spearmanr

    from viewal.kernels import view_entropy_divergence, view_entropy_divergence_fused

    h, w = args.h, args.w
    print(f"\n## 2. Fused (voxel) vs exact, {w}x{h}, C={args.fused_classes}, mode='z' "
          f"(Spearman of superpixel-mean scores, 40x40-px grid superpixels)")
    view_entropy_divergence_fused(*_tiny_scene(), voxel_size=0.05)  # compile apart
    part = RESULTS.setdefault("parts", {}).setdefault("fused", {})
    part.update(width=w, height=h, c=args.fused_classes, mode="z", superpixels="40x40 px grid", rows=[])
    rows = []
    for n in args.fused_sizes:
        depths, Ks, poses, _ = synthetic_geometry(n, h, w, seed=args.seed)
        probs = field_probs(depths, Ks, poses, args.fused_classes, seed=args.seed)
        sp = grid_superpixels(n, h, w)
        (ve, vd), t_exact = timed(partial(view_entropy_divergence, probs, depths, Ks, poses))
        me, md = region_means(ve, sp), region_means(vd, sp)
        c_exact = CPU_TIMES[-1]
        for vs in args.voxel_sizes:
            (vf, vdf), t_f = timed(partial(view_entropy_divergence_fused, probs, depths, Ks, poses, voxel_size=vs))
            rho_e = float(spearmanr(me, region_means(vf, sp))[0])
            rho_d = float(spearmanr(md, region_means(vdf, sp))[0])
            rows.append((n, vs, fmt(t_exact), fmt(t_f, ".3f"), fmt(t_exact / t_f, ".1f"),
                         fmt(c_exact / CPU_TIMES[-1], ".1f"), fmt(rho_e, ".3f"), fmt(rho_d, ".3f")))
            part["rows"].append(dict(n=n, voxel_m=vs, exact_s=num(t_exact), exact_cpu_s=num(c_exact),
                                     fused_s=num(t_f), fused_cpu_s=num(CPU_TIMES[-1]), speedup=num(t_exact / t_f, 2),
                                     spearman_ve=num(rho_e), spearman_vd=num(rho_d)))
        print(f"  done fused N={n}", file=sys.stderr, flush=True)
        del probs
    print_table(rows, ("N", "voxel m", "exact s", "fused s", "speed-up x", "(CPU-time x)", "Spearman VE",
                       "Spearman VD"))


def _tiny_scene():
    d, K, T, _ = synthetic_geometry(3, 24, 32, seed=99)
    return field_probs(d, K, T, 5), d, K, T


def load_real_scene(root: Path, sid: str, viewal_like: bool = False):
    """Frames of one scene of the real sample: (superpixels, depths, Ks, poses, names).

    ``viewal_like``: depth resized bicubically with PIL and intrinsics simply halved, instead of the
    loader's nearest-neighbour depth and exact scaled intrinsics. (ViewAL itself resized depth with
    nearest-neighbour: Pillow 6's default; the bicubic rows show that it does not reproduce its tables.)
    """
    from viewal.datasets.viewal_original import load_viewal_superpixels, read_info, read_viewal_original

    ds = read_viewal_original(root)
    frames = ds.scenes[sid]
    sp = np.stack([load_viewal_superpixels(ds, f) for f in frames])
    T = np.stack([f.world_T_cam for f in frames])
    names = [f"{f.scene_id}_{f.frame_id}" for f in frames]
    if not viewal_like:
        return sp, np.stack([f.depth for f in frames]), np.stack([f.K for f in frames]), T, names
    import cv2
    from PIL import Image

    info = read_info(root / "raw" / "selections" / "info" / f"{sid}.txt")
    K = np.asarray(info["K_depth"], float)[:3, :3].copy()
    K[:2] /= 2
    D = []
    for nm in names:
        raw = cv2.imread(str(root / "raw" / "selections" / "depth" / f"{nm}.pgm"), cv2.IMREAD_UNCHANGED)
        im = Image.fromarray(raw.astype(np.int32), mode="I").resize((sp.shape[2], sp.shape[1]), Image.BICUBIC)
        D.append(np.clip(np.asarray(im, np.float32) / float(info["depth_shift"]), 0, None))
    return sp, np.stack(D), np.repeat(K[None], len(names), 0), T, names


def viewal_table(root: Path, sid: str, names: list[str]) -> dict:
    z = np.load(root / "raw" / "selections" / "coverage_superpixel_table" / f"{sid}.npz")
    if list(z["frame_names"]) != names:
        raise ValueError(f"{sid}: ViewAL's frame_names differ from the loader's frame order")
    k2i = {int(k): i for i, k in enumerate(z["frame_keys"])}
    return {(k2i[int(a)], int(b), k2i[int(c)], int(d)): float(v) for a, b, c, d, v in
            zip(z["target_frame_key"], z["target_superpixel"], z["source_frame_key"], z["source_superpixel"],
                z["coverage"])}


def compare_tables(ours: dict, theirs: dict) -> tuple:
    cross_o = {k: v for k, v in ours.items() if k[0] != k[2]}
    cross_t = {k: v for k, v in theirs.items() if k[0] != k[2]}
    strong_t = [k for k, v in cross_t.items() if v > 0.25]
    strong_o = [k for k, v in cross_o.items() if v > 0.25]
    recall = np.mean([cross_o.get(k, 0.0) > 0.25 for k in strong_t]) if strong_t else np.nan
    precision = np.mean([cross_t.get(k, 0.0) > 0.25 for k in strong_o]) if strong_o else np.nan
    keys = set(cross_o) | set(cross_t)
    d = np.array([abs(cross_o.get(k, 0.0) - cross_t.get(k, 0.0)) for k in keys])
    self_t = [v for k, v in theirs.items() if k[0] == k[2] and k[1] == k[3]]
    return (len(cross_t), len(cross_o), len(strong_t), recall, precision, float(np.median(d)), float(d.mean()),
            float(np.median(self_t)) if self_t else np.nan)


def bench_real(args):
    from viewal.core.sample import scannet_sample_available, scannet_sample_path
    from viewal.kernels import DepthTest, superpixel_overlap, view_entropy_divergence, view_entropy_divergence_fused

    print("\n## 3. Real ScanNet sample (ViewAL's scannet-sample, 320x240, ViewAL's SEEDS superpixels)")
    part = RESULTS.setdefault("parts", {}).setdefault("real", {})
    if not scannet_sample_available():
        print(f"skipped: sample not found at {scannet_sample_path()}")
        part["skipped"] = f"sample not found at {scannet_sample_path()}"
        return
    root = scannet_sample_path()
    part.update(c=40, times=[], overlap_vs_viewal=[])
    rows_t, rows_c = [], []
    sp0, D0, K0, T0, _ = load_real_scene(root, "scene0007_00")
    superpixel_overlap(sp0[:2], D0[:2], K0[:2], T0[:2])            # compile apart
    view_entropy_divergence_fused(*_tiny_scene(), voxel_size=0.05)
    for sid in ("scene0007_00", "scene0014_00"):
        sp, D, K, T, names = load_real_scene(root, sid)
        n = len(names)
        probs = field_probs(D, K, T, 40, seed=args.seed)
        _, t_z = timed(partial(view_entropy_divergence, probs, D, K, T, depth_test=DepthTest(mode="z")),
                       repeats=args.repeats)
        _, t_vg = timed(partial(view_entropy_divergence, probs, D, K, T,
                                depth_test=DepthTest(mode="viewal", aggregation="gather")), repeats=args.repeats)
        c_vg = CPU_TIMES[-1]
        _, t_v = timed(partial(view_entropy_divergence, probs, D, K, T,
                               depth_test=DepthTest(mode="viewal", aggregation="splat")), repeats=args.repeats)
        c_v = CPU_TIMES[-1]
        _, t_f = timed(partial(view_entropy_divergence_fused, probs, D, K, T, voxel_size=0.05), repeats=args.repeats)
        tab, t_o = timed(partial(superpixel_overlap, sp, D, K, T, depth_test=DepthTest(mode="viewal")),
                         repeats=args.repeats)
        rows_t.append((sid, n, f"{(D > 0).mean():.3f}", fmt(t_z, ".3f"), fmt(t_vg, ".3f"), fmt(t_v, ".3f"),
                       fmt(t_v / t_vg, ".2f"), fmt(c_v / c_vg, ".2f"), fmt(t_f, ".3f"), fmt(t_o, ".3f"), len(tab)))
        part["times"].append(dict(scene=sid, n=n, valid_depth=num((D > 0).mean(), 3), ve_vd_z_gather_s=num(t_z),
                                  ve_vd_viewal_gather_s=num(t_vg), ve_vd_viewal_splat_s=num(t_v),
                                  splat_over_gather=num(t_v / t_vg, 3), splat_over_gather_cpu=num(c_v / c_vg, 3),
                                  fused_s=num(t_f), overlap_s=num(t_o), table_rows=len(tab)))
        theirs = viewal_table(root, sid, names)
        variants = [("viewal 1.0 m (ours: nearest depth)", dict(mode="viewal"), False),
                    ("viewal 1.0 m, bicubic depth, halved K", dict(mode="viewal"), True),
                    ("viewal 0.1 m (ours: nearest depth)", dict(mode="viewal", world_distance=0.1), False),
                    ("viewal 0.1 m, bicubic depth, halved K", dict(mode="viewal", world_distance=0.1), True),
                    ("z 5 cm + 2 % (ours: nearest depth)", dict(mode="z"), False)]
        for label, kw, like in variants:
            sp_, D_, K_, T_, _ = load_real_scene(root, sid, viewal_like=like)
            ours = superpixel_overlap(sp_, D_, K_, T_, depth_test=DepthTest(**kw)).as_dict()
            c = compare_tables(ours, theirs)
            rows_c.append((sid, label, c[0], c[1], c[2], fmt(c[3], ".3f"), fmt(c[4], ".3f"), fmt(c[5], ".4f"),
                           fmt(c[6], ".4f"), fmt(c[7], ".3f")))
            part["overlap_vs_viewal"].append(dict(
                scene=sid, ours=label, viewal_pairs=c[0], our_pairs=c[1], viewal_strong=c[2], recall=num(c[3]),
                precision=num(c[4]), median_abs_d=num(c[5], 5), mean_abs_d=num(c[6], 5), viewal_self_cov=num(c[7])))
    print_table(rows_t, ("scene", "N", "valid depth", "VE/VD z s", "viewal gather s", "viewal splat s",
                         "splat/gather x", "(CPU-time x)", "fused s", "overlap s", "table rows"))
    print("VE/VD z = DepthTest(mode='z') (gather); viewal gather / splat = mode 'viewal' with either aggregation, same"
          "\ninputs (splat is the mode's own, ViewAL's); (CPU-time x) = splat/gather in process CPU seconds.")
    print("\nOverlap table vs ViewAL's coverage_superpixel_table (cross-frame pairs; C=40 random-field probs above)")
    print_table(rows_c, ("scene", "ours", "ViewAL pairs", "our pairs", "ViewAL >0.25", "recall@0.25",
                         "precision@0.25", "median|d|", "mean|d|", "ViewAL self cov"))
    print("recall = share of ViewAL's pairs with coverage > 0.25 that we also find > 0.25; precision = the converse;"
          "\n|d| over the union of pairs (a pair missing on one side counts as 0 there). Our self rows are 1 by"
          "\ndefinition (every pixel corresponds to itself); ViewAL's are the share of valid-depth pixels.")


def bench_port(args):
    """Part 4: mode "viewal" vs the port of ViewAL's code on the real sample (no timing)."""
    from viewal.core.sample import scannet_sample_available, scannet_sample_path

    print("\n## 4. Mode 'viewal' (splat) vs a port of ViewAL's view_entropy.py, real sample, C=13 random per-pixel "
          "distributions, ViewAL's halved K, nearest depth, ViewAL's depth-0 quirks off")
    part = RESULTS.setdefault("parts", {}).setdefault("port", {})
    if not scannet_sample_available():
        print(f"skipped: sample not found at {scannet_sample_path()}")
        part["skipped"] = f"sample not found at {scannet_sample_path()}"
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from viewal_port import compare

    part.update(c=13, rows=[])
    rows = []
    for sid in ("scene0007_00", "scene0014_00"):
        for wd in (1.0, 0.1):
            r = compare(scannet_sample_path(), sid, wd, c=13, seed=args.seed)
            rows.append((sid, f"{wd:g}", fmt(r["spearman_ve"], ".4f"), fmt(r["spearman_vd"], ".4f"),
                         fmt(r["spearman_ve_own_values"], ".3f"), f"{r['n_dve_valid_1e-4']}/{r['n_valid']}",
                         fmt(r["max_dve_valid"], ".3f"), fmt(r["max_dvd_valid"], ".3f")))
            part["rows"].append(dict(scene=sid, world_distance_m=wd, spearman_ve=num(r["spearman_ve"], 5),
                                     spearman_vd=num(r["spearman_vd"], 5),
                                     spearman_ve_own_invalid=num(r["spearman_ve_own_values"]),
                                     valid_px_dve_over_1e4=int(r["n_dve_valid_1e-4"]), valid_px=int(r["n_valid"]),
                                     max_dve_valid=num(r["max_dve_valid"]), max_dvd_valid=num(r["max_dvd_valid"])))
            print(f"  done port {sid} {wd}", file=sys.stderr, flush=True)
    print_table(rows, ("scene", "dist m", "Spearman VE", "Spearman VD", "Spearman VE (own invalid)",
                       "valid px |dVE|>1e-4", "max|dVE| valid", "max|dVD| valid"))
    print("Superpixel means over ViewAL's SEEDS superpixels, compared as ViewAL ranks (invalid-depth pixels score 0);"
          "\n'own invalid' = the package's values there (the pixel's own entropy). Differences: docs/bench_kernels.md.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes (seconds)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50],
                    help="N of part 1 (exact); part 2 times exact up to N = 400 (mode z)")
    ap.add_argument("--classes", type=int, nargs="+", default=[13, 40])
    ap.add_argument("--fused-sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    ap.add_argument("--fused-classes", type=int, default=13)
    ap.add_argument("--voxel-sizes", type=float, nargs="+", default=[0.03, 0.05])
    ap.add_argument("--numpy-max-n", type=int, default=25, help="run the (slow) NumPy reference up to this N")
    ap.add_argument("--baseline-max-n", type=int, default=50, help="run the ViewAL-algorithm baseline up to this N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["exact", "fused", "real", "port"])
    ap.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help="also write every number of the tables to this JSON file (atomically, after each part)")
    ap.add_argument("--warm-cache", action="store_true", help="use Numba's normal cache (compile time not measured)")
    args = ap.parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        ap.error(f"--json: directory {args.json.parent} does not exist")
    args.h, args.w = 240, 320
    if args.quick:
        args.h, args.w = 60, 80
        args.sizes, args.classes, args.fused_sizes, args.repeats = [6, 12], [13], [6, 12], 1
    import numba
    import torch

    load = os.getloadavg()
    contended = load[0] > 0.7 * (os.cpu_count() or 1)
    command = " ".join(["python"] + sys.argv)
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print("# viewal kernel benchmark")
    print(f"command: {command}")
    print(f"date: {date}; python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS}, layer {numba.config.THREADING_LAYER}),"
          f" torch {torch.__version__} (threads {args.threads})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; load average at start "
          f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}" + (" — CONTENDED: other jobs were running, times are inflated"
                                                        if contended else ""))
    RESULTS["meta"] = dict(command=command, date=date, python=platform.python_version(), numpy=np.__version__,
                           numba=numba.__version__, numba_threads=numba.config.NUMBA_NUM_THREADS,
                           numba_layer=numba.config.THREADING_LAYER, torch=torch.__version__,
                           torch_threads=args.threads, machine=platform.platform(), cpus=os.cpu_count(),
                           load_at_start=[round(x, 2) for x in load], contended_at_start=contended,
                           fresh_numba_cache=not args.warm_cache, quick=args.quick, seed=args.seed,
                           repeats=args.repeats)
    save_json(args)
    c0, t0 = cpu_seconds(), time.perf_counter()
    for name, f in (("exact", bench_exact), ("fused", bench_fused), ("real", bench_real), ("port", bench_port)):
        if name not in args.skip:
            run_part(name, f, args)
    load = os.getloadavg()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    RESULTS["meta"].update(total_wall_s=num(wall, 1), total_cpu_s=num(cpu, 1), load_at_end=[round(x, 2) for x in load])
    save_json(args)
    print(f"\ntotal {wall:.0f} s wall, {cpu:.0f} s CPU (user+sys, all threads); load average at end "
          f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}" + (f"; numbers written to {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
