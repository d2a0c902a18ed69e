#!/usr/bin/env python
"""Measure 3D label propagation (``viewal.kernels.propagate_labels``): how many pixels it adds and how many of
them are right, over a grid of rules, on the real ScanNet sample and on a generated scene; prints tables,
writes nothing (docs/propagation.md holds a run's output).

A simulated person labels random regions of every frame until ``--fraction`` of the frame is covered (ViewAL's
own superpixels on the ScanNet sample, SEEDS superpixels on the generated scene; or square blocks with
``--regions blocks``), each pixel with its ground-truth class (pixels without one stay unlabelled). The
labels are propagated once per depth test (votes are counted once; each rule re-decides them,
``Propagation.with_rule``) and, per rule, the table gives

* ``mult``: propagated pixels / human-labelled pixels (the multiplier);
* ``acc``: share of the propagated pixels with a ground-truth class whose propagated class is that class;
* ``wrong/human``: wrong propagated pixels per human-labelled pixel (the noise the labels gain).

Means over ``--seeds`` draws of the regions. Depth tests: mode z with the default tolerances, ViewAL's world
distance 1 m (its published constant) and 0.1 m (what its shipped overlap tables match).

Usage:  NUMBA_THREADING_LAYER=omp python scripts/measure_propagation.py [--fraction 0.04] [--seeds 0,1,2]
        [--regions superpixels|blocks] [--quick]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import numpy as np  # noqa: E402

#: the depth tests measured (name, DepthTest keyword arguments)
DEPTH_TESTS = (("z (0.05 m, 0.02)", {"mode": "z"}),
               ("viewal 1 m", {"mode": "viewal"}),
               ("viewal 0.1 m", {"mode": "viewal", "world_distance": 0.1}))
#: the rules of the grid (min_agreement, min_support, min_views)
GRID = ((0.0, 1, 1), *((a, s, 1) for s in (1, 2, 3) for a in (0.5, 0.75, 0.9, 1.0)),
        *((a, 1, 2) for a in (0.5, 0.75, 0.9, 1.0)))
BLOCK = 16  # side of a square block (pixels) for --regions blocks


@dataclass
class SceneData:
    """One scene: gt (V, H, W) int64 ground-truth classes (255 = none), depths (V, H, W) float32, Ks (V, 3, 3),
    poses (V, 4, 4) world_T_cam, regions (V, H, W) int32 region ids per frame (superpixels)."""

    name: str
    gt: np.ndarray
    depths: np.ndarray
    Ks: np.ndarray
    poses: np.ndarray
    regions: np.ndarray


def scannet_scenes(path) -> Iterator[SceneData]:
    """The scenes of ViewAL's ScanNet sample (``viewal-original`` layout) with ViewAL's own superpixels."""
    from viewal.datasets import open_dataset
    from viewal.datasets.viewal_original import load_viewal_superpixels

    ds = open_dataset(path)
    for sid in ds.scene_ids:
        frames = ds.frames(sid)
        yield SceneData(sid, np.stack([f.labels for f in frames]).astype(np.int64),
                        np.stack([f.depth for f in frames]).astype(np.float32), np.stack([f.K for f in frames]),
                        np.stack([f.world_T_cam for f in frames]),
                        np.stack([load_viewal_superpixels(ds, f) for f in frames]))


def synthetic_scene(frames: int = 12, height: int = 120, width: int = 160, seed: int = 0) -> SceneData:
    """One generated room (``viewal.datasets.synthetic``) with sensor depth noise and holes, rendered in
    memory, and SEEDS superpixels of its frames."""
    from viewal.core.superpixels import compute_superpixels
    from viewal.datasets import synthetic as syn

    spec = syn.build_scene(np.random.default_rng([seed, 0]))
    renderer = syn.RoomRenderer(spec)
    poses = np.stack(syn.camera_trajectory(np.random.default_rng([seed, 0, 1]), spec, frames))
    K = syn.default_intrinsics(height, width)
    out = [syn.render_frame(renderer, K, T, height, width, rng=np.random.default_rng([seed, 0, 2, i]),
                            depth_noise=True, holes=True) for i, T in enumerate(poses)]
    return SceneData(f"synthetic room {seed} (noise, holes)", np.stack([r["labels"] for r in out]).astype(np.int64),
                     np.stack([r["depth"] for r in out]), np.repeat(K[None], frames, axis=0), poses,
                     np.stack([compute_superpixels(r["rgb"]) for r in out]))


def block_regions(n: int, h: int, w: int, rng: np.random.Generator, block: int = BLOCK) -> np.ndarray:
    """(N, H, W) int32 ids of a randomly offset grid of ``block`` x ``block`` squares per frame."""
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty((n, h, w), np.int32)
    for i in range(n):
        dy, dx = rng.integers(0, block, size=2)
        out[i] = ((v + dy) // block) * (w // block + 2) + (u + dx) // block
    return out


def simulate_human(gt: np.ndarray, regions: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Human labels: per frame, random regions (in random order) until they cover ``fraction`` of the frame;
    their pixels take the ground-truth class (255 where it has none), every other pixel 255.

    gt: (V, H, W) int64; regions: (V, H, W) int ids. Returns (V, H, W) int64.
    """
    out = np.full(gt.shape, 255, np.int64)
    target = fraction * gt[0].size
    for i in range(gt.shape[0]):
        ids, sizes = np.unique(regions[i], return_counts=True)
        order = rng.permutation(ids.size)
        take = order[: int(np.searchsorted(np.cumsum(sizes[order]), target)) + 1]
        mask = np.isin(regions[i], ids[take])
        out[i][mask] = gt[i][mask]
    return out


def score(prop, gt: np.ndarray) -> dict[str, float]:
    """Counts of one propagation against ground truth: human, propagated, checked (propagated with a gt
    class), right (of those, equal to gt)."""
    checked = prop.propagated & (gt != 255)
    return {"human": prop.n_human, "propagated": prop.n_propagated, "checked": int(checked.sum()),
            "right": int((prop.labels[checked] == gt[checked]).sum())}


def measure(scenes: list[SceneData], fraction: float, seeds: list[int], regions: str = "superpixels",
            depth_tests=DEPTH_TESTS, grid=GRID) -> dict[str, dict[tuple, dict[str, float]]]:
    """Summed counts per depth test and rule over scenes and seeds: {test name: {rule: counts}}, plus the
    seconds each depth test's propagation took (key "seconds") and the pixels of all draws (key "pixels")."""
    from viewal.kernels import DepthTest, PropagationRule, propagate_labels

    out: dict[str, dict] = {}
    for name, kw in depth_tests:
        test = DepthTest(backend="cpu", **kw)
        acc: dict[tuple, dict[str, float]] = {r: {"human": 0, "propagated": 0, "checked": 0, "right": 0}
                                              for r in grid}
        seconds, pixels = 0.0, 0
        for sc in scenes:
            for seed in seeds:
                rng = np.random.default_rng([seed, sum(map(ord, sc.name))])
                reg = sc.regions if regions == "superpixels" else block_regions(*sc.gt.shape, rng)
                human = simulate_human(sc.gt, reg, fraction, rng)
                pixels += human.size
                t0 = time.perf_counter()
                prop = propagate_labels(human, sc.depths, sc.Ks, sc.poses, depth_test=test,
                                        rule=PropagationRule(0.0, 1, 1))
                seconds += time.perf_counter() - t0
                for r in grid:
                    for k, v in score(prop.with_rule(PropagationRule(*r)), sc.gt).items():
                        acc[r][k] += v
        out[name] = {**acc, "seconds": seconds, "pixels": pixels}
    return out


def summary(counts: dict[str, float]) -> tuple[float, float, float]:
    """(multiplier, accuracy, wrong per human pixel) of summed counts."""
    mult = counts["propagated"] / max(counts["human"], 1)
    acc = counts["right"] / counts["checked"] if counts["checked"] else float("nan")
    wrong = (counts["checked"] - counts["right"]) / max(counts["human"], 1)
    return mult, acc, wrong


def print_table(title: str, result: dict[str, dict], grid=GRID) -> None:
    names = list(result)
    print(f"\n### {title}\n")
    print("| rule (agreement, support, views) | " + " | ".join(f"{n}: mult, acc, wrong/human" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for r in grid:
        cells = ["{:.2f}x, {:.1%}, {:.3f}".format(*summary(result[n][r])) for n in names]
        print(f"| {r[0]:.2f}, {r[1]}, {r[2]} | " + " | ".join(cells) + " |")
    first = result[names[0]]
    print(f"\nhuman-labelled pixels, all draws: {first[grid[0]]['human']} "
          f"({first[grid[0]]['human'] / first['pixels']:.1%} of the pixels); seconds of propagate_labels "
          "(CPU backend, all draws): " + ", ".join(f"{n} {result[n]['seconds']:.2f}" for n in names))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.04, help="share of each frame a person labels")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the region draws")
    p.add_argument("--regions", choices=("superpixels", "blocks"), default="superpixels")
    p.add_argument("--quick", action="store_true", help="one seed, a 6-frame generated scene (a smoke run)")
    args = p.parse_args(argv)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",") if s.strip()]

    import numba

    from viewal.core.sample import scannet_sample_available, scannet_sample_path

    print(f"# measure_propagation: {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cores; fraction {args.fraction:.1%}, seeds {seeds}, "
          f"regions {args.regions}")
    # warm-up (Numba compilation) reported apart
    from viewal.kernels import DepthTest, propagate_labels

    t0 = time.perf_counter()
    syn = synthetic_scene(frames=6 if args.quick else 12)
    propagate_labels(simulate_human(syn.gt, syn.regions, args.fraction, np.random.default_rng(0)), syn.depths,
                     syn.Ks, syn.poses, depth_test=DepthTest(backend="cpu"))
    print(f"warm-up (rendering + first call): {time.perf_counter() - t0:.1f} s")

    if scannet_sample_available():
        scenes = list(scannet_scenes(scannet_sample_path()))
        frames = sum(s.gt.shape[0] for s in scenes)
        h, w = scenes[0].gt.shape[1:]
        print_table(f"ScanNet sample ({frames} frames of {len(scenes)} scenes, {w}x{h})",
                    measure(scenes, args.fraction, seeds, args.regions))
    else:
        print(f"\n(ScanNet sample not found at {scannet_sample_path()}: skipped)")
    v, h, w = syn.gt.shape
    print_table(f"{syn.name}, {v} frames, {w}x{h}", measure([syn], args.fraction, seeds, args.regions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
