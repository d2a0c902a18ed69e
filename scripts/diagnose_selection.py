"""What each method picked, seen by the model that picked it (viewal.runs.diagnostics; docs/label_efficiency.md).

For every method × seed × cycle of a ``viewal experiment`` / benchmark folder: the picking model's error rate
on the pixels it had labelled against the unlabelled pool (error enrichment), the share of picked pixels in
its weak classes, the picked labels' class diversity, regions, frames, and the cycle's test-mIoU gain.
Uses the run's own checkpoints; trains nothing. Prints a Markdown table; ``--json`` keeps the rows.
``--classes`` instead prints, per cycle, what each method had labelled by then, class by class (share of its
labelled pixels, against the pool's share) next to its test IoU per class (mean over seeds; no model runs).

    NUMBA_THREADING_LAYER=omp python scripts/diagnose_selection.py --run runs/le_grow \\
        --methods view_entropy,random,entropy --seeds 0,1 --cycles 1,2 --json docs/selection_diagnostics.json
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")


def render(rows: list[dict]) -> str:
    cols = [("method", "{}"), ("seed", "{}"), ("cycle", "{}"), ("regions", "{}"), ("frames", "{}"),
            ("error_picked", "{:.3f}"), ("error_pool", "{:.3f}"), ("error_enrichment", "{:.2f}"),
            ("weak_share_picked", "{:.2f}"), ("weak_share_pool", "{:.2f}"), ("classes_picked", "{:.1f}"),
            ("classes_pool", "{:.1f}"), ("miou_before", "{:.3f}"), ("gain", "{:+.3f}")]
    if rows and "error_picked_after" in rows[0]:
        cols += [("error_picked_after", "{:.3f}"), ("error_pool_after", "{:.3f}")]
    out = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(f.format(r[c]) for c, f in cols) + " |" for r in rows]
    return "\n".join(out)


def render_classes(bal: dict, methods: list[str]) -> str:
    """Markdown table of :func:`viewal.runs.diagnostics.class_balance`: per class, the pool's share of pixels, then
    per method its share of the labelled pixels and its test IoU (percent)."""
    head = ["class", "pool %"] + [f"{m} {k}" for m in methods for k in ("labelled %", "IoU")]
    out = [f"cycle {bal['cycle']}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, name in enumerate(bal["classes"]):
        cells = [name, f"{100 * bal['pool'][i]:.1f}"]
        cells += [f"{100 * bal[m][k][i]:.1f}" for m in methods for k in ("share", "iou")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="experiment folder (holds ledgers/ and models/)")
    ap.add_argument("--data", default=None, help="dataset folder (default: the one stored in the ledger)")
    ap.add_argument("--methods", required=True, help="comma-separated method specs, as in the run")
    ap.add_argument("--seeds", default="0,", help="seeds: N (0..N-1) or a comma-separated list (default: seed 0)")
    ap.add_argument("--cycles", default="1",
                    help="comma-separated cycles whose picks to examine (>= 1; >= 0 with --classes)")
    ap.add_argument("--learnability", action="store_true",
                    help="also each cycle's own model on its picks (error_picked_after: were they learnt?)")
    ap.add_argument("--classes", action="store_true",
                    help="instead: per class, what each method had labelled by each cycle and its test IoU")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the rows here (atomically)")
    args = ap.parse_args(argv)

    import torch

    from viewal.core.io import write_json
    from viewal.runs.diagnostics import class_balance, diagnose_run, open_run_dataset
    from viewal.runs.experiment import parse_methods, parse_seeds

    torch.set_num_threads(args.threads)
    try:
        methods, seeds = parse_methods(args.methods), parse_seeds(args.seeds)
    except ValueError as e:
        ap.error(str(e))
    try:
        cycles = [int(c) for c in args.cycles.split(",") if c.strip()]
    except ValueError:
        ap.error(f"--cycles: comma-separated integers expected, got {args.cycles!r}")
    lowest = 0 if args.classes else 1  # the picks of cycle 0 (the seed set) were not chosen by a model
    if not cycles or min(cycles) < lowest:
        ap.error(f"--cycles: cycles >= {lowest} expected, got {args.cycles!r}")
    try:
        dataset = open_run_dataset(args.run, methods[0], seeds[0], args.data)
        if args.classes:
            rows = [class_balance(args.run, dataset, methods, seeds, c) for c in cycles]
        else:
            rows = diagnose_run(args.run, dataset, methods, seeds, cycles, learnability=args.learnability)
    except (FileNotFoundError, ValueError) as e:
        print(f"diagnose_selection: {e}", file=sys.stderr)
        return 2
    print("\n\n".join(render_classes(b, methods) for b in rows) if args.classes else render(rows))
    if args.json:
        write_json(args.json, {"command": " ".join(["diagnose_selection.py"] + (argv or sys.argv[1:])), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
