"""``viewal preview``: a contact sheet of dataset frames (:func:`viewal.datasets.preview.draw_contact_sheet`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.core.superpixels import SuperpixelCache
from viewal.datasets import open_dataset
from viewal.datasets.preview import draw_contact_sheet, pick_frames

__all__ = ["configure_parser", "run"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset directory")
    p.add_argument("-o", "--out", type=Path, default=Path("preview.png"), help="output PNG")
    p.add_argument("--format", default="auto", help="dataset format")
    p.add_argument("--scene", default=None, help="draw frames of this scene (default: one frame per scene)")
    p.add_argument("--frames", type=int, default=6, help="number of frames (rows)")
    p.add_argument("--superpixels", choices=["seeds", "slic", "none"], default="seeds",
                   help="superpixel method drawn in the last column (cached beside the dataset)")
    p.add_argument("--dpi", type=int, default=100, help="resolution")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="superpixel cache location (default: DATA/.viewal_cache/superpixels)")


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.data, format=args.format)
    frames = pick_frames(ds, args.frames, args.scene)
    sp = None
    if args.superpixels != "none":
        sp = SuperpixelCache(ds.root, args.superpixels, size=(ds.height, ds.width), cache_dir=args.cache_dir).get
    out = draw_contact_sheet(ds, frames, args.out, superpixels=sp, dpi=args.dpi)
    print(f"preview of {len(frames)} frames written to {out}")
    return 0
