"""``viewal experiment``: the arguments of an active-learning experiment and the run that calls
:func:`viewal.runs.experiment.run_experiment`.

The functions that map these arguments to the library (:func:`config_from_args`, :func:`open_from_args`,
:func:`check_experiment_args`) are public: the benchmark scripts build their runs with the same parser
(:func:`configure_parser`) and the same mapping, so a script's run and a ``viewal experiment`` run with the
same flags train alike.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import viewal.scoring.scorers as scorers
from viewal.cli.options import add_depth_test_arguments, add_network_arguments, depth_test_from_args
from viewal.core.config import (
    AUGMENTS,
    PRESET_NAMES,
    PRESETS,
    PSEUDO_LABELS,
    REGIONS,
    SAMPLINGS,
    SEED_RULES,
    SUPERPIXELS,
    ALConfig,
)
from viewal.datasets import open_dataset
from viewal.datasets.check import check_frames
from viewal.runs.curves import format_table, plot_curves, write_results
from viewal.runs.experiment import (
    check_budget_total,
    clean_run,
    parse_budgets,
    parse_method,
    parse_methods,
    parse_scorer_options,
    parse_seeds,
    parse_size_arg,
    run_experiment,
)
from viewal.runs.layout import RunLayout
from viewal.scoring.executors import require_ray

__all__ = ["configure_parser", "run", "config_from_args", "steps_from_args", "open_from_args", "apply_preset",
           "check_experiment_args", "add_recipe_arguments", "add_budget_argument"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory (any format open_dataset reads)")
    p.add_argument("--methods", default="view_entropy,random,entropy",
                   help="comma-separated methods: a scorer name (viewal.scoring.scorers.names()), optionally with "
                        "training aids, e.g. random+ups or entropy+max_entropy (aids: max_entropy, confidence, "
                        "classwise, ups, rotation)")
    p.add_argument("--cycles", type=int, default=3, help="active-learning cycles after the seed set")
    add_budget_argument(p)
    p.add_argument("--seeds", default="1", help="number of seeds N (0..N-1) or a comma-separated list")
    p.add_argument("--out", required=True, help="output directory (resumes when it holds an earlier run)")
    add_recipe_arguments(p)
    p.add_argument("--wrong-label-rate", type=float, default=0.0, help="simulated oracle's per-region error rate")
    p.add_argument("--no-full-data", action="store_true", help="skip the full-data reference training")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the earlier run in --out (ledgers, checkpoints, results) and start over; without it "
                        "an earlier run is resumed, and refused when a setting differs")


def add_budget_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", default="2",
                   help="pixels labelled per cycle, %% of the pool's pixels: one number, or one per cycle "
                        "(e.g. 2,4,8,16; the last repeats)")


def add_recipe_arguments(p: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    """The flags of a run's recipe (data reading, training, scoring, selection), shared by ``viewal experiment``
    and ``viewal loop start`` (whose ``--format`` is the export's: the dataset's is ``format_flag``): one
    definition, one default each."""
    p.add_argument(format_flag, dest="format", default="auto", help="dataset format")
    p.add_argument("--frame-step", type=int, default=1, help="keep every K-th frame of each scene")
    p.add_argument("--size", default=None, help="working size HxW (frames resized on load), e.g. 96x128")
    p.add_argument("--preset", choices=PRESET_NAMES, default="cpu",
                   help="the recipe the flags below start from: cpu, the measured best on 2 CPU cores; paper, "
                        "ViewAL's own settings (viewal.core.config.PRESETS, each value with its measurement)")
    p.add_argument("--iterations", type=int, default=None,
                   help="SGD steps per training, however many frames carry labels (docs/model.md); with --epochs, "
                        "the least number of steps; default: the preset's (cpu: 8 epochs, at least 150 steps)")
    p.add_argument("--epochs", type=int, default=None,
                   help="steps that grow with the labels: each fit runs E passes over its labelled frames (as "
                        "ViewAL's epochs), at least --iterations steps; --iterations alone: exactly that many steps")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--validations", type=int, default=None,
                   help="validations per fit (the best one's weights are kept); each costs a precise-BN pass and "
                        "an evaluation of the val split; default: the preset's")
    p.add_argument("--lr", type=float, default=None,
                   help="encoder SGD lr (x10 for ASPP+decoder+head); default: the preset's. From the ImageNet start "
                        "1e-2 learns fastest in a few hundred CPU steps; ViewAL's 4e-4 is for 50 GPU epochs "
                        "(docs/model.md)")
    p.add_argument("--sampling", choices=SAMPLINGS, default=None,
                   help="labels: each training sample drawn in proportion to its frame's labelled pixels; "
                        "crops: each sample a 2x2 mosaic of half-size crops centred on labelled pixels (packs "
                        "sparse region labels); uniform: passes over the labelled frames; default: the preset's")
    p.add_argument("--decoder-channels", type=int, default=256, help="ASPP/decoder width (DeepLabv3+: 256)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                   help="each cycle's fit starts from the previous cycle's model instead of the ImageNet start "
                        "(ViewAL restarts); default: the preset's (cpu: on); a method spec sets it for one method: "
                        "random:warm_start=false")
    p.add_argument("--propagate", action=argparse.BooleanOptionalAction, default=None,
                   help="3D label propagation: each label also reaches the pool frames that see the same surface "
                        "(under the run's depth test); the fits train on those pixels too and selection skips regions "
                        "mostly known through it; costs stay counted in human labels (docs/propagation.md). Default: "
                        "the preset's (cpu: on; paper: off). A method spec sets it for one method: "
                        "random:propagate=false")
    p.add_argument("--propagate-weight", type=float, default=1.0,
                   help="with --propagate: weight of a propagated pixel in the loss against a human one")
    add_network_arguments(p)
    p.add_argument("--mc-passes", type=int, default=None, help="MC-dropout passes for scoring; default: the preset's")
    p.add_argument("--seed-fraction", type=float, default=None,
                   help="share of train frames in the seed set; default: the preset's")
    p.add_argument("--seed-rule", choices=SEED_RULES, default="random",
                   help="how the seed set's whole frames are picked: random, or spread over scenes and viewpoints")
    p.add_argument("--region", choices=REGIONS, default="superpixel")
    p.add_argument("--superpixels", choices=SUPERPIXELS, default="seeds")
    p.add_argument("--superpixel-num", type=int, default=40)
    p.add_argument("--dedup", action="store_true", help="cross-view dedup for greedy scorers too")
    add_depth_test_arguments(p)
    p.add_argument("--augment", choices=AUGMENTS, default="none",
                   help="training option: max-entropy spatial-transformer augmentation (Cho, Kim and Yoon)")
    p.add_argument("--pseudo-labels", choices=PSEUDO_LABELS, default="none",
                   help="training option: pseudo-label the pool and fine-tune (class-wise: Kim and Lee; UPS: "
                        "Rizve et al.)")
    p.add_argument("--scorer-options", default="{}", help="JSON dict of scorer options, e.g. '{\"sub_queries\": 4}'")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="score the pool on Ray, one task per scene (pip install 'viewal[ray]'); ADDRESS joins a "
                        "cluster ('auto': the one 'ray start' runs here; 'host:6379'); without it: RAY_ADDRESS, "
                        "else a new local Ray (docs/scale.md)")
    p.add_argument("--max-retries", type=int, default=3, help="with --ray: reruns of a task whose worker died")


#: recipe flags (argparse dests) a preset fills when they are not given
PRESET_FLAGS = ("batch_size", "validations", "lr", "sampling", "warm_start", "mc_passes", "seed_fraction",
                "propagate")


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the recipe flags left out (None) with ``--preset``'s values, in place (idempotent). ``--iterations``
    alone stays exactly that many steps; with neither ``--iterations`` nor ``--epochs`` the preset's epochs and
    least steps apply."""
    preset = {k: v for k, (v, _) in PRESETS[getattr(args, "preset", "cpu")].items()}
    for name in PRESET_FLAGS:
        if getattr(args, name, None) is None:
            setattr(args, name, preset[name])
    if getattr(args, "iterations", None) is None and getattr(args, "epochs", None) is None:
        args.epochs, args.iterations = preset["epochs"], preset["min_iterations"]
    elif getattr(args, "iterations", None) is None:  # --epochs alone: at least the preset's steps
        args.iterations = preset["min_iterations"]
    return args


def config_from_args(args: argparse.Namespace):
    """The base :class:`~viewal.core.config.ALConfig` of ``viewal experiment``'s arguments (one place for the
    CLI and the benchmark scripts): ``--preset``'s recipe with the flags given."""
    apply_preset(args)
    return ALConfig.preset(
        getattr(args, "preset", "cpu"), seed_fraction=args.seed_fraction,
        seed_rule=getattr(args, "seed_rule", "random"),
        seed_set=getattr(args, "seed_set", "oracle"), mc_passes=args.mc_passes, region=args.region,
        superpixels=args.superpixels, superpixel_num=args.superpixel_num, dedup=args.dedup,
        depth_test=depth_test_from_args(args), wrong_label_rate=getattr(args, "wrong_label_rate", 0.0),
        encoder=args.encoder, init=args.init, batch_size=args.batch_size, lr=args.lr, **steps_from_args(args),
        validations=args.validations, sampling=args.sampling, decoder_channels=args.decoder_channels,
        warm_start=bool(args.warm_start), propagate=bool(args.propagate),
        propagate_weight=float(getattr(args, "propagate_weight", 1.0)), num_threads=args.threads,
        size=parse_size_arg(args.size), augment=args.augment, pseudo_labels=args.pseudo_labels,
        scorer_options=parse_scorer_options(args.scorer_options), **executor_from_args(args))


def executor_from_args(args: argparse.Namespace) -> dict:
    """ALConfig executor fields of ``--ray [ADDRESS]`` / ``--max-retries``."""
    ray = getattr(args, "ray", None)
    if ray is None:
        return {}
    return {"executor": "ray", "ray_address": ray or None, "max_retries": int(getattr(args, "max_retries", 3))}


def steps_from_args(args: argparse.Namespace) -> dict:
    """ALConfig step fields of ``--iterations`` / ``--epochs``: exactly ``iterations`` steps per fit, or, with
    ``--epochs E``, ``max(iterations, E * ceil(labelled frames / batch))`` steps (``learner.train_config``)."""
    apply_preset(args)
    epochs = getattr(args, "epochs", None)
    if epochs is None:
        return {"epochs": 1, "steps": args.iterations, "min_iterations": 0}
    return {"epochs": int(epochs), "steps": None, "min_iterations": args.iterations}


def open_from_args(args: argparse.Namespace):
    """The dataset of ``viewal experiment``'s arguments (resized to ``--size``, every ``--frame-step``-th frame)."""
    size = parse_size_arg(args.size)
    kw = {"height": size[0], "width": size[1]} if size else {}
    return open_dataset(args.data, format=args.format, **kw).every(args.frame_step)


def check_experiment_args(args: argparse.Namespace) -> dict:
    """Every argument of ``viewal experiment`` (or of ``viewal loop start``: one ``--method`` and ``--seed``, no
    ``--cycles``) checked before any data is read or model trained.

    Returns ``{"methods", "budgets", "seeds"}`` parsed; raises ValueError naming the flag otherwise."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("viewal experiment does not run under torchrun (every rank would write the ledgers); "
                         "torchrun runs 'viewal train', and --ray spreads the scoring (docs/scale.md)")
    apply_preset(args)
    methods = parse_methods(args.methods if hasattr(args, "methods") else args.method)
    if not hasattr(args, "methods") and len(methods) != 1:
        raise ValueError(f"--method names one method, got {args.method!r}")
    budgets = parse_budgets(args.budget)
    seeds = parse_seeds(args.seeds) if hasattr(args, "seeds") else [args.seed]
    if seeds[0] < 0:
        raise ValueError(f"--seed must be >= 0, got {seeds[0]}")
    ints = {"--cycles": (getattr(args, "cycles", 0), 0),
            "--iterations": (args.iterations, 0 if getattr(args, "epochs", None) is not None else 1),
            "--batch-size": (args.batch_size, 1),
            "--validations": (getattr(args, "validations", 5), 1),
            "--mc-passes": (args.mc_passes, 1), "--frame-step": (args.frame_step, 1),
            "--superpixel-num": (args.superpixel_num, 1), "--decoder-channels": (args.decoder_channels, 1)}
    if args.threads is not None:
        ints["--threads"] = (args.threads, 1)
    if getattr(args, "ray", None) is not None:
        try:
            require_ray()
        except ValueError as e:
            raise ValueError(f"--ray: {e}") from None
        ints["--max-retries"] = (args.max_retries, 0)
    if getattr(args, "epochs", None) is not None:
        ints["--epochs"] = (args.epochs, 1)
    for flag, (v, lo) in ints.items():
        if v < lo:
            raise ValueError(f"{flag} must be >= {lo}, got {v}")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    pw = getattr(args, "propagate_weight", 1.0)
    if not (np.isfinite(pw) and pw >= 0):
        raise ValueError(f"--propagate-weight must be a finite number >= 0, got {pw}")
    if not (0 < args.seed_fraction <= 1):
        raise ValueError(f"--seed-fraction must lie in (0, 1], got {args.seed_fraction}")
    if not (0 <= getattr(args, "wrong_label_rate", 0.0) <= 1):
        raise ValueError(f"--wrong-label-rate must lie in [0, 1], got {args.wrong_label_rate}")
    parse_size_arg(args.size)
    depth_test_from_args(args)
    options = parse_scorer_options(args.scorer_options)
    for m in methods:
        try:
            scorers.get(parse_method(m)[0], **{**options, **parse_method(m)[1].get("scorer_options", {})})
        except ValueError as e:
            raise ValueError(f"--scorer-options: {e}") from None
    if hasattr(args, "cycles"):
        check_budget_total(budgets, args.cycles, args.seed_fraction)
    return {"methods": methods, "budgets": budgets, "seeds": seeds}


def run(args: argparse.Namespace) -> int:
    checked = check_experiment_args(args)  # every flag, before any data is read
    methods, budgets, seeds = checked["methods"], checked["budgets"], checked["seeds"]
    base = config_from_args(args)
    dataset = open_from_args(args)
    # every frame the run will read, once, before any training (cached by file size and mtime)
    check_frames(dataset.split("train") + [f for s in ("val", "test") if s in dataset.splits
                                           for f in dataset.split(s)],
                 cache=RunLayout(Path(args.out)).frame_check)
    out = Path(args.out)
    layout = RunLayout(out)
    if args.overwrite:
        gone = clean_run(out)
        if gone:
            print(f"viewal experiment: --overwrite removed {len(gone)} files of the earlier run in {out}")
    t0 = time.time()
    rows, full = run_experiment(dataset, methods, seeds, args.cycles, budgets, out, base,
                                full_data=not args.no_full_data, frame_step=args.frame_step)
    write_results(layout.results, rows)
    plot_curves(rows, layout.curves, full_miou=full,
                title=f"{Path(args.data).name}: {len(seeds)} seed(s), {args.budget}% per cycle")
    table = format_table(rows, full_miou=full)
    layout.table.write_text(table + "\n")
    print(table)
    print(f"\nresults: {layout.results}\nplot:    {layout.curves}\n({time.time() - t0:.0f} s)")
    return 0
