"""Active-learning experiments: ViewAL against baselines, mIoU against % of pixels labelled.

For every method × seed: a seed set (fully labelled frames, the same for every method of a seed), then
K cycles of train → score → select → label, each cycle's test mIoU recorded. State lives in one
SQLite ledger per (method, seed) under ``OUT/ledgers/`` and one checkpoint per cycle under
``OUT/models/``, so an interrupted experiment resumes where it stopped (``--out`` the same directory).

Outputs: ``OUT/results.csv`` (method, seed, cycle, labelled_fraction, miou), ``OUT/curves.png``
(mean and ±1 std over seeds, full-data mIoU as a line), ``OUT/table.txt`` (also printed) and
``OUT/full_data.json`` (the reference trained on every label of the train split, same recipe).

The command ``viewal experiment`` (:mod:`viewal.cli.experiment`) maps its arguments to these functions.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from viewal.core.config import ALConfig
from viewal.core.io import write_json
from viewal.core.progress import progress_bar
from viewal.core.seeding import fit_seed
from viewal.nn.data import parse_size
from viewal.nn.model import build_model
from viewal.nn.train import evaluate, fit
from viewal.runs.curves import ResultRow
from viewal.runs.layout import RunLayout
from viewal.runs.learner import ActiveLearner, in_pool_order, pool_signature, train_config, training_key
from viewal.runs.ledger import Ledger, LedgerError
from viewal.runs.recipe import (
    METHOD_CONFIG_KEYS,
    REGION_KINDS,
    TRAINING_AIDS,
    method_config,
    parse_method,
    seedset_name,
)
from viewal.runs.visualize import write_query_sheets
from viewal.scoring.propagation import ledger_propagation, propagated_items

__all__ = ["run_experiment", "run_cycles", "open_learners", "check_run_setting", "check_budget_total", "parse_seeds",
           "parse_methods", "parse_scorer_options", "clean_run", "check_ground_truth", "full_data_miou", "retrain_miou",
           "retrain_mious",
           "result_row", "parse_budgets", "budget_for_cycle", "budget_pixels", "parse_method", "method_config",
           "METHOD_CONFIG_KEYS",
           "seedset_name", "parse_size_arg",
           "RunLayout", "TRAINING_AIDS", "REGION_KINDS"]


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


def budget_pixels(budgets: list[float], cycle: int, pool_pixels: int) -> int:
    """Pixels cycle ``cycle`` >= 1 asks: its budget (:func:`budget_for_cycle`, %% of the pool) of ``pool_pixels``,
    rounded (0 when the budget is below half a pixel; callers refuse that)."""
    return int(round(budget_for_cycle(budgets, cycle) / 100.0 * pool_pixels))


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


def parse_size_arg(text):
    if text is None:
        return None
    return parse_size(text)


def result_row(method: str, seed: int, r: dict) -> ResultRow:
    """A :class:`~viewal.runs.curves.ResultRow` from one ledger result (cost counts -1 when not recorded)."""
    return ResultRow(method, seed, int(r["cycle"]), float(r["labelled_fraction"]), float(r["miou"]),
                     int(r.get("regions", -1)), int(r.get("frames", -1)))


def full_data_miou(dataset, base: ALConfig, out: Path, progress: bool = True, *,
                   cached_only: bool = False) -> dict | None:
    """Train on every label of the train split with the experiment's recipe; cached in ``out``. With
    ``cached_only`` nothing is trained: the cached result of this recipe, or None."""
    import torch

    path = RunLayout(out).full_data
    train = dataset.split("train")
    # the cached reference is reused only for the same recipe and the same train frames; one fit has no
    # previous model, so a warm-start run shares the cold run's reference; it trains on the dataset's own labels,
    # never propagated ones, so a propagating run shares it too
    recipe = {"train": training_key(replace(base, scorer="random", scorer_options={}, seed=0, train_seed=None,
                                            warm_start=False, propagate=False)),
              "pool": pool_signature([f.key for f in train])}
    recipe = json.loads(json.dumps(recipe))
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:
            cached = {}
        if cached.get("recipe") == recipe:
            return cached
    if cached_only:
        return None
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


def retrain_mious(dataset, config: ALConfig, ledger_path: str | Path, train_seed: int, cycles, *,
                  progress: bool = False) -> dict[int, float]:
    """Test mIoU of models retrained on a ledger's labels with another training seed (same recipe), one per
    cycle of ``cycles``, each on the labels as they stood at that cycle (cycle 0: the seed set).

    The spread of these over train seeds, with the labels fixed, is the benchmark's noise floor: a gap
    between methods smaller than it says nothing. A cold run's fits are independent, so each cycle is one
    fit from ``config.init``. With ``config.warm_start`` the run's models were a chain (each cycle's fit
    continued from the one before), so the retrain is that chain too: one fit per cycle 0..max(cycles),
    each starting from the previous fit's model, read at ``cycles``. A propagating run (``config.propagate``)
    is retrained on its human labels and the labels they propagate to, as its fits were. With the run's own
    training seed either replays the run's fits. Returns ``{cycle: mIoU}``."""
    import torch

    want = sorted({int(c) for c in cycles})
    if not want or want[0] < 0:
        raise ValueError(f"cycles must be >= 0, got {want}")
    fits = list(range(want[-1] + 1)) if config.warm_start else want
    shape = (dataset.height, dataset.width)
    with Ledger(ledger_path) as led:
        recorded = {int(r["cycle"]) for r in led.labels()}
    if want[-1] not in recorded:
        raise ValueError(f"{ledger_path}: no labels of cycle {want[-1]} (cycles recorded: {sorted(recorded)})")
    out, model = {}, None
    for c in fits:
        with Ledger(ledger_path) as led:  # one cycle's label maps in memory at a time
            if config.propagate:  # the human labels and those they propagate to, weighted, as the learner's fits
                pool = dataset.split("train")
                scenes = ledger_propagation(pool, led, config, shape, max_cycle=c)
                human = {f"{sid}/{fid}" for sid, sp in scenes.items() for i, fid in enumerate(sp.frame_ids)
                         if sp.human[i].any()}
                items = [(f, m, {"weight": w})
                         for f, m, w in propagated_items(scenes, pool, human, config.propagate_weight)]
            else:
                maps = [(k, led.label_map(k, shape, max_cycle=c))
                        for k in in_pool_order(led.labelled_frames(), dataset.split("train"))]  # as the learner's
                items = [(dataset.frame(k), m) for k, m in maps if (m != 255).any()]
        torch.manual_seed(fit_seed(int(train_seed), c))
        fresh = build_model(dataset.num_classes, encoder=config.encoder, encoder_weights=config.init,
                            decoder_channels=config.decoder_channels)
        if config.warm_start and model is not None:  # continue from the previous cycle's model
            fresh.load_state_dict(model.state_dict())
        model = fresh
        fit(model, items, dataset.split("val"), train_config(config, len(items), seed=fit_seed(int(train_seed), c)),
            progress=progress, desc=f"retrain seed {train_seed} c{c}")
        if c in want:
            out[c] = float(evaluate(model, dataset.split("test"), dataset.num_classes,
                                    batch_size=config.infer_batch_size, size=config.size)["miou"])
    return out


def retrain_miou(dataset, config: ALConfig, ledger_path: str | Path, train_seed: int, *, seed_set_only: bool = False,
                 cycle: int | None = None, progress: bool = False) -> float:
    """:func:`retrain_mious` at one cycle: the seed set (``seed_set_only``), ``cycle``, or by default the
    ledger's last cycle of labels."""
    if seed_set_only:
        cycle = 0
    elif cycle is None:
        with Ledger(ledger_path) as led:
            cycle = max((int(r["cycle"]) for r in led.labels()), default=0)
    return retrain_mious(dataset, config, ledger_path, train_seed, [cycle], progress=progress)[int(cycle)]


def check_run_setting(ledger, name: str, value, flag: str) -> None:
    """Store an experiment-level setting (``--budget``, ``--frame-step``) in a ledger, or refuse a resume
    that changes it, naming the flag and both values."""
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


def open_learners(dataset, methods: list[str], seeds: list[int], budgets: list[float], out: Path, base: ALConfig,
                  frame_step: int = 1) -> list[tuple[str, int, object]]:
    """One :class:`~viewal.runs.learner.ActiveLearner` per seed × method, ledgers under ``out/ledgers``.

    Every ledger is opened and checked (config, pool, ``--budget``, ``--frame-step``) before any
    training starts, so a resume with a changed setting fails at once, naming it."""
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
            lr.close()
        raise
    return learners


def run_cycles(learner, method: str, seed: int, cycles: int, budgets: list[float], out: Path, pool_pixels: int,
               progress: bool = True) -> None:
    """Run (or resume) one learner's cycles 0..``cycles`` with the simulated oracle, each one
    :meth:`~viewal.runs.learner.ActiveLearner.run_cycle` with the run folder's checkpoints.

    The learner makes every step (open, label, close), as ``viewal loop`` does with people's answers. Resumable
    at any point: queries recorded once (a resumed cycle labels the pending rest), a checkpoint reused only when
    it was trained on exactly the ledger's labels with this recipe."""
    layout = RunLayout(out)  # cycle 0: same seed set and recipe, one model (RunLayout.seedset)
    bar = progress_bar(total=cycles + 1, initial=min(learner.cycle, cycles + 1), unit="cycle",
                       desc=f"{method} seed {seed}", disable=not progress)
    while (c := learner.cycle) <= cycles:
        budget = budget_pixels(budgets, c, pool_pixels) if c > 0 else None
        metrics = learner.run_cycle(budget, checkpoint=layout.checkpoint(method, learner.config, c),
                                    previous=layout.checkpoint(method, learner.config, c - 1) if c > 0 else None,
                                    progress=False)
        bar.update(1)
        bar.set_postfix(miou=f"{metrics['miou']:.3f}", labelled=f"{100 * metrics['labelled_fraction']:.1f}%")
    bar.close()


def check_ground_truth(dataset, splits: tuple[str, ...] = ("train", "test")) -> None:
    """Refuse a dataset whose ``splits`` have frames without labels, naming the first and counting them: a
    benchmark answers every query from the ground truth (the simulated oracle) and scores the test split.
    People's labels go through ``viewal loop`` instead."""
    for split in splits:
        frames = dataset.split(split) if split in dataset.splits else []
        missing = [f.key for f in frames if not f.has_labels]
        if missing:
            raise ValueError(f"{dataset.root}: frame {missing[0]} ({split} split) has no labels ({len(missing)} of "
                             f"{len(frames)} {split} frames): an experiment answers its queries from the ground "
                             f"truth and scores the test split with it; to have people label the queries, use "
                             f"'viewal loop'")


def run_experiment(dataset, methods: list[str], seeds: list[int], cycles: int, budget_pct: float | list[float],
                   out: Path, base, *, full_data: bool = True, progress: bool = True,
                   frame_step: int = 1) -> tuple[list[ResultRow], float | None]:
    """Run (or resume) every method × seed; returns the result rows and the full-data mIoU.

    ``frame_step`` is recorded in the ledgers (a resume with another one is refused); ``dataset`` must
    already be reduced to it."""
    check_ground_truth(dataset)
    out.mkdir(parents=True, exist_ok=True)
    for p in RunLayout(out).partial_checkpoints():  # saves killed before their rename
        p.unlink(missing_ok=True)
    rows: list[ResultRow] = []
    budgets = parse_budgets(",".join(map(str, budget_pct)) if isinstance(budget_pct, (list, tuple)) else budget_pct)
    learners = open_learners(dataset, methods, seeds, budgets, out, base, frame_step)
    try:
        pool_pixels = learners[0][2].pool_pixels
        for c in range(1, cycles + 1):  # a budget under one pixel is refused now, not after cycle 0's training
            if budget_pixels(budgets, c, pool_pixels) < 1:
                raise ValueError(f"--budget {budget_for_cycle(budgets, c):g} % of a pool of {pool_pixels} pixels is "
                                 f"less than one pixel (cycle {c})")
        for method, seed, learner in learners:
            run_cycles(learner, method, seed, cycles, budgets, out, pool_pixels, progress=progress)
            rows += [result_row(method, seed, r) for r in learner.results() if r["cycle"] <= cycles]
            learner.close()  # one method's model in memory at a time
    finally:
        for *_, learner in learners:
            learner.close()
    full = full_data_miou(dataset, base, out, progress=progress)["miou"] if full_data else None
    write_query_sheets(dataset, out, methods, seeds[0])  # contact sheet of the last cycle's queries (first seed)
    return rows, full
