"""Did the demo's models learn? One line per method and cycle from the run's ledgers (labelled pixels, frames
touched, SGD steps of the fit, what 3D label propagation added per human-labelled pixel, test mIoU), then a
check: at the last cycle every method's test mIoU is at
least ``--margin`` points above its seed-set model's and at least ``--times`` times chance, where chance is
the test mIoU of the best constant prediction (every pixel the test split's most frequent class: that class
scores its pixel share, every other class present 0).

    python scripts/demo_check.py [--run runs/demo] [--margin 3] [--times 3]

Exit status 1 when a method fails the check.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def constant_miou(ledger) -> float:
    """Test mIoU (0..1) of predicting the most frequent test class everywhere, on the run's test frames."""
    import numpy as np

    from viewal.datasets import open_dataset
    from viewal.nn.train import confusion_matrix, iou_from_confusion

    cfg = ledger.config()
    h, w = cfg["al"]["size"]
    step = int((ledger.meta("experiment") or {}).get("frame_step", 1))
    ds = open_dataset(cfg["dataset"], height=h, width=w).every(step)
    labels = np.stack([f.labels for f in ds.split("test")])
    counts = np.bincount(labels[labels != 255], minlength=ds.num_classes)
    return iou_from_confusion(confusion_matrix(np.full_like(labels, counts.argmax()), labels, ds.num_classes))[0]


def main(argv: list[str] | None = None) -> int:
    from viewal.runs.layout import RunLayout
    from viewal.runs.ledger import Ledger

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--margin", type=float, default=3.0, help="mIoU points above the seed-set model")
    ap.add_argument("--times", type=float, default=3.0, help="multiple of chance (the best constant prediction)")
    args = ap.parse_args(argv)
    names = RunLayout(args.run).ledger_names()
    if not names:
        print(f"demo_check: no ledgers in {RunLayout(args.run).ledgers}", file=sys.stderr)
        return 1
    failed = []
    print(f"{'method':<14}{'cycle':>6}{'labelled':>10}{'frames':>8}{'steps':>7}{'propagated':>12}{'test mIoU':>11}")
    for name in names:
        with Ledger(RunLayout(args.run).ledgers / name) as led:
            results = led.results()
            chance = 100 * constant_miou(led)
        method = name.rsplit("-s", 1)[0]
        if not results:
            failed.append(f"{method}: no cycle finished")
            continue
        for r in results:
            mult = r.get("propagation_multiplier")
            prop = "off" if mult is None else f"{mult:.2f}x"
            print(f"{method:<14}{r['cycle']:>6}{100 * r['labelled_fraction']:>9.1f}%{r.get('frames', -1):>8}"
                  f"{r.get('steps', -1):>7}{prop:>12}{100 * r['miou']:>11.1f}")
        seed, last = 100 * results[0]["miou"], 100 * results[-1]["miou"]
        if len(results) < 2 or last < seed + args.margin or last < args.times * chance:
            failed.append(f"{method}: {seed:.1f} -> {last:.1f}")
    print(f"chance (every test pixel the most frequent class): {chance:.1f} mIoU; check: the last cycle >= the "
          f"seed-set model + {args.margin:g} points and >= {args.times:g} x chance")
    if failed:
        print("the models did NOT visibly learn: " + "; ".join(failed))
        return 1
    print("the models learn: every method's last cycle passes the check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
