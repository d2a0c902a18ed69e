"""``viewal report``: one self-contained HTML page of a run's cycles
(:func:`viewal.runs.cycle_report.write_cycle_report`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.cli.options import add_run_arguments, resolve_run_arguments
from viewal.runs.cycle_report import write_cycle_report

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="HTML file (default OUT/report.html)")
    p.add_argument("--max-frames", type=int, default=4, help="queried frames with heat-maps per cycle")
    p.add_argument("--stride", type=int, default=4, help="pixel step of the point cloud")
    p.add_argument("--mc-passes", type=int, default=None, help="MC-dropout passes (default: the run's)")


def run(args: argparse.Namespace) -> int:
    resolve_run_arguments(args)
    path = write_cycle_report(args.run, args.method, args.seed, out=args.out, data=args.data,
                              max_frames=args.max_frames, stride=args.stride, mc_passes=args.mc_passes)
    print(f"report: {path}")
    return 0
