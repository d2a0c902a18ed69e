"""``viewal visualize``: pictures of a run (:mod:`viewal.runs.visualize`): the contact sheet of a cycle's queried
regions and, with ``--ply SCENE``, the view-entropy point cloud of a scene from the cycle's checkpoint."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from viewal.cli.options import add_run_arguments, resolve_run_arguments
from viewal.core.config import ALConfig
from viewal.datasets import open_dataset
from viewal.kernels.depth_test import BACKENDS
from viewal.nn.data import parse_size
from viewal.nn.train import load_checkpoint
from viewal.runs.layout import RunLayout
from viewal.runs.ledger import Ledger
from viewal.runs.visualize import (
    last_query_cycle,
    propagation_sheet,
    query_contact_sheet,
    render_point_cloud_png,
    run_propagation,
    run_view_entropy,
    view_entropy_point_cloud,
)

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--cycle", type=int, default=None, help="cycle (default: the last cycle with queries)")
    p.add_argument("--format", default="auto", help="dataset format")
    p.add_argument("--size", default=None, help="dataset working size HxW (default: the queries' mask size)")
    p.add_argument("--max-queries", type=int, default=24, help="regions drawn on the contact sheet")
    p.add_argument("--cols", type=int, default=6, help="crops per row")
    p.add_argument("--ply", default=None, metavar="SCENE",
                   help="also write OUT/view_entropy_<SCENE>.ply (+ .png) from the cycle's checkpoint")
    p.add_argument("--stride", type=int, default=2, help="pixel step of the point cloud")
    p.add_argument("--voxel", type=float, default=0.0, help="voxel size (m) to downsample the PLY (0 = none)")
    p.add_argument("--colormap", default="viridis")
    p.add_argument("--mc-passes", type=int, default=None, help="MC-dropout passes (default: the run's)")
    p.add_argument("--kernel-backend", choices=BACKENDS, default=argparse.SUPPRESS,
                   help="kernels' backend of the point cloud (default: the run's; the rest of the run's depth test "
                        "is always its own)")


def _run_size(ledger, al: dict, args) -> tuple[int, int] | None:
    """The dataset size of the run: --size, else the recorded masks' size, else ALConfig.size, else native."""
    if args.size:
        return tuple(parse_size(args.size))
    qs = ledger.queries()
    if qs:
        return tuple(qs[0].mask.shape)
    return tuple(al["size"]) if al.get("size") else None


def run(args: argparse.Namespace) -> int:
    resolve_run_arguments(args)
    layout = RunLayout(Path(args.run))
    lpath = layout.ledger(args.method, args.seed)
    if not lpath.is_file():
        raise FileNotFoundError(f"no ledger {lpath} (ledgers in {layout.ledgers}: {layout.ledger_names() or 'none'})")
    with Ledger(lpath) as led:
        cfg = led.config()
        al = cfg.get("al", {})
        cycle = last_query_cycle(led) if args.cycle is None else int(args.cycle)
        size = _run_size(led, al, args)
        queries = led.queries(cycle) if cycle is not None else []
    data = args.data or cfg.get("dataset")
    if not data:
        raise ValueError(f"{lpath}: no dataset path in the ledger config; pass --data")
    kw = {"height": size[0], "width": size[1]} if size else {}
    dataset = open_dataset(data, format=args.format, **kw)
    if cycle is None:
        cycle = 0
    if queries:
        png = layout.query_sheet(args.method, cycle)
        query_contact_sheet(dataset, queries, png, max_queries=args.max_queries, cols=args.cols,
                            title=f"{args.method}, seed {args.seed}, cycle {cycle}: {len(queries)} regions, "
                                  f"{sum(q.n_pixels for q in queries)} px")
        print(f"contact sheet: {png}")
    else:
        print(f"{lpath}: no queries recorded for cycle {cycle}; no contact sheet")
    if al.get("propagate"):
        _propagation_sheet(args, layout, lpath, al, dataset, cycle)
    if args.ply:
        # the run's own config: cycle 0's seed-set name carries its recipe tags (PAL's head, the aids), and
        # its depth test is the one its view entropy used (only the backend may be changed here)
        run_cfg = ALConfig.from_json({**al, "seed": args.seed})
        ckpt = layout.checkpoint(args.method, run_cfg, cycle)
        depth_test = run_cfg.depth_test
        if getattr(args, "kernel_backend", None):
            depth_test = replace(depth_test, backend=args.kernel_backend)
        model = load_checkpoint(ckpt, num_classes=dataset.num_classes)
        frames = dataset.frames(args.ply)
        mc = args.mc_passes or int(al.get("mc_passes", 8))
        ve, _ = run_view_entropy(model, frames, run_cfg, mc, args.seed, depth_test=depth_test)
        ply = layout.point_cloud(args.ply)
        info = view_entropy_point_cloud(frames, ve, ply, stride=args.stride, colormap=args.colormap,
                                        voxel_size=args.voxel or None)
        img = render_point_cloud_png(info["xyz"], info["values"], ply.with_suffix(".png"), colormap=args.colormap,
                                     vmin=info["vmin"], vmax=info["vmax"],
                                     title=f"view entropy of {args.ply} ({len(frames)} frames, {mc} MC passes) - "
                                           f"{args.method} model after cycle {cycle}")
        print(f"point cloud: {ply} ({info['written']} points; VE {info['vmin']:.3f}-{info['vmax']:.3f} bits)\n"
              f"rendering:   {img}")
    return 0


def _propagation_sheet(args: argparse.Namespace, layout: RunLayout, lpath: Path, al: dict, dataset, cycle: int) -> None:
    """A propagating run's human and propagated labels after ``cycle`` (the frames propagation added most to)."""
    with Ledger(lpath) as led:
        scenes = run_propagation(dataset, led, ALConfig.from_json({**al, "seed": args.seed}), max_cycle=cycle)
    if scenes is None:
        print(f"{lpath}: the dataset does not give the run's pool; no propagation sheet")
        return
    png = layout.propagation_sheet(args.method, cycle)
    info = propagation_sheet(dataset, scenes, png, max_frames=args.cols,
                             title=f"{args.method}, seed {args.seed}: labels after cycle {cycle}")
    if info["frames"]:
        print(f"propagation:   {png} ({info['propagated']} px propagated beside {info['human']} human-labelled px)")
    else:
        print(f"{lpath}: no label propagated after cycle {cycle}; no propagation sheet")
