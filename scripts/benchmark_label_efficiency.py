#!/usr/bin/env python
"""Label-efficiency benchmark: how many labelled pixels each method needs to reach 95 % of full-data mIoU.

Runs (or resumes) ``viewal experiment`` with several seeds, then reports, per method, the % of the
pool's pixels labelled when the mean test-mIoU curve first reaches 95 % of the full-data mIoU (linear
interpolation between cycles; "not reached" when it does not within the run), per seed and overall,
and writes a Markdown report with the table, the curves and the exact command.

Example (the run committed under docs/)::

    python scripts/benchmark_label_efficiency.py --data data/demo --out runs/bench --seeds 3 \\
        --methods view_entropy,random,entropy --cycles 5 --budget 2 --size 96x128 --iterations 120

Minutes to an hour on 2 CPU cores, depending on sizes; ``--quick`` is a smoke run.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import numpy as np


def finished_rows(out: Path, methods: list[str], seeds: list[int], cycles: int):
    """Result rows of the seeds for which every method finished every cycle (read from the ledgers)."""
    from viewal.ledger import Ledger
    from viewal.report import ResultRow

    rows, done = [], []
    for s in seeds:
        per = {}
        for m in methods:
            path = out / "ledgers" / f"{m}-s{s}.sqlite"
            res = Ledger(path).results() if path.is_file() else []
            per[m] = [r for r in res if r["cycle"] <= cycles]
        if all(len(v) == cycles + 1 for v in per.values()):
            done.append(s)
            rows += [ResultRow(m, s, int(r["cycle"]), float(r["labelled_fraction"]), float(r["miou"]))
                     for m, v in per.items() for r in v]
    if not done:
        raise SystemExit(f"{out}: no seed finished every method and cycle yet")
    return rows, done


#: fit_stats keys reported per training aid: (key, column title, scale)
AID_STATS = {"augment": [("theta_dev", "mean abs(θ − I)", 1.0), ("entropy_warped", "H warped", 1.0),
                         ("entropy_identity", "H identity", 1.0), ("kept", "fine-tuned model kept", None)],
             "pseudo_labels": [("precision", "pseudo-label precision %", 100.0), ("coverage", "pool pixels pseudo-labelled %", 100.0),
                               ("negative_precision", "negative-label precision %", 100.0)]}


def training_aid_table(out: Path, methods: list[str], seeds: list[int], cycles: int) -> list[str]:
    """Markdown rows of what each method's training aid measured per cycle (mean over ``seeds``)."""
    from viewal import experiment
    from viewal.ledger import Ledger

    lines = []
    for m in methods:
        _, overrides = experiment.parse_method(m)
        for aid in overrides:
            cols = AID_STATS.get(aid, [])  # the rotation aid reports nothing of its own
            per_cycle: dict[int, list[dict]] = {}
            for s in seeds:
                path = out / "ledgers" / f"{m}-s{s}.sqlite"
                if not path.is_file():
                    continue
                led = Ledger(path)
                for r in led.results():
                    if r["cycle"] <= cycles:
                        per_cycle.setdefault(int(r["cycle"]), []).append(r.get("fit_stats") or {})
                led.close()
            present = [c for c in cols if any(c[0] in st for sts in per_cycle.values() for st in sts)]
            if not present:
                continue
            lines += ["", f"`{m}` ({aid}):", "", "| cycle | " + " | ".join(c[1] for c in present) + " |",
                      "|---|" + "---|" * len(present)]
            for c in sorted(per_cycle):
                cells = []
                for key, _, scale in present:
                    vals = [st[key] for st in per_cycle[c] if key in st]
                    if scale is None:  # categorical: counts
                        cells.append(", ".join(f"{v}×{vals.count(v)}" for v in sorted(set(map(str, vals)))) or "–")
                    else:
                        x = np.array([float(v) for v in vals], dtype=float)
                        x = x[np.isfinite(x)]
                        cells.append(f"{scale * x.mean():.3g}" + (f" ± {scale * x.std():.2g}" if len(x) > 1 else "")
                                     if len(x) else "–")
                lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from viewal import experiment
    from viewal.datasets import open_dataset
    from viewal.io import write_text
    from viewal.learner import ALConfig
    from viewal.report import aggregate, format_table, fraction_to_reach, plot_curves, write_results

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment.configure_parser(p)
    p.set_defaults(seeds="3", cycles=5, budget=2.0, size="96x128", iterations=120)
    p.add_argument("--target", type=float, default=0.95, help="share of the full-data mIoU to reach")
    p.add_argument("--docs", default=None, help="also copy the report, table and plot into this directory")
    p.add_argument("--name", default="label_efficiency",
                   help="base name of the report files (NAME.md, NAME.png, NAME.csv in OUT and --docs)")
    p.add_argument("--title", default="Label efficiency: ViewAL against baselines", help="report title")
    p.add_argument("--plot-groups", default=None,
                   help="panels of the plot: 'Title A:m1,m2;Title B:m3,m4' (default: one panel, every method)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 1 cycle, few iterations")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: report the seeds that every method finished in OUT's ledgers (an "
                        "interrupted benchmark); rerun without it to complete the run")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.cycles, args.iterations, args.mc_passes = "2", 1, 4, 2
    t0 = time.time()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        experiment.parse_method(m)  # fails early, naming the bad spec
    seeds = experiment.parse_seeds(args.seeds)
    size = experiment._parse_size(args.size)
    dataset = open_dataset(args.data, format=args.format,
                           **({"height": size[0], "width": size[1]} if size else {})).every(args.frame_step)
    base = ALConfig(seed_fraction=args.seed_fraction, mc_passes=args.mc_passes, region=args.region,
                    superpixels=args.superpixels, superpixel_num=args.superpixel_num, dedup=args.dedup,
                    overlap_mode=args.overlap_mode, wrong_label_rate=args.wrong_label_rate, encoder=args.encoder,
                    init=args.init, batch_size=args.batch_size, lr=args.lr, epochs=1, min_iterations=args.iterations,
                    num_threads=args.threads, size=size)
    out = Path(args.out)
    if args.report_only:
        rows, seeds = finished_rows(out, methods, seeds, args.cycles)
        full = experiment.full_data_miou(dataset, base, out)["miou"]
    else:
        rows, full = experiment.run_experiment(dataset, methods, seeds, args.cycles, args.budget, out, base,
                                               full_data=True)
    write_results(out / "results.csv", rows)
    groups = None
    if args.plot_groups:
        groups = [(t.strip(), [m.strip() for m in ms.split(",") if m.strip()])
                  for t, _, ms in (g.partition(":") for g in args.plot_groups.split(";") if g.strip())]
    plot_curves(rows, out / "curves.png", full_miou=full, target_share=args.target, groups=groups,
                title=f"{dataset.root.name}: {len(seeds)} seeds, {args.budget}% of pixels per cycle")
    target = args.target * full
    agg = aggregate(rows)
    lines = [f"| method | % pixels to reach {100 * args.target:.0f}% of full-data mIoU (mean curve) | per seed | "
             f"final mIoU (mean ± std) |", "|---|---|---|---|"]
    for m in sorted(agg):
        a = agg[m]
        f = fraction_to_reach(a["fraction"], a["miou"], target)
        per_seed = []
        for s in seeds:
            rs = sorted((r for r in rows if r.method == m and r.seed == s), key=lambda r: r.cycle)
            fs = fraction_to_reach([r.labelled_fraction for r in rs], [r.miou for r in rs], target)
            per_seed.append("–" if np.isnan(fs) else f"{100 * fs:.1f}")
        lines.append(f"| {m} | {'not reached' if np.isnan(f) else format(100 * f, '.1f')} | {', '.join(per_seed)} | "
                     f"{100 * a['miou'][-1]:.1f} ± {100 * a['miou_std'][-1]:.1f} |")
    aids = training_aid_table(out, methods, seeds, args.cycles)
    cmd = "python scripts/benchmark_label_efficiency.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = "\n".join([
        f"# {args.title}", "",
        f"Command: `{cmd}`", "",
        f"Dataset: `{dataset.root}` ({dataset.format}), {len(dataset.split('train'))} pool frames at "
        f"{dataset.width}×{dataset.height}, {dataset.num_classes} classes; seeds {seeds}; {args.cycles} cycles of "
        f"{args.budget}% of the pool's pixels after a seed set of {100 * args.seed_fraction:.1f}% of the frames; "
        f"{args.iterations} SGD steps per training, encoder {args.encoder}, {args.mc_passes} MC passes"
        + (f"; oracle wrong-label rate {100 * args.wrong_label_rate:.0f}% of regions" if args.wrong_label_rate else "")
        + ".", "",
        f"Full-data mIoU (same recipe, all train labels): **{100 * full:.1f}**; target "
        f"{100 * args.target:.0f}% of it = {100 * target:.1f}.", "",
        *lines, "",
        "Per cycle (mIoU % mean ± std @ % of pixels labelled):", "", "```", format_table(rows, full, args.target), "```",
        *(["", "What the training aids measured (mean over seeds per cycle; from each cycle's `fit_stats` in the "
            "ledgers):", *aids] if aids else []),
        "", f"![curves]({args.name}.png)", "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"wall time {time.time() - t0:.0f} s.", ""])
    write_text(out / f"{args.name}.md", report)
    print(report)
    if args.docs:
        d = Path(args.docs)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "curves.png", d / f"{args.name}.png")
        shutil.copyfile(out / "results.csv", d / f"{args.name}.csv")
        write_text(d / f"{args.name}.md", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
