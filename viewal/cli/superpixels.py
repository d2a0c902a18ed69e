"""``viewal superpixels``: compute and cache SEEDS/SLIC superpixels of every frame
(:func:`viewal.core.superpixels.compute_all`)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from viewal.core.superpixels import METHODS, compute_all, count_stats
from viewal.datasets import open_dataset

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset directory (any format open_dataset reads)")
    p.add_argument("--format", default="auto", help="dataset format")
    p.add_argument("--method", choices=METHODS, default="seeds", help="superpixel algorithm")
    p.add_argument("--num", type=int, default=None,
                   help="target number of superpixels per frame (default 40; SEEDS rounds it to a grid count)")
    p.add_argument("--stats", action="store_true", help="print mean/min/max superpixels per frame")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="cache location (default: DATA/.viewal_cache/superpixels)")


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.data, format=args.format)
    t0 = time.perf_counter()
    cache = compute_all(ds, args.method, cache_dir=args.cache_dir, num=args.num)
    print(f"{args.method} superpixels of {len(ds)} frames in {cache.directory()} "
          f"({cache.misses} computed, {cache.hits} cached, {time.perf_counter() - t0:.1f} s)")
    if args.stats:
        st = count_stats(cache, ds)
        print(f"superpixels per frame: mean {st['mean']:.1f}, min {st['min']}, max {st['max']} "
              f"over {st['frames']} frames")
    return 0

