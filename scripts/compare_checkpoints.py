"""Class by class, what several checkpoints predict on one split: test IoU and the share of pixels given to
each class, against the truth's share (viewal.runs.diagnostics.compare_models). It shows what a training aid or
a longer fit gained and lost, e.g. the seed-set fit of a run against the same fit after UPS's fine-tuning:

    NUMBA_THREADING_LAYER=omp python scripts/compare_checkpoints.py --run runs/le_warm --method random+ups \\
        runs/le_warm/models/seedset-s0.pt runs/le_warm/models/seedset-s0-ups.pt --names fit,fit+ups

The dataset is opened as the run opened it (``--run`` + ``--method``: path, working size and frame step
read from that method's seed-0 ledger), or given with ``--data`` (and ``--size HxW``, ``--frame-step``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")


def render(cmp: dict, names: list[str], classes: list[str]) -> str:
    head = ["class", "truth %"] + [f"{n} {k}" for n in names for k in ("predicted %", "IoU")]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, c in enumerate(classes):
        cells = [c, f"{100 * cmp['truth'][i]:.1f}"]
        for n in names:
            iou = cmp[n]["iou"][i]
            cells += [f"{100 * cmp[n]['predicted'][i]:.1f}", "–" if iou != iou else f"{100 * iou:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("| **mIoU** | | " + " | ".join(f"| **{100 * cmp[n]['miou']:.1f}**" for n in names) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="checkpoint files (viewal.nn.train.save_checkpoint)")
    ap.add_argument("--names", help="comma-separated column names (default: the files' names)")
    ap.add_argument("--run", help="a viewal experiment / benchmark folder: open the data as its --method did")
    ap.add_argument("--method", default="random", help="with --run: whose seed-0 ledger names the data")
    ap.add_argument("--data", help="dataset folder (overrides the run's; needed without --run)")
    ap.add_argument("--size", help="working size HxW (with --data alone)")
    ap.add_argument("--frame-step", type=int, default=1, help="with --data alone: keep every k-th frame")
    ap.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)

    names = args.names.split(",") if args.names else [Path(c).stem for c in args.checkpoints]
    if len(names) != len(args.checkpoints):
        ap.error(f"--names gives {len(names)} names for {len(args.checkpoints)} checkpoints")
    if len(set(names)) != len(names):
        ap.error("--names: two checkpoints have the same name")
    missing = [c for c in args.checkpoints if not Path(c).is_file()]
    if missing:
        ap.error(f"no such checkpoint: {', '.join(missing)}")
    if not args.run and not args.data:
        ap.error("give --run (open the data as that run did) or --data")

    import torch

    from viewal.datasets import open_dataset
    from viewal.nn.train import load_checkpoint
    from viewal.runs.diagnostics import compare_models, open_run_dataset
    from viewal.runs.experiment import parse_size_arg

    try:  # bad data, run folder or checkpoint: a usage error naming it, before any evaluation
        if args.run:
            ds = open_run_dataset(args.run, args.method, 0, data=args.data)
        else:
            size = parse_size_arg(args.size) if args.size else None
            ds = open_dataset(args.data, **({"height": size[0], "width": size[1]} if size else {}))
            ds = ds.every(args.frame_step)
        if args.split not in ds.splits:
            ap.error(f"--split {args.split!r}: the dataset has {', '.join(ds.splits)}")
        models = {}
        for n, c in zip(names, args.checkpoints):
            torch.manual_seed(0)
            models[n] = load_checkpoint(c, num_classes=ds.num_classes)
    except (OSError, ValueError) as e:  # CheckpointError is a ValueError
        ap.error(str(e))
    frames = ds.split(args.split)
    cmp = compare_models(models, frames, ds.num_classes, batch_size=args.batch)
    classes = list(getattr(ds, "class_names", None) or [str(i) for i in range(ds.num_classes)])
    print(f"{len(frames)} {args.split} frames of {ds.root}")
    print(render(cmp, names, classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
