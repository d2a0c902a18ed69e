"""``viewal experiment``: ViewAL against baselines, mIoU against % of pixels labelled.

For every method × seed: a seed set (fully labelled frames, the same for every method of a seed), then
K cycles of train → score → select → label, each cycle's test mIoU recorded. State lives in one
SQLite ledger per (method, seed) under ``OUT/ledgers/`` and one checkpoint per cycle under
``OUT/models/``, so an interrupted experiment resumes where it stopped (``--out`` the same directory).

Outputs: ``OUT/results.csv`` (method, seed, cycle, labelled_fraction, miou), ``OUT/curves.png``
(mean and ±1 std over seeds, full-data mIoU as a line), ``OUT/table.txt`` (also printed) and
``OUT/full_data.json`` (the reference trained on every label of the train split, same recipe).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from viewal.io import write_json
from viewal.layout import RunLayout, seedset_name
from viewal.report import ResultRow, format_table, plot_curves, write_results

__all__ = ["configure_parser", "run", "run_experiment", "run_cycles", "open_learners", "check_run_setting",
           "check_experiment_args", "check_budget_total", "parse_seeds", "parse_methods", "parse_scorer_options",
           "clean_run", "full_data_miou", "retrain_miou", "result_row",
           "parse_budgets", "budget_for_cycle", "config_from_args", "open_from_args", "parse_method", "method_config",
           "seedset_name", "parse_size_arg", "RunLayout", "TRAINING_AIDS"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory (any format open_dataset reads)")
    p.add_argument("--format", default="auto", help="dataset format")
    p.add_argument("--methods", default="view_entropy,random,entropy",
                   help="comma-separated methods: a scorer name (viewal.scorers.names()), optionally with training "
                        "aids, e.g. random+ups or entropy+max_entropy (aids: max_entropy, confidence, classwise, ups, "
                        "rotation)")
    p.add_argument("--cycles", type=int, default=3, help="active-learning cycles after the seed set")
    p.add_argument("--budget", default="2",
                   help="pixels labelled per cycle, %% of the pool's pixels: one number, or one per cycle "
                        "(e.g. 2,4,8,16; the last repeats)")
    p.add_argument("--seeds", default="1", help="number of seeds N (0..N-1) or a comma-separated list")
    p.add_argument("--out", required=True, help="output directory (resumes when it holds an earlier run)")
    p.add_argument("--frame-step", type=int, default=1, help="keep every K-th frame of each scene")
    p.add_argument("--size", default=None, help="working size HxW (frames resized on load), e.g. 96x128")
    p.add_argument("--iterations", type=int, default=300,
                   help="SGD steps per training, however many frames carry labels (docs/model.md); with --epochs, "
                        "the least number of steps")
    p.add_argument("--epochs", type=int, default=None,
                   help="steps that grow with the labels: each fit runs E passes over its labelled frames (as "
                        "ViewAL's epochs), at least --iterations steps; default: exactly --iterations steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-2,
                   help="encoder SGD lr (x10 for ASPP+decoder+head). From the ImageNet start 1e-2 learns fastest "
                        "in a few hundred CPU steps; ViewAL's 4e-4 is for 50 GPU epochs (docs/model.md)")
    p.add_argument("--sampling", choices=("labels", "uniform", "crops"), default="labels",
                   help="labels: each training sample drawn in proportion to its frame's labelled pixels; "
                        "crops: each sample a 2x2 mosaic of half-size crops centred on labelled pixels (packs "
                        "sparse region labels); uniform: passes over the labelled frames")
    p.add_argument("--decoder-channels", type=int, default=256, help="ASPP/decoder width (DeepLabv3+: 256)")
    from viewal.model import add_network_arguments

    add_network_arguments(p)
    p.add_argument("--mc-passes", type=int, default=8, help="MC-dropout passes for scoring")
    p.add_argument("--seed-fraction", type=float, default=0.05, help="share of train frames in the seed set")
    p.add_argument("--region", choices=("superpixel", "image"), default="superpixel")
    p.add_argument("--superpixels", choices=("seeds", "slic"), default="seeds")
    p.add_argument("--superpixel-num", type=int, default=40)
    p.add_argument("--dedup", action="store_true", help="cross-view dedup for greedy scorers too")
    p.add_argument("--overlap-mode", choices=("z", "viewal"), default="z")
    p.add_argument("--wrong-label-rate", type=float, default=0.0, help="simulated oracle's per-region error rate")
    p.add_argument("--augment", choices=("none", "max_entropy"), default="none",
                   help="training option: max-entropy spatial-transformer augmentation (seed 002)")
    p.add_argument("--pseudo-labels", choices=("none", "confidence", "classwise", "ups"), default="none",
                   help="training option: pseudo-label the pool and fine-tune (seeds 000/004)")
    p.add_argument("--scorer-options", default="{}", help="JSON dict of scorer options, e.g. '{\"sub_queries\": 4}'")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="score the pool on Ray, one task per scene (pip install 'viewal[ray]'); ADDRESS joins a "
                        "cluster ('auto': the one 'ray start' runs here; 'host:6379'); without it: RAY_ADDRESS, "
                        "else a new local Ray (docs/scale.md)")
    p.add_argument("--max-retries", type=int, default=3, help="with --ray: reruns of a task whose worker died")
    p.add_argument("--no-full-data", action="store_true", help="skip the full-data reference training")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the earlier run in --out (ledgers, checkpoints, results) and start over; without it "
                        "an earlier run is resumed, and refused when a setting differs")


#: training aids a method spec may add to its scorer: ``scorer+aid`` (e.g. ``random+ups``)
TRAINING_AIDS = {"max_entropy": ("augment", "max_entropy"), "confidence": ("pseudo_labels", "confidence"),
                 "classwise": ("pseudo_labels", "classwise"), "ups": ("pseudo_labels", "ups"),
                 "rotation": ("auxiliary", "rotation")}


#: region kinds a method spec may name after ``@``: ``random@image`` is ViewAL's RAND (whole images)
REGION_KINDS = ("superpixel", "image")


def parse_method(spec: str) -> tuple[str, dict]:
    """``"scorer[@region][+aid[+aid]]"`` → (scorer name, ALConfig overrides).

    ``@image`` / ``@superpixel`` sets the region kind of that method alone (``random@image`` ranks whole
    images at random, as ViewAL's own RAND baseline; plain ``random`` picks random superpixels), so one
    run compares both.

    Aids are training options (:data:`TRAINING_AIDS`): ``max_entropy`` (augmentation), one of
    ``confidence``, ``classwise``, ``ups`` (pseudo-labels) and ``rotation`` (PAL's rotation head as an
    auxiliary task). The spec names the method's ledger and curve, so
    ``random,random+ups`` compares selection-equal runs with and without UPS in one experiment.
    """
    import viewal.scorers as scorers

    head, *aids = [t.strip() for t in str(spec).split("+")]
    scorer, at, region = (t.strip() for t in head.partition("@"))
    if scorer not in scorers.names():
        raise ValueError(f"method {spec!r}: unknown scorer {scorer!r}; available: {', '.join(scorers.names())}")
    overrides: dict = {}
    if at:
        if region not in REGION_KINDS:
            raise ValueError(f"method {spec!r}: unknown region kind {region!r}; available: {', '.join(REGION_KINDS)}")
        overrides["region"] = region
    for aid in aids:
        if aid not in TRAINING_AIDS:
            raise ValueError(f"method {spec!r}: unknown training aid {aid!r}; available: {', '.join(TRAINING_AIDS)}")
        key, value = TRAINING_AIDS[aid]
        if key in overrides:
            raise ValueError(f"method {spec!r}: two {key} aids ({overrides[key]!r}, {value!r})")
        overrides[key] = value
    return scorer, overrides


def method_config(base, spec: str, seed: int):
    """The ALConfig of one method spec (see :func:`parse_method`) and seed."""
    scorer, overrides = parse_method(spec)
    return replace(base, scorer=scorer, seed=seed, **overrides)


def parse_budgets(text: str | float) -> list[float]:
    """``"2"`` or ``"2,4,8"`` -> per-cycle budgets in %% of the pool (each finite, > 0 and <= 100)."""
    try:
        vals = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--budget must be a number or a comma-separated list of numbers, got {text!r}") from None
    if not vals:
        raise ValueError(f"--budget must be a number or a comma-separated list of numbers, got {text!r}")
    if any(not np.isfinite(v) for v in vals):
        raise ValueError(f"--budget must be finite numbers, got {text!r}")
    if any(v <= 0 or v > 100 for v in vals):
        raise ValueError(f"--budget: each value must be positive and at most 100 (% of the pool per cycle), "
                         f"got {text!r}")
    return vals


def check_budget_total(budgets: list[float], cycles: int, seed_fraction: float) -> None:
    """Refuse a schedule that asks for more than the whole pool: seed set + every cycle's budget > 100 %%."""
    total = 100.0 * seed_fraction + sum(budget_for_cycle(budgets, c) for c in range(1, cycles + 1))
    if total > 100.0 + 1e-9:
        raise ValueError(f"--budget {','.join(f'{b:g}' for b in budgets)} over --cycles {cycles} plus the seed set "
                         f"({100 * seed_fraction:g} %) asks for {total:g} % of the pool; at most 100 %")


def budget_for_cycle(budgets: list[float], cycle: int) -> float:
    """Budget (%%) of cycle ``cycle`` >= 1: ``budgets[cycle - 1]``, the last one repeating."""
    return budgets[min(cycle, len(budgets)) - 1]


def config_from_args(args: argparse.Namespace):
    """The base :class:`~viewal.learner.ALConfig` of ``viewal experiment``'s arguments (one place for the
    CLI and the benchmark scripts)."""
    from viewal.learner import ALConfig

    return ALConfig(seed_fraction=args.seed_fraction, mc_passes=args.mc_passes, region=args.region,
                    superpixels=args.superpixels, superpixel_num=args.superpixel_num, dedup=args.dedup,
                    overlap_mode=args.overlap_mode, wrong_label_rate=args.wrong_label_rate, encoder=args.encoder,
                    init=args.init, batch_size=args.batch_size, lr=args.lr, **steps_from_args(args),
                    sampling=args.sampling, decoder_channels=args.decoder_channels,
                    num_threads=args.threads, size=parse_size_arg(args.size), augment=args.augment,
                    pseudo_labels=args.pseudo_labels, scorer_options=parse_scorer_options(args.scorer_options),
                    **executor_from_args(args))


def executor_from_args(args: argparse.Namespace) -> dict:
    """ALConfig executor fields of ``--ray [ADDRESS]`` / ``--max-retries``."""
    ray = getattr(args, "ray", None)
    if ray is None:
        return {}
    return {"executor": "ray", "ray_address": ray or None, "max_retries": int(getattr(args, "max_retries", 3))}


def steps_from_args(args: argparse.Namespace) -> dict:
    """ALConfig step fields of ``--iterations`` / ``--epochs``: exactly ``iterations`` steps per fit, or, with
    ``--epochs E``, ``max(iterations, E * ceil(labelled frames / batch))`` steps (``learner.train_config``)."""
    epochs = getattr(args, "epochs", None)
    if epochs is None:
        return {"epochs": 1, "steps": args.iterations}
    return {"epochs": int(epochs), "steps": None, "min_iterations": args.iterations}


def open_from_args(args: argparse.Namespace):
    """The dataset of ``viewal experiment``'s arguments (resized to ``--size``, every ``--frame-step``-th frame)."""
    from viewal.datasets import open_dataset

    size = parse_size_arg(args.size)
    kw = {"height": size[0], "width": size[1]} if size else {}
    return open_dataset(args.data, format=args.format, **kw).every(args.frame_step)


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"0,5"`` -> [0, 5]. Non-negative integers, at least one seed, no repeats."""
    text = str(text).strip()
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()] if "," in text else list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds must be a number N (seeds 0..N-1) or a comma-separated list of seeds, "
                         f"got {text!r}") from None
    if "," not in text and int(text) < 1:
        raise ValueError(f"--seeds N needs N >= 1 (seeds 0..N-1), got {text!r}")
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds: seeds are non-negative integers, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def parse_methods(text: str) -> list[str]:
    """``--methods`` -> method specs (each checked by :func:`parse_method`); empty or repeated is refused."""
    methods = [m.strip() for m in str(text).split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--methods names no method: {text!r}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"--methods lists a method twice: {text!r}")
    for m in methods:
        parse_method(m)  # fails early, naming the bad spec
    return methods


def parse_scorer_options(text: str) -> dict:
    """``--scorer-options`` JSON -> dict (a JSON object), with an error naming the flag."""
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--scorer-options is not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"--scorer-options must be a JSON object like '{{\"sub_queries\": 4}}', got {text!r}")
    return opts


def check_experiment_args(args: argparse.Namespace) -> dict:
    """Every argument of ``viewal experiment`` checked before any data is read or model trained.

    Returns ``{"methods", "budgets", "seeds"}`` parsed; raises ValueError naming the flag otherwise."""
    import os

    import viewal.scorers as scorers

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("viewal experiment does not run under torchrun (every rank would write the ledgers); "
                         "torchrun runs 'viewal train', and --ray spreads the scoring (docs/scale.md)")
    methods = parse_methods(args.methods)
    budgets = parse_budgets(args.budget)
    seeds = parse_seeds(args.seeds)
    ints = {"--cycles": (args.cycles, 0), "--iterations": (args.iterations, 1), "--batch-size": (args.batch_size, 1),
            "--mc-passes": (args.mc_passes, 1), "--frame-step": (args.frame_step, 1),
            "--superpixel-num": (args.superpixel_num, 1), "--decoder-channels": (args.decoder_channels, 1)}
    if args.threads is not None:
        ints["--threads"] = (args.threads, 1)
    if getattr(args, "ray", None) is not None:
        from viewal.scoring import require_ray

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
    if not (0 < args.seed_fraction <= 1):
        raise ValueError(f"--seed-fraction must lie in (0, 1], got {args.seed_fraction}")
    if not (0 <= args.wrong_label_rate <= 1):
        raise ValueError(f"--wrong-label-rate must lie in [0, 1], got {args.wrong_label_rate}")
    parse_size_arg(args.size)
    options = parse_scorer_options(args.scorer_options)
    for m in methods:
        try:
            scorers.get(parse_method(m)[0], **options)
        except ValueError as e:
            raise ValueError(f"--scorer-options: {e}") from None
    check_budget_total(budgets, args.cycles, args.seed_fraction)
    return {"methods": methods, "budgets": budgets, "seeds": seeds}


def parse_size_arg(text):
    if text is None:
        return None
    from viewal.data import parse_size

    return parse_size(text)


def _scalars(d: dict, prefix: str = "") -> dict:
    """Numbers and strings of a (nested) stats dict, flattened to ``a.b`` keys (for the ledger's JSON)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, np.integer, np.floating)):
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") else v
    return out


def result_row(method: str, seed: int, r: dict) -> ResultRow:
    """A :class:`~viewal.report.ResultRow` from one ledger result (cost counts -1 when not recorded)."""
    return ResultRow(method, seed, int(r["cycle"]), float(r["labelled_fraction"]), float(r["miou"]),
                     int(r.get("regions", -1)), int(r.get("frames", -1)))


def full_data_miou(dataset, base, out: Path, progress: bool = True) -> dict:
    """Train on every label of the train split with the experiment's recipe; cached in ``out``."""
    import torch

    from viewal.learner import pool_signature, train_config, training_key
    from viewal.model import build_model
    from viewal.train import evaluate, fit

    path = RunLayout(out).full_data
    train = dataset.split("train")
    # the cached reference is reused only for the same recipe and the same train frames
    recipe = {"train": training_key(replace(base, scorer="random", scorer_options={}, seed=0, train_seed=None)),
              "pool": pool_signature([f.key for f in train])}
    recipe = json.loads(json.dumps(recipe))
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:
            cached = {}
        if cached.get("recipe") == recipe:
            return cached
    t0 = time.time()

    cfg = train_config(base, len(train), seed=0)
    torch.manual_seed(0)
    model = build_model(dataset.num_classes, encoder=base.encoder, encoder_weights=base.init,
                        decoder_channels=base.decoder_channels)
    fit(model, train, dataset.split("val"), cfg, progress=progress, desc="full data")
    m = evaluate(model, dataset.split("test"), dataset.num_classes, batch_size=base.infer_batch_size,
                 size=base.size)
    res = {"miou": float(m["miou"]), "per_class_iou": [float(x) for x in m["per_class_iou"]],
           "seconds": time.time() - t0, "epochs": cfg.epochs, "steps": cfg.steps, "recipe": recipe}
    write_json(path, res)
    return res


def retrain_miou(dataset, config, ledger_path: str | Path, train_seed: int, *, seed_set_only: bool = False,
                 cycle: int | None = None, progress: bool = False) -> float:
    """Test mIoU of a model retrained on a ledger's labels with another training seed (same recipe).

    The spread of this over train seeds, with the labels fixed, is the benchmark's noise floor: a gap
    between methods smaller than it says nothing. ``seed_set_only``: train on the seed set's frames
    alone (the labels of cycle 0); ``cycle``: the labels recorded up to that cycle (default: all)."""
    import torch

    from viewal.learner import train_config
    from viewal.ledger import Ledger
    from viewal.model import build_model
    from viewal.train import evaluate, fit

    with Ledger(ledger_path) as led:
        if seed_set_only:
            keys = list(dict.fromkeys(f"{r['scene_id']}/{r['frame_id']}" for r in led.labels()
                                      if r["source"] == "seed"))
            items = [dataset.frame(k) for k in keys]
        else:
            shape = (dataset.height, dataset.width)
            maps = [(k, led.label_map(k, shape, max_cycle=cycle)) for k in led.labelled_frames()]
            items = [(dataset.frame(k), m) for k, m in maps if (m != 255).any()]
    if not items:
        raise ValueError(f"{ledger_path}: no labels to retrain on")
    cfg = train_config(config, len(items), seed=train_seed)
    torch.manual_seed(int(train_seed))
    model = build_model(dataset.num_classes, encoder=config.encoder, encoder_weights=config.init,
                        decoder_channels=config.decoder_channels)
    fit(model, items, dataset.split("val"), cfg, progress=progress, desc=f"retrain seed {train_seed}")
    return float(evaluate(model, dataset.split("test"), dataset.num_classes, batch_size=config.infer_batch_size,
                          size=config.size)["miou"])


def check_run_setting(ledger, name: str, value, flag: str) -> None:
    """Store an experiment-level setting (``--budget``, ``--frame-step``) in a ledger, or refuse a resume
    that changes it, naming the flag and both values."""
    from viewal.ledger import LedgerError

    stored = ledger.meta("experiment") or {}
    value = json.loads(json.dumps(value))
    if name not in stored:
        ledger.set_meta("experiment", {**stored, name: value})
    elif stored[name] != value:
        raise LedgerError(f"{ledger.path}: this run was made with {flag} {_flag_text(stored[name])}, not "
                          f"{_flag_text(value)}; resume with the same {flag}, or pass --overwrite to start over")


def _flag_text(v) -> str:
    return ",".join(f"{x:g}" for x in v) if isinstance(v, list) else str(v)


def clean_run(out: Path) -> list[Path]:
    """``--overwrite``: delete what an earlier run left in ``out`` (``RunLayout.run_files``: ledgers,
    checkpoints, results, full-data reference, plots, query sheets); returns the deleted paths. Nothing
    else is touched."""
    gone = []
    for p in RunLayout(out).run_files():
        if p.is_file():
            p.unlink()
            gone.append(p)
    return gone


def open_learners(dataset, methods: list[str], seeds: list[int], budgets: list[float], out: Path, base,
                  frame_step: int = 1) -> list[tuple[str, int, object]]:
    """One :class:`~viewal.learner.ActiveLearner` per seed × method, ledgers under ``out/ledgers``.

    Every ledger is opened and checked (config, pool, ``--budget``, ``--frame-step``) before any
    training starts, so a resume with a changed setting fails at once, naming it."""
    from viewal.learner import ActiveLearner
    from viewal.ledger import Ledger, LedgerError

    learners = []
    try:
        for seed in seeds:
            for method in methods:
                cfg = method_config(base, method, seed)
                led = Ledger(RunLayout(out).ledger(method, seed))
                try:  # the flags first: a changed --frame-step is named as such, not as a changed pool
                    check_run_setting(led, "budget", budgets, "--budget")
                    check_run_setting(led, "frame_step", int(frame_step), "--frame-step")
                    learner = ActiveLearner(dataset, ledger=led, config=cfg)
                except LedgerError as e:
                    led.close()
                    raise LedgerError(f"{e} (viewal experiment: --overwrite starts the run over)") from None
                except BaseException:
                    led.close()
                    raise
                learners.append((method, seed, learner))
    except BaseException:
        for *_, lr in learners:
            lr.ledger.close()
        raise
    return learners


def run_cycles(learner, method: str, seed: int, cycles: int, budgets: list[float], out: Path, pool_pixels: int,
               progress: bool = True) -> None:
    """Run (or resume) one learner's cycles 0..``cycles``: query + label (cycles >= 1), fit or load the
    cycle's checkpoint, evaluate, close the cycle in the ledger.

    Resumable at any point: queries recorded once (a resumed cycle labels the pending rest), a checkpoint
    reused only when it was trained on exactly the ledger's labels with this recipe
    (``ActiveLearner.checkpoint_is_current``; otherwise retrained and overwritten)."""
    from viewal.faults import kill_point
    from viewal.progress import progress_bar

    layout = RunLayout(out)  # cycle 0: same seed set and recipe, one model (RunLayout.seedset)
    bar = progress_bar(total=cycles + 1, initial=min(learner.ledger.cycle(), cycles + 1), unit="cycle",
                       desc=f"{method} seed {seed}", disable=not progress)
    while (c := learner.ledger.cycle()) <= cycles:
        ckpt = layout.checkpoint(method, learner.config, c)
        if c > 0:
            if not learner.ledger.queries(c):
                prev = layout.checkpoint(method, learner.config, c - 1)
                if learner.model is None and learner.checkpoint_is_current(prev):
                    learner.load_model(prev)
                learner.query(int(round(budget_for_cycle(budgets, c) / 100.0 * pool_pixels)), progress=False)
            learner.label()  # the pending queries of the cycle (none left when a kill came after labelling)
        if learner.checkpoint_is_current(ckpt):
            learner.load_model(ckpt)
        else:
            learner.fit(progress=False)
            learner.save_model(ckpt)
        kill_point("evaluate", c)
        metrics = learner.evaluate()
        metrics["labelled_fraction"] = learner.labelled_fraction()
        metrics["fit_stats"] = _scalars(learner.fit_stats)
        metrics["oracle_wrong_regions"] = learner.oracle.n_wrong
        metrics["regions"] = len(learner.ledger.labels())  # annotation cost: clicks (a seed frame = 1)
        metrics["frames"] = len(learner.ledger.labelled_frames())
        learner.next_cycle(metrics)
        bar.update(1)
        bar.set_postfix(miou=f"{metrics['miou']:.3f}", labelled=f"{100 * metrics['labelled_fraction']:.1f}%")
    bar.close()


def run_experiment(dataset, methods: list[str], seeds: list[int], cycles: int, budget_pct: float | list[float],
                   out: Path, base, *, full_data: bool = True, progress: bool = True,
                   frame_step: int = 1) -> tuple[list[ResultRow], float | None]:
    """Run (or resume) every method × seed; returns the result rows and the full-data mIoU.

    ``frame_step`` is recorded in the ledgers (a resume with another one is refused); ``dataset`` must
    already be reduced to it."""
    out.mkdir(parents=True, exist_ok=True)
    for p in RunLayout(out).partial_checkpoints():  # saves killed before their rename
        p.unlink(missing_ok=True)
    rows: list[ResultRow] = []
    budgets = parse_budgets(",".join(map(str, budget_pct)) if isinstance(budget_pct, (list, tuple)) else budget_pct)
    learners = open_learners(dataset, methods, seeds, budgets, out, base, frame_step)
    try:
        pool_pixels = learners[0][2].pool_pixels
        for c in range(1, cycles + 1):  # a budget under one pixel is refused now, not after cycle 0's training
            if int(round(budget_for_cycle(budgets, c) / 100.0 * pool_pixels)) < 1:
                raise ValueError(f"--budget {budget_for_cycle(budgets, c):g} % of a pool of {pool_pixels} pixels is "
                                 f"less than one pixel (cycle {c})")
        for method, seed, learner in learners:
            run_cycles(learner, method, seed, cycles, budgets, out, pool_pixels, progress=progress)
            for r in learner.ledger.results():
                if r["cycle"] <= cycles:
                    rows.append(result_row(method, seed, r))
            learner.ledger.close()
            learner.model = None  # one method's model in memory at a time
    finally:
        for *_, learner in learners:
            learner.ledger.close()
    full = full_data_miou(dataset, base, out, progress=progress)["miou"] if full_data else None
    from viewal.visualize import write_query_sheets  # contact sheet of the last cycle's queries (first seed)

    write_query_sheets(dataset, out, methods, seeds[0])
    return rows, full


def run(args: argparse.Namespace) -> int:
    checked = check_experiment_args(args)  # every flag, before any data is read
    methods, budgets, seeds = checked["methods"], checked["budgets"], checked["seeds"]
    base = config_from_args(args)
    dataset = open_from_args(args)
    from viewal.datasets.check import check_frames

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
