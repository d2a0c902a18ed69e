"""Make docs/preview.png: generate the default synthetic dataset (if missing) and draw its contact sheet.

    python scripts/make_preview.py [--data data/demo] [--out docs/preview.png] [--frames 6]

Same as ``viewal generate data/demo && viewal preview data/demo -o docs/preview.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from viewal.core.superpixels import SuperpixelCache
from viewal.datasets import open_dataset
from viewal.datasets.preview import draw_contact_sheet, pick_frames
from viewal.datasets.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "data" / "demo")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "preview.png")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args()
    if not (args.data / "viewal.json").is_file():
        generate_dataset(args.data)  # package defaults
    ds = open_dataset(args.data)
    sp = SuperpixelCache(ds.root, "seeds", size=(ds.height, ds.width)).get
    out = draw_contact_sheet(ds, pick_frames(ds, args.frames), args.out, superpixels=sp, dpi=args.dpi,
                             title=f"viewal generate (defaults): {len(ds.scene_ids)} rooms, {len(ds)} frames, "
                                   f"{ds.num_classes} classes - RGB, depth, labels, SEEDS superpixels")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
