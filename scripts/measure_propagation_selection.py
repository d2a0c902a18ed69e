#!/usr/bin/env python
"""Measure what 3D label propagation takes out of selection, on a finished ``viewal experiment`` run; prints a
table, writes nothing (docs/propagation.md holds a run's output).

For every ledger of ``--methods`` and ``--seeds`` and every cycle c >= 1, the labels as they stood before the
cycle's selection (cycles < c) are propagated under the run's depth test and propagation rule (a run that does not
propagate gets the default rule, as if it had), and the table gives

* ``regions``: the pool's regions (superpixels of every pool frame);
* ``human``: regions with a human label (never asked again, propagation or not);
* ``removed``: regions without one whose share of propagated pixels is at least ``--known`` (default: the run's
  ``propagate_known``, 0.5): what a propagating run counts as labelled;
* ``asked``: the queries of cycle c, and ``in removed``: how many of them asked a removed region, i.e. queries a
  propagating selection would not have made (0 for a propagating run, by construction).

Usage:  NUMBA_THREADING_LAYER=omp python scripts/measure_propagation_selection.py --run OUT
        [--methods random,random:propagate=true] [--seeds 0,1] [--known 0.5]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import numpy as np  # noqa: E402


def measure(run: Path, method: str, seed: int, known: float | None) -> list[dict]:
    from viewal.core.config import ALConfig
    from viewal.datasets import open_dataset
    from viewal.runs.layout import RunLayout
    from viewal.runs.ledger import Ledger
    from viewal.runs.visualize import run_propagation
    from viewal.scoring.executors import RegionMaps
    from viewal.scoring.propagation import covered_regions

    path = RunLayout(run).ledger(method, seed)
    rows = []
    with Ledger(path) as led:
        cfg = ALConfig.from_json(led.config()["al"])
        share = cfg.propagate_known if known is None else float(known)
        queries = led.queries()
        hw = tuple(queries[0].mask.shape)
        dataset = open_dataset(led.config()["dataset"], height=hw[0], width=hw[1])
        maps = RegionMaps.of(dataset, cfg)
        for c in sorted({q.cycle for q in queries if q.cycle >= 1}):
            scenes = run_propagation(dataset, led, cfg, max_cycle=c - 1)
            if scenes is None:
                raise SystemExit(f"{path}: the dataset does not give the run's pool")
            total = human_n = removed_n = 0
            removed: dict[str, set] = {}
            for sid, sp in scenes.items():
                frames = [dataset.frame(f"{sid}/{fid}") for fid in sp.frame_ids]
                regions = maps.stack(frames)
                covered = covered_regions(regions, sp.result.propagated, share)
                for i, f in enumerate(frames):
                    ids = np.unique(regions[i])
                    hum = np.unique(regions[i][sp.human[i]])
                    gone = np.setdiff1d(np.unique(regions[i][covered[i]]), hum)
                    total += ids.size
                    human_n += hum.size
                    removed_n += gone.size
                    removed[f.key] = set(gone.tolist())
            asked = [q for q in queries if q.cycle == c]
            hit = sum(int(q.region_id in removed.get(q.frame_key, ())) for q in asked)
            rows.append({"method": method, "seed": seed, "cycle": c, "regions": total, "human": human_n,
                         "removed": removed_n, "asked": len(asked), "in_removed": hit})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="viewal experiment --out")
    ap.add_argument("--methods", default="random,random:propagate=true")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--known", type=float, default=None, help="share of a region (default: the run's)")
    args = ap.parse_args()
    print(f"{'method':<24} {'seed':>4} {'cycle':>5} {'regions':>8} {'human':>6} {'removed':>8} {'asked':>6} "
          f"{'in removed':>10}")
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for r in measure(args.run, method, seed, args.known):
                print(f"{r['method']:<24} {r['seed']:>4} {r['cycle']:>5} {r['regions']:>8} {r['human']:>6} "
                      f"{r['removed']:>8} {r['asked']:>6} {r['in_removed']:>10}")


if __name__ == "__main__":
    main()
