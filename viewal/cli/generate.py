"""``viewal generate``: the synthetic multi-view RGB-D scene dataset
(:func:`viewal.datasets.synthetic.generate_dataset`)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from viewal.datasets.synthetic import (
    CLASS_NAMES,
    DEFAULT_FRAMES,
    DEFAULT_HEIGHT,
    DEFAULT_SCENES,
    DEFAULT_WIDTH,
    generate_dataset,
)

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output directory (canonical layout; created if missing)")
    p.add_argument("--scenes", type=int, default=DEFAULT_SCENES, help="number of rooms (split 70/15/15 %% by scene)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="views per room")
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="image height in pixels")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="image width in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> byte-identical files)")
    p.add_argument(
        "--depth-noise",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Kinect-like depth noise with disparity quantisation",
    )
    p.add_argument(
        "--holes",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="depth holes: random blobs and grazing-angle dropouts set to 0",
    )
    p.add_argument("--shadows", action=argparse.BooleanOptionalAction, default=True, help="cast shadows")
    p.add_argument("--png", action="store_true", help="write colour as lossless PNG instead of JPEG (quality 95)")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = generate_dataset(
        args.out,
        scenes=args.scenes,
        frames=args.frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
        depth_noise=args.depth_noise,
        holes=args.holes,
        shadows=args.shadows,
        color_ext=".png" if args.png else ".jpg",
    )
    print(
        f"wrote {args.scenes} scenes x {args.frames} frames ({args.width}x{args.height}) to {out} "
        f"in {time.perf_counter() - t0:.1f} s; classes: {', '.join(CLASS_NAMES)}"
    )
    return 0
