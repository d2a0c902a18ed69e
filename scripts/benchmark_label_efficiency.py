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

from viewal.runs.layout import RunLayout  # noqa: E402


def finished_rows(out: Path, methods: list[str], seeds: list[int], cycles: int):
    """Result rows of every method × seed that finished every cycle (read from the ledgers), and the seeds any
    method finished. A method reports the seeds it finished (the report names how many), so a method still
    missing a seed does not drop that seed from the others; a method with none is an error, naming it."""
    from viewal.runs import experiment
    from viewal.runs.ledger import Ledger

    rows, done, missing = [], set(), []
    for m in methods:
        n = 0
        for s in seeds:
            path = RunLayout(out).ledger(m, s)
            if not path.is_file():
                continue
            with Ledger(path) as led:
                res = [r for r in led.results() if r["cycle"] <= cycles]
            if len(res) == cycles + 1:
                rows += [experiment.result_row(m, s, r) for r in res]
                done.add(s)
                n += 1
        if not n:
            missing.append(m)
    if missing:
        raise SystemExit(f"{out}: no seed of {', '.join(missing)} finished every cycle (of {cycles}) yet")
    return rows, sorted(done)


#: fit_stats keys reported per training aid: (key, column title, scale)
AID_STATS = {"augment": [("theta_dev", "mean abs(θ − I)", 1.0), ("entropy_warped", "H warped", 1.0),
                         ("entropy_identity", "H identity", 1.0), ("kept", "fine-tuned model kept", None)],
             "pseudo_labels": [("precision", "pseudo-label precision %", 100.0),
                               ("coverage", "pool pixels pseudo-labelled %", 100.0),
                               ("negative_precision", "negative-label precision %", 100.0),
                               ("pseudo_kept", "model kept", None)]}


def cycle_metric_table(out: Path, methods: list[str], seeds: list[int], cycles: int, key: str, scale: float = 1.0,
                       fmt: str = ".1f", only=None) -> list[str]:
    """Markdown rows of one recorded cycle metric (``key`` of each cycle's results, e.g. ``steps`` or
    ``propagation_multiplier``) per method and cycle, mean ± std over ``seeds``; methods where ``only(method)`` is
    False, or that never recorded it, are left out."""
    from viewal.runs.ledger import Ledger

    rows = []
    for m in methods:
        if only is not None and not only(m):
            continue
        per_cycle: dict[int, list[float]] = {}
        for s in seeds:
            path = RunLayout(out).ledger(m, s)
            if not path.is_file():
                continue
            with Ledger(path) as led:
                for r in led.results():
                    if r["cycle"] <= cycles and r.get(key) is not None:
                        per_cycle.setdefault(int(r["cycle"]), []).append(float(r[key]) * scale)
        if not per_cycle:
            continue
        cells = []
        for c in range(cycles + 1):
            v = per_cycle.get(c, [])
            cells.append("–" if not v else format(np.mean(v), fmt) + (f" ± {np.std(v, ddof=1):{fmt}}" if len(v) > 1
                                                                       else ""))
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["| method | " + " | ".join(f"cycle {c}" for c in range(cycles + 1)) + " |",
            "|---|" + "---|" * (cycles + 1), *rows]


def training_aid_table(out: Path, methods: list[str], seeds: list[int], cycles: int) -> list[str]:
    """Markdown rows of what each method's training aid measured per cycle (mean over ``seeds``)."""
    from viewal.runs import experiment
    from viewal.runs.ledger import Ledger

    lines = []
    for m in methods:
        _, overrides = experiment.parse_method(m)
        for aid in overrides:
            cols = AID_STATS.get(aid, [])  # the rotation aid reports nothing of its own
            per_cycle: dict[int, list[dict]] = {}
            for s in seeds:
                path = RunLayout(out).ledger(m, s)
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


def noise_floor(dataset, base, out: Path, method: str, seed: int, cycles: int,
                train_seeds: tuple[int, ...] = (100, 101)) -> dict:
    """Same labels, other training seeds: test mIoU of ``method``'s seed-``seed`` labels retrained with
    ``train_seeds`` (``experiment.retrain_mious``), next to the run's own model. A cold run retrains the
    seed set (cycle 0) and the last cycle; a ``--warm-start`` run retrains its whole chain, so every cycle
    gets a floor. Cached in ``OUT/noise_floor.json`` after each train seed (a killed run resumes there).
    Returns ``{"cycles": {cycle: [run, *retrains]}, "cycle0", "last", "std": pooled std (ddof 1) over the
    cycles}``."""
    import json

    from viewal.core.io import write_json
    from viewal.runs import experiment
    from viewal.runs.ledger import Ledger

    path = out / "noise_floor.json"
    key = f"{method}-s{seed}"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    if "std" in cache.get(key, {}):
        return cache[key]
    ledger = RunLayout(out).ledger(method, seed)
    with Ledger(ledger) as led:
        res = {int(r["cycle"]): float(r["miou"]) for r in led.results()}
    if cycles not in res:
        raise SystemExit(f"{ledger}: cycle {cycles} not finished; cannot measure the noise floor")
    cfg = experiment.method_config(base, method, seed)
    measured = list(range(cycles + 1)) if cfg.warm_start else [0, cycles]
    rec = cache.get(key) or {"method": method, "seed": seed, "train_seeds": [seed, *train_seeds],
                             "cycles": {str(c): [res[c]] for c in measured}}
    for i, t in enumerate(train_seeds):
        if len(rec["cycles"][str(measured[0])]) > i + 1:
            continue  # this train seed is in the cache already
        got = experiment.retrain_mious(dataset, cfg, ledger, t, measured)
        for c in measured:
            rec["cycles"][str(c)].append(got[c])
        cache[key] = rec
        write_json(path, cache)
        print(f"noise floor {key} train seed {t}: " + ", ".join(f"c{c} {100 * got[c]:.1f}" for c in measured),
              flush=True)
    rec["cycle0"], rec["last"] = rec["cycles"]["0"], rec["cycles"][str(cycles)]
    rec["std"] = float(np.sqrt(np.mean([np.var(v, ddof=1) for v in rec["cycles"].values()])))
    cache[key] = rec
    write_json(path, cache)
    return rec


def retrain_ablation(dataset, base, out: Path, methods: list[str], seed: int, cycles: list[int], name: str,
                     column: str, changes: dict) -> dict:
    """The same labels (each method's seed-``seed`` ledger as it stood at each of ``cycles``) retrained with the
    run's training seed and the method's recipe changed by ``changes`` (ALConfig fields). Cached in
    ``OUT/NAME.json``. Returns ``{"method-sS-cC": {"run": the run's mIoU, column: the retrained mIoU}}``."""
    import json
    from dataclasses import replace

    from viewal.core.io import write_json
    from viewal.runs import experiment
    from viewal.runs.ledger import Ledger

    path = out / f"{name}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    for m in methods:
        ledger = RunLayout(out).ledger(m, seed)
        with Ledger(ledger) as led:
            res = {int(r["cycle"]): float(r["miou"]) for r in led.results()}
        cfg = replace(experiment.method_config(base, m, seed), **changes)
        for c in cycles:
            key = f"{m}-s{seed}-c{c}"
            if column in cache.get(key, {}):
                continue
            rec = cache.setdefault(key, {"run": res[c], "run_sampling": base.sampling})
            rec[column] = experiment.retrain_miou(dataset, cfg, ledger, seed, cycle=c)
            write_json(path, cache)
            print(f"{name} {key}: the run {100 * rec['run']:.1f}, {column} {100 * rec[column]:.1f}", flush=True)
    return cache


def sampling_ablation(dataset, base, out: Path, methods: list[str], seed: int, cycles: list[int],
                      other: str) -> dict:
    """:func:`retrain_ablation` with ``--sampling other``: does the way a fit spends its steps on the labels
    change the ranking? Cached in ``OUT/sampling_ablation.json``; the column is ``other``."""
    return retrain_ablation(dataset, base, out, methods, seed, cycles, "sampling_ablation", other, {"sampling": other})


def long_fit(dataset, base, out: Path, methods: list[str], seed: int, cycle: int, steps: int) -> dict:
    """:func:`retrain_ablation` as one cold fit (from ``init``, no warm start) of at least ``steps`` SGD steps,
    as the full-data reference is trained (:func:`reference_config`): is a run's last model limited by its labels
    or by its fits? Cached in ``OUT/long_fit.json``; the column is ``steps<N>``."""
    longer = reference_config(base, int(steps))
    return retrain_ablation(dataset, base, out, methods, seed, [cycle], "long_fit", f"steps{steps}",
                            {"warm_start": False, "steps": longer.steps, "min_iterations": longer.min_iterations})


def labels_per_sample(out: Path, methods: list[str], seeds: list[int], cycles: int, sampling: str) -> list[str]:
    """Markdown table: the labelled pixels one training sample carries on average, per method and cycle.

    With ``labels`` sampling a frame with w labelled pixels is drawn with probability w / Σw, so a sample
    carries Σw² / Σw labelled pixels on average; with ``uniform`` sampling, Σw / n. Read from the ledgers'
    labels (each has its cycle and pixel count; labels of a frame do not overlap)."""
    from collections import defaultdict

    from viewal.runs.ledger import Ledger

    rows = ["| method | " + " | ".join(f"cycle {c}" for c in range(cycles + 1)) + " |",
            "|---|" + "---|" * (cycles + 1)]
    for m in methods:
        per_cycle = defaultdict(list)
        for s in seeds:
            path = RunLayout(out).ledger(m, s)
            if not path.is_file():
                continue
            with Ledger(path) as led:
                labels = led.labels()
            for c in range(cycles + 1):
                w = defaultdict(int)
                for r in labels:
                    if r["cycle"] <= c:
                        w[(r["scene_id"], r["frame_id"])] += int(r["n_pixels"])
                v = np.array(list(w.values()), float)
                if len(v):
                    per_cycle[c].append((v ** 2).sum() / v.sum() if sampling == "labels" else v.mean())
        rows.append(f"| {m} | " + " | ".join(f"{np.mean(per_cycle[c]):.0f}" if per_cycle[c] else "–"
                                           for c in range(cycles + 1)) + " |")
    return rows


def reference_config(base, steps: int | None):
    """The ALConfig of the full-data reference: ``base``, or with ``steps`` at least that many SGD steps (fixed
    ``steps`` raised to it, else ``min_iterations``). ``base`` itself when nothing changes."""
    from dataclasses import replace

    if steps is None:
        return base
    if steps < 1:
        raise SystemExit(f"--full-data-steps must be >= 1, got {steps}")
    if base.steps is not None:
        return base if base.steps >= steps else replace(base, steps=steps)
    return base if base.min_iterations >= steps else replace(base, min_iterations=steps)


def build_parser() -> argparse.ArgumentParser:
    """The script's arguments: ``viewal experiment``'s, and the report's."""
    from viewal.cli import experiment as experiment_cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment_cli.configure_parser(p)
    p.set_defaults(seeds="3", cycles=5, budget="2", size="96x128")
    p.add_argument("--target", type=float, default=0.95, help="share of the full-data mIoU to reach")
    p.add_argument("--docs", default=None, help="also copy the report, table and plot into this directory")
    p.add_argument("--name", default="label_efficiency",
                   help="base name of the report files (NAME.md, NAME.png, NAME.csv in OUT and --docs)")
    p.add_argument("--title", default="Label efficiency: ViewAL against baselines", help="report title")
    p.add_argument("--plot-groups", default=None,
                   help="panels of the plot: 'Title A:m1,m2;Title B:m3,m4' (default: one panel, every method)")
    p.add_argument("--generate", default=None, metavar="SCENESxFRAMES",
                   help="generate the synthetic benchmark set at --data first when it is missing (seed 0, at the "
                        "--size resolution), e.g. 200x8: 200 rooms of 8 views, split 70/15/15 by room")
    p.add_argument("--noise-floor", default="random", metavar="METHOD",
                   help="measure the noise floor: retrain METHOD's first seed's labels (seed set and last cycle; "
                        "every cycle of a --warm-start chain) "
                        "with 2 other training seeds; '' to skip")
    p.add_argument("--notes", default=None,
                   help="a Markdown file of hand-written reading appended to the report (kept beside the data)")
    p.add_argument("--sampling-ablation", default="", metavar="MODE:METHODS:CYCLES",
                   help="retrain these methods' seed-0 labels as they stood at these cycles with --sampling MODE, "
                        "e.g. crops:random,view_entropy:2,4 ('' to skip)")
    p.add_argument("--long-fit", default="", metavar="STEPS:CYCLE:METHODS",
                   help="retrain these methods' first-seed labels at CYCLE as one cold fit of at least STEPS SGD "
                        "steps (as the full-data reference), e.g. 1000:3:random,random:propagate=false ('' to skip)")
    p.add_argument("--full-data-steps", type=int, default=None, metavar="N",
                   help="train the full-data reference for at least N SGD steps instead of the run's recipe alone "
                        "(e.g. as many as a --warm-start run's last model had over all its cycles)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 1 cycle, few iterations")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: report, per method, the seeds it finished in OUT's ledgers (an "
                        "interrupted benchmark); rerun without it to complete the run")
    return p


def main(argv: list[str] | None = None) -> int:
    from viewal.cli import experiment as experiment_cli
    from viewal.core.io import write_text
    from viewal.runs import experiment
    from viewal.runs.curves import aggregate, format_table, fraction_to_reach, plot_curves, write_results

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cycles, args.iterations, args.mc_passes = "2", 1, 4, 2
    t0 = time.time()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:  # fail early, as a usage error naming the bad spec
        for m in methods:
            experiment.parse_method(m)
        seeds = experiment.parse_seeds(args.seeds)
        budgets = experiment.parse_budgets(args.budget)
    except ValueError as e:
        parser.error(str(e))
    if args.generate and not (Path(args.data) / "viewal.json").is_file():
        from viewal.datasets.synthetic import generate_dataset

        scenes, frames = (int(v) for v in args.generate.lower().split("x"))
        h, w = experiment.parse_size_arg(args.size) or (240, 320)
        generate_dataset(Path(args.data), scenes=scenes, frames=frames, height=h, width=w, seed=0)
    dataset = experiment_cli.open_from_args(args)
    base = experiment_cli.config_from_args(args)
    out = Path(args.out)
    ref_base = reference_config(base, args.full_data_steps)
    if args.report_only:
        rows, seeds = finished_rows(out, methods, seeds, args.cycles)
        full = experiment.full_data_miou(dataset, ref_base, out)["miou"]
    else:
        # --no-full-data (a per-seed run of a queue): the cycles only, never a reference fit; the report needs
        # the reference, so it is made by a later run without the flag (or --report-only), unless OUT already
        # holds one of this recipe
        cached = experiment.full_data_miou(dataset, ref_base, out, cached_only=True) if args.no_full_data else None
        skip = args.no_full_data and cached is None
        rows, full = experiment.run_experiment(dataset, methods, seeds, args.cycles, budgets, out, base,
                                               full_data=not args.no_full_data and ref_base is base,
                                               frame_step=args.frame_step)
        if cached is not None:
            full = cached["miou"]
        elif not skip and ref_base is not base:
            full = experiment.full_data_miou(dataset, ref_base, out)["miou"]
        if skip:
            write_results(RunLayout(out).results, rows)
            print(f"--no-full-data: {len(rows)} result rows in {RunLayout(out).results}; no report (it needs the "
                  f"full-data reference: rerun without --no-full-data, or with --report-only)")
            return 0
    write_results(RunLayout(out).results, rows)
    floor = noise_floor(dataset, base, out, args.noise_floor, seeds[0], args.cycles) if args.noise_floor else None
    ablation, abl_mode = {}, None
    if args.sampling_ablation:
        abl_mode, abl_methods, abl_cycles = args.sampling_ablation.split(":")
        ablation = sampling_ablation(dataset, base, out, [m.strip() for m in abl_methods.split(",") if m.strip()],
                                     seeds[0], [int(c) for c in abl_cycles.split(",")], abl_mode)
    longs, long_steps, long_cycle = {}, None, None
    if args.long_fit:
        long_steps, long_cycle, long_methods = args.long_fit.split(":", 2)
        long_steps, long_cycle = int(long_steps), int(long_cycle)
        longs = long_fit(dataset, base, out, [m.strip() for m in long_methods.split(",") if m.strip()], seeds[0],
                         long_cycle, long_steps)
    groups = None
    if args.plot_groups:
        groups = [(t.strip(), [m.strip() for m in ms.split(",") if m.strip()])
                  for t, _, ms in (g.partition(":") for g in args.plot_groups.split(";") if g.strip())]
    plot_curves(rows, RunLayout(out).curves, full_miou=full, target_share=args.target, groups=groups,
                noise_floor=floor["std"] if floor else None,
                title=f"{dataset.root.name}: {len(seeds)} seeds, {args.budget}% of pixels per cycle")
    plot_curves(rows, out / "costs.png", full_miou=full, target_share=args.target, cost=["pixels", "regions", "frames"],
                title="annotation cost: labelled pixels, regions asked, frames touched")
    target = args.target * full
    agg = aggregate(rows)
    lines = [f"| method | seeds | % pixels to reach {100 * args.target:.0f}% of full-data mIoU (mean curve) | "
             f"per seed | regions asked to reach it | frames touched to reach it | final mIoU (mean ± std) |",
             "|---|---|---|---|---|---|---|"]
    for m in sorted(agg):
        a = agg[m]
        f = fraction_to_reach(a["fraction"], a["miou"], target)
        per_seed = []
        for s in seeds:
            rs = sorted((r for r in rows if r.method == m and r.seed == s), key=lambda r: r.cycle)
            if not rs:
                per_seed.append("not run")
                continue
            fs = fraction_to_reach([r.labelled_fraction for r in rs], [r.miou for r in rs], target)
            per_seed.append("–" if np.isnan(fs) else f"{100 * fs:.1f}")
        fr = fraction_to_reach(a["regions"], a["miou"], target)
        ff = fraction_to_reach(a["frames"], a["miou"], target)
        na = lambda v, fmt: "not reached" if np.isnan(v) else format(v, fmt)  # noqa: E731
        lines.append(f"| {m} | {int(a['n'][-1])} | {na(100 * f, '.1f')} | {', '.join(per_seed)} | "
                     f"{na(fr, '.0f')} | {na(ff, '.0f')} | "
                     f"{100 * a['miou'][-1]:.1f} ± {100 * a['miou_std'][-1]:.1f} |")
    floor_lines = []
    if floor:
        per_cycle = floor.get("cycles") or {"0": floor["cycle0"], str(args.cycles): floor["last"]}
        floor_lines = ["", "**Noise floor** (same labels, other training seeds): "
                       f"`{floor['method']}` seed {floor['seed']} "
                       f"retrained with train seeds {floor['train_seeds']}"
                       + (" (the whole warm-started chain)" if len(per_cycle) > 2 else "") + ": "
                       + "; ".join(f"{'seed set' if c == '0' else f'cycle {c}'} "
                                   + ", ".join(f"{100 * v:.1f}" for v in vals)
                                   + f" (std {100 * np.std(vals, ddof=1):.1f})" for c, vals in per_cycle.items())
                       + f" → pooled std **{100 * floor['std']:.1f}** mIoU points. A gap between two methods' mean "
                       f"curves is only worth reading when it exceeds about twice this."]
    aids = training_aid_table(out, methods, seeds, args.cycles)
    cmd = "python scripts/benchmark_label_efficiency.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    dens = labels_per_sample(out, methods, seeds, args.cycles, base.sampling)
    floor_lines += ["", f"Labelled pixels one training sample carries on average (`--sampling {base.sampling}`; a "
                    f"whole frame has {dataset.height * dataset.width}):", "", *dens]
    steps = cycle_metric_table(out, methods, seeds, args.cycles, "steps", fmt=".0f")
    if steps:
        floor_lines += ["", "SGD steps of each cycle's fit (mean ± std over seeds; the compute a method got):", "",
                        *steps]
    propagates = lambda m: bool(experiment.method_config(base, m, 0).propagate)  # noqa: E731
    mult = cycle_metric_table(out, methods, seeds, args.cycles, "propagation_multiplier", fmt=".2f", only=propagates)
    if mult:
        acc = cycle_metric_table(out, methods, seeds, args.cycles, "propagation_accuracy", scale=100, only=propagates)
        floor_lines += ["", "3D label propagation: propagated pixels per human-labelled pixel (mean ± std over seeds):",
                        "", *mult, "", "Propagated pixels that agree with the ground truth (%):", "", *acc]
    if ablation:
        floor_lines += ["", f"**Sampling ablation** (seed {seeds[0]}'s labels as they stood at a cycle, retrained "
                        f"with `--sampling {abl_mode}` and the same training seed; test mIoU %):", "",
                        f"| method @ cycle | `{base.sampling}` (the run) | `{abl_mode}` |", "|---|---|---|"]
        floor_lines += [f"| {k.rsplit('-s', 1)[0]} @ {k.rsplit('-c', 1)[1]} | {100 * v['run']:.1f} | "
                        f"{100 * v[abl_mode]:.1f} |" for k, v in ablation.items() if abl_mode in v]
    long_rows = [(k.rsplit("-s", 1)[0], v) for k, v in longs.items()
                 if k.endswith(f"-s{seeds[0]}-c{long_cycle}") and f"steps{long_steps}" in v]
    if long_rows:
        floor_lines += ["", f"**One long fit** (seed {seeds[0]}'s labels after cycle {long_cycle}, retrained as one "
                        f"cold fit of at least {long_steps} SGD steps from the `{base.init}` start, as the "
                        f"full-data reference is, with the run's training seed; test mIoU %):", "",
                        "| method | the run's model | one long fit |", "|---|---|---|"]
        floor_lines += [f"| {m} | {100 * v['run']:.1f} | {100 * v[f'steps{long_steps}']:.1f} |" for m, v in long_rows]
    report = "\n".join([
        f"# {args.title}", "",
        f"Command: `{cmd}`", "",
        f"Dataset: `{dataset.root}` ({dataset.format}), {len(dataset.split('train'))} pool frames at "
        f"{dataset.width}×{dataset.height}, {dataset.num_classes} classes; seeds {seeds}; {args.cycles} cycles of "
        f"{args.budget}% of the pool's pixels after a seed set of {100 * args.seed_fraction:.1f}% of the frames; "
        + (f"{args.iterations} SGD steps per training" if args.epochs is None else
           f"{args.epochs} epochs over the labelled frames per training, at least {args.iterations} SGD steps")
        + f" (sampling: {args.sampling}), lr {args.lr}, encoder {args.encoder} "
        f"(init {args.init}), decoder {args.decoder_channels} channels, {args.mc_passes} MC passes"
        + (f"; oracle wrong-label rate {100 * args.wrong_label_rate:.0f}% of regions" if args.wrong_label_rate else "")
        + ".", "",
        f"Full-data mIoU (same recipe, all train labels"
        f"{'' if ref_base is base else f', at least {args.full_data_steps} steps'}): **{100 * full:.1f}**; target "
        f"{100 * args.target:.0f}% of it = {100 * target:.1f}.", "",
        *lines, *floor_lines, "",
        "Per cycle (mIoU % mean ± std @ % of pixels labelled):", "",
        "```", format_table(rows, full, args.target), "```",
        *(["", "What the training aids measured (mean over seeds per cycle; from each cycle's `fit_stats` in the "
            "ledgers):", *aids] if aids else []),
        "", f"![curves]({args.name}.png)", "", f"![annotation costs]({args.name}_costs.png)", "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"wall time {time.time() - t0:.0f} s.", "",
        *([Path(args.notes).read_text()] if args.notes else [])])
    write_text(out / f"{args.name}.md", report)
    print(report)
    if args.docs:
        d = Path(args.docs)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "curves.png", d / f"{args.name}.png")
        shutil.copyfile(out / "costs.png", d / f"{args.name}_costs.png")
        shutil.copyfile(out / "results.csv", d / f"{args.name}.csv")
        write_text(d / f"{args.name}.md", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
