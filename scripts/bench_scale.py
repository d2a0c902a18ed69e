#!/usr/bin/env python
"""Benchmark of scoring on Ray: scenes per minute with 1 and 2 Ray workers (their ratio, in one
run), Ray's overhead per task, and an estimate of one full ScanNet scoring cycle on N workers.

What is measured, on one synthetic dataset (``viewal.datasets.synthetic``; ``--data`` for another):

1. local: ``viewal.scoring.executors.LocalExecutor`` scores every pool scene in this process (the same
   ``score_scene`` the Ray tasks run) -> seconds per scene and per frame. One warm-up scene first
   (Numba compilation, superpixel and overlap caches), reported apart.
2. Ray with 1 worker, then with 2 (``ray.init(num_cpus=k)``, a fresh local Ray each): the same scenes
   as tasks -> scenes per minute, and the ratio 2 workers / 1 worker.
3. Ray's overhead per task: the median round trip of an empty task carrying a scene-sized argument, and
   (Ray time per scene with 1 worker) - (local time per scene).

The estimate: ViewAL scores 23,750 ScanNet training frames at 240x320 with 40 MC passes per cycle. From
the measured seconds per frame it scales linearly to 240x320 pixels and to 40 passes (an upper bound:
only dropout + decoder repeat per pass, the encoder runs once), divides by N workers with the measured
2-worker efficiency, and adds the per-task overhead for 1,513 scenes. On GPUs, run this script with
``--device cuda`` on a GPU machine: the per-frame cost is then measured there; no GPU number is invented.

Model: DeepLabv3+ (EfficientNet-Lite0, random weights: scoring cost does not depend on the values).

Usage:  NUMBA_THREADING_LAYER=omp python scripts/bench_scale.py [--quick] [--scenes 8 --frames 10 --size 120x160]
Writes nothing unless ``--json PATH``. Do not quote its numbers from a busy machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's default 15 starves workers on a shared machine
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # single-node Ray on 127.0.0.1 (read at import)

import numpy as np

SCANNET = {"frames": 23750, "scenes": 1513, "height": 240, "width": 320, "passes": 40}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset to score (default: a synthetic one in a temp dir)")
    p.add_argument("--scenes", type=int, default=6, help="synthetic: pool scenes")
    p.add_argument("--frames", type=int, default=8, help="synthetic: frames per scene")
    p.add_argument("--size", default="120x160", help="synthetic: HxW")
    p.add_argument("--mc-passes", type=int, default=8)
    p.add_argument("--scorer", default="view_entropy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--decoder-channels", type=int, default=256)
    p.add_argument("--workers", default="1,2", help="Ray worker counts to compare (the ratio: last / first)")
    p.add_argument("--overhead-tasks", type=int, default=20, help="empty tasks timed for the overhead")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 tiny scenes, 2 passes, small decoder")
    p.add_argument("--json", default=None, help="write the measurements here")
    a = p.parse_args(argv)
    if a.quick:
        a.scenes, a.frames, a.size, a.mc_passes, a.decoder_channels, a.overhead_tasks = 3, 3, "48x64", 2, 16, 5
    return a


def setup(args):
    """(dataset, model, scorer, jobs, spec) of the pool, as ``ActiveLearner.score_pool`` builds them."""
    import torch

    import viewal.scoring.scorers as scorers
    from viewal.core.config import ALConfig
    from viewal.datasets import open_dataset
    from viewal.nn.data import parse_size
    from viewal.nn.model import build_model
    from viewal.scoring.executors import RegionMaps, SceneJob, ScoringSpec

    if args.data is None:
        from viewal.datasets.synthetic import generate_dataset
        from viewal.datasets.synthetic.dataset import split_scenes

        h, w = parse_size(args.size)
        root = Path(tempfile.mkdtemp(prefix="viewal-bench-scale-")) / "data"
        # the pool is the train split: enough scenes that it holds --scenes (the rest go to val and test)
        n = args.scenes + 2
        while len(split_scenes([str(i) for i in range(n)], {})["train"]) < args.scenes:
            n += 1
        generate_dataset(root, scenes=n, frames=args.frames, height=h, width=w, seed=0, progress=False)
        args.data = str(root)
    ds = open_dataset(args.data)
    cfg = ALConfig(scorer=args.scorer, mc_passes=args.mc_passes, device=args.device, init=None,
                   decoder_channels=args.decoder_channels)
    scorer = scorers.get(cfg.scorer)
    torch.manual_seed(0)
    model = build_model(ds.num_classes, encoder_weights=None, decoder_channels=cfg.decoder_channels)
    scorer.prepare_model(model)
    model.eval()
    by: dict[str, list] = {}
    for f in ds.split("train"):
        by.setdefault(f.scene_id, []).append(f)
    hw = (ds.height, ds.width)
    jobs = [SceneJob(s, fr, np.zeros((len(fr),) + hw, bool)) for s, fr in by.items()]
    spec = ScoringSpec(config=cfg, cycle=1, regions=RegionMaps.of(ds, cfg),
                       overlaps=scorer.selector(dedup=cfg.dedup).needs_overlaps)
    return ds, model, scorer, jobs, spec


def time_local(model, scorer, jobs, spec):
    from viewal.scoring.executors import LocalExecutor

    t0 = time.perf_counter()
    list(LocalExecutor().map(model, scorer, jobs[:1], spec))  # warm-up: Numba, superpixel/overlap caches
    warm = time.perf_counter() - t0
    per = []
    for job in jobs:
        t0 = time.perf_counter()
        list(LocalExecutor().map(model, scorer, [job], spec))
        per.append(time.perf_counter() - t0)
    return warm, per


def time_ray(model, scorer, jobs, spec, workers: int, overhead_tasks: int):
    """(seconds for all scenes, first-round warm-up seconds, empty-task round trips) on a fresh local Ray
    with ``workers`` CPUs."""
    import ray

    from viewal.scoring.executors import RayExecutor

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"NUMBA_THREADING_LAYER": "omp"}})
    try:
        ex = RayExecutor()
        t0 = time.perf_counter()  # warm-up: one task per worker (worker start, imports, Numba compilation)
        list(ex.map(model, scorer, jobs[:workers], spec))
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = list(ex.map(model, scorer, jobs, spec))
        total = time.perf_counter() - t0
        assert sorted(r.scene_id for r in got) == sorted(j.scene_id for j in jobs)

        @ray.remote(num_cpus=1)
        def empty(job):
            return len(job.frames)

        light = jobs[0].light()
        ray.get(empty.remote(light))
        trips = []
        for _ in range(overhead_tasks):
            t0 = time.perf_counter()
            ray.get(empty.remote(light))
            trips.append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return total, warm, trips


def estimate(sec_per_frame: float, hw: tuple[int, int], passes: int, efficiency: float, overhead: float,
             workers: int) -> float:
    """Hours for one ScanNet scoring cycle on ``workers`` workers (assumptions in the module docstring)."""
    scale = (SCANNET["height"] * SCANNET["width"]) / (hw[0] * hw[1]) * SCANNET["passes"] / passes
    work = SCANNET["frames"] * sec_per_frame * scale
    per_worker = work / (workers * (efficiency if workers > 1 else 1.0))
    return (per_worker + SCANNET["scenes"] * overhead / workers) / 3600.0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("bench_scale: needs ray: pip install 'viewal[ray]'", file=sys.stderr)
        return 2
    import numba
    import torch

    numba.set_num_threads(1)  # as a Ray task with one CPU (viewal.scoring.executors sets both counts)
    torch.set_num_threads(1)
    ds, model, scorer, jobs, spec = setup(args)
    n_frames = sum(len(j.frames) for j in jobs)
    print(f"bench_scale: {len(jobs)} scenes, {n_frames} frames, {ds.height}x{ds.width}, {args.mc_passes} MC passes, "
          f"scorer {args.scorer}, device {args.device}; python {platform.python_version()}, torch {torch.__version__}, "
          f"ray {ray.__version__}, {os.cpu_count()} CPUs, {platform.machine()}", flush=True)
    warm, per = time_local(model, scorer, jobs, spec)
    local_scene = statistics.median(per)
    sec_per_frame = sum(per) / n_frames
    print(f"local: warm-up {warm:.2f} s; {local_scene:.3f} s per scene (median), {sec_per_frame:.4f} s per frame",
          flush=True)
    counts = [int(x) for x in args.workers.split(",")]
    rates, res = {}, {}
    for k in counts:
        total, rwarm, trips = time_ray(model, scorer, jobs, spec, k, args.overhead_tasks)
        rates[k] = 60.0 * len(jobs) / total
        res[k] = {"seconds": total, "warmup_seconds": rwarm, "scenes_per_minute": rates[k],
                  "empty_task_seconds_median": statistics.median(trips)}
        print(f"ray, {k} worker(s): {rates[k]:.1f} scenes/min ({total:.2f} s; warm-up {rwarm:.2f} s); empty task "
              f"round trip {1000 * statistics.median(trips):.1f} ms (median of {len(trips)})", flush=True)
    lo, hi = counts[0], counts[-1]
    ratio = rates[hi] / rates[lo]
    efficiency = ratio / (hi / lo)
    overhead = max(res[lo]["seconds"] / len(jobs) / lo - local_scene, 0.0) if lo == 1 else \
        res[lo]["empty_task_seconds_median"]
    print(f"ratio {hi} / {lo} workers: {ratio:.2f}x (efficiency {efficiency:.2f}); Ray overhead per task: "
          f"{1000 * overhead:.0f} ms (1-worker Ray time per scene - local), empty task "
          f"{1000 * res[lo]['empty_task_seconds_median']:.1f} ms")
    print(f"\nestimate, one ScanNet scoring cycle ({SCANNET['frames']} frames, {SCANNET['scenes']} scenes, "
          f"{SCANNET['height']}x{SCANNET['width']}, {SCANNET['passes']} passes) on {args.device} workers like this "
          f"one, linear in pixels and passes (an upper bound for passes), {hi}-worker efficiency {efficiency:.2f}:")
    est = {}
    for n in (1, 2, 8, 32, 128):
        est[n] = estimate(sec_per_frame, (ds.height, ds.width), args.mc_passes, efficiency, overhead, n)
        print(f"  {n:4d} workers: {est[n]:8.2f} h")
    if args.json:
        from viewal.core.io import write_json

        write_json(args.json, {"argv": sys.argv[1:], "scenes": len(jobs), "frames": n_frames,
                               "local": {"warmup_seconds": warm, "scene_seconds": per},
                               "ray": {str(k): v for k, v in res.items()}, "ratio": ratio,
                               "overhead_seconds": overhead, "estimate_hours": {str(k): v for k, v in est.items()},
                               "assumptions": SCANNET})
    return 0


if __name__ == "__main__":
    sys.exit(main())
