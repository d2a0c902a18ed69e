"""The labelling loop with people: unlabelled RGB-D in, one cycle at a time, labels from a team.

A loop run is a run folder (:class:`~viewal.runs.layout.RunLayout`) holding one ledger, its checkpoints and
``loop.json`` (the method, seed, dataset and how it is read). Each step is a call of the learner's own cycle
(:meth:`~viewal.runs.learner.ActiveLearner.close_cycle`, :meth:`~viewal.runs.learner.ActiveLearner.open_cycle`), the
same calls ``viewal experiment`` makes with the simulated oracle, so a team's run and a simulated one with
the same answers end with the same ledger.

>>> queries = start_run("scans/", "runs/team", config, method="view_entropy", budgets=[4.0])  # doctest: +SKIP
>>> # people label the seed set's frames; their labels are imported (viewal query import)
>>> queries = advance("runs/team")   # fit on them, score the pool, record the next queries   # doctest: +SKIP

The command line is ``viewal loop start|next|status`` (:mod:`viewal.cli.loop`), with ``viewal query import``
and ``viewal report``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from viewal.core.io import write_json
from viewal.datasets import open_dataset
from viewal.datasets.check import check_frames
from viewal.labelling.formats import annotator_batches
from viewal.labelling.hitl import export_queries
from viewal.runs.experiment import budget_pixels, check_run_setting, method_config, parse_budgets
from viewal.runs.layout import RunLayout
from viewal.runs.learner import ActiveLearner, ALConfig
from viewal.runs.ledger import Ledger, LedgerError

__all__ = ["LOOP_FILE", "PendingQueriesError", "start_run", "advance", "open_learner", "run_ledger_path",
           "read_loop", "load_query_model", "cycle_progress", "export_for_people", "default_export_dir"]

LOOP_FILE = "loop.json"


class PendingQueriesError(ValueError):
    """The current cycle still has unanswered queries (``advance(force=True)`` closes it anyway)."""


def read_loop(run: str | Path) -> dict:
    """The run's ``loop.json`` (method, seed, dataset, format, frame step); errors name the folder."""
    path = Path(run) / LOOP_FILE
    if not path.is_file():
        hint = " (an experiment folder: its ledgers are under ledgers/)" if (Path(run) / "ledgers").is_dir() else ""
        raise FileNotFoundError(f"{run}: not a loop run, no {LOOP_FILE}{hint}; start one with 'viewal loop start'")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    missing = [k for k in ("method", "seed", "data") if k not in doc]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)}")
    return doc


def run_ledger_path(run: str | Path) -> Path:
    """The SQLite ledger of a loop run."""
    doc = read_loop(run)
    return RunLayout(Path(run)).ledger(doc["method"], int(doc["seed"]))


def _open_dataset(doc: dict, run: Path):
    data = Path(doc["data"])
    if not data.is_dir():
        raise FileNotFoundError(f"{Path(run) / LOOP_FILE}: the run's dataset {data} does not exist (moved?)")
    size = doc.get("size")
    kw = {"height": int(size[0]), "width": int(size[1])} if size else {}
    return open_dataset(data, format=doc.get("format", "auto"), **kw).every(int(doc.get("frame_step", 1)))


def open_learner(run: str | Path, *, dataset: Any = None, probabilities: str | Path | None = None, **overrides):
    """The :class:`~viewal.runs.learner.ActiveLearner` of a loop run: its dataset, ledger and stored config.

    ``probabilities``: a run scored from probability files (``viewal.nn.predictor.FilePredictor``) reads this
    folder instead of the one stored with it (a model retrained elsewhere since). ``overrides``: settings of how
    the run executes (``num_threads``, ``device``, ``infer_batch_size``); a setting of what the run is cannot
    change (the ledger refuses it, naming it)."""
    run = Path(run)
    doc = read_loop(run)
    path = run_ledger_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"{run}: the run's ledger {path} is missing")
    ds = dataset if dataset is not None else _open_dataset(doc, run)
    led = Ledger(path)
    try:
        cfg = ALConfig.from_json(led.config()["al"])
        if overrides:
            cfg = replace(cfg, **overrides)
        probs = probabilities if probabilities is not None else doc.get("probabilities")
        return ActiveLearner(ds, ledger=led, config=cfg, probabilities=probs)
    except BaseException:
        led.close()
        raise


def _budget_pixels(learner, cycle: int) -> int:
    budgets = (learner.ledger.meta("experiment") or {}).get("budget")
    if not budgets:
        raise ValueError(f"{learner.ledger.path}: no --budget stored with the run")
    return max(1, budget_pixels(budgets, cycle, learner.pool_pixels))


def start_run(data: str | Path, run: str | Path, config: ALConfig, *, method: str = "view_entropy",
              budgets: Sequence[float] = (4.0,), data_format: str = "auto", frame_step: int = 1,
              probabilities: str | Path | None = None, progress: bool = True) -> list:
    """Start a loop run in folder ``run`` on the dataset ``data`` (its frames need no labels).

    ``config``: the run's base :class:`~viewal.core.config.ALConfig` (its ``seed`` is the run's; ``method`` a
    method spec of ``viewal experiment``, e.g. ``view_entropy:random_share=0.5``); ``budgets``: %% of the pool's
    pixels asked per cycle (the last repeats). The settings are stored in the ledger as ``viewal experiment``
    stores them. Returns the pending queries of cycle 0: the seed set's whole frames (``seed_set="ask"``), or
    none when the seed set is the frames the dataset already labels (``"labels"``). ``probabilities``: a folder of
    probability files of a network of yours (``docs/own_model.md``), which then scores the pool instead of
    viewal's DeepLabv3+ (never trained here: give each cycle's new files to :func:`advance`). Starting again with the
    same settings returns the same queries; with other settings it is refused, naming them."""
    run = Path(run)
    if not Path(data).is_dir():
        raise FileNotFoundError(f"--data {data}: no such dataset folder")
    budgets = parse_budgets(",".join(str(b) for b in budgets))
    cfg = method_config(config, method, config.seed)
    doc = {"method": method, "seed": int(cfg.seed), "data": str(Path(data).resolve()), "format": data_format,
           "frame_step": int(frame_step), "size": None if cfg.size is None else list(cfg.size)}
    if probabilities is not None:
        doc["probabilities"] = str(Path(probabilities).resolve())
    if (run / LOOP_FILE).is_file():
        old = read_loop(run)
        if {k: old.get(k) for k in doc} != doc:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {doc[k]!r}" for k in doc if old.get(k) != doc[k])
            raise LedgerError(f"{run}: holds a loop run started with other settings ({diff}); continue it with "
                              f"'viewal loop next --run {run}', or start a new run in another folder")
    ds = _open_dataset(doc, run)
    layout = RunLayout(run)
    check_frames([f for s in ("train", "val", "test") if s in ds.splits for f in ds.split(s)],
                 cache=layout.frame_check, progress=progress)
    layout.ledgers.mkdir(parents=True, exist_ok=True)
    led = Ledger(layout.ledger(method, cfg.seed))
    try:
        check_run_setting(led, "budget", budgets, "--budget")
        check_run_setting(led, "frame_step", int(frame_step), "--frame-step")
        ActiveLearner(ds, ledger=led, config=cfg, probabilities=probabilities)  # stores the config, the seed set
        write_json(run / LOOP_FILE, doc)  # last: a start killed before it is started again
        return led.pending_queries(0)
    finally:
        led.close()


def advance(run: str | Path, *, force: bool = False, progress: bool = True, learner=None,
            probabilities: str | Path | None = None) -> list:
    """One step of the loop: close the current cycle and open the next; returns the new pending queries.

    Closing trains on every label so far (warm start as configured; the cycle's checkpoint is reused when it
    was trained on exactly these labels), evaluates (:meth:`~viewal.runs.learner.ActiveLearner.evaluate`: an mIoU
    only with labelled test frames) and records the metrics; opening scores the pool, selects the cycle's
    budget and records the queries as pending. Refused with :class:`PendingQueriesError` while the current
    cycle has unanswered queries, unless ``force`` (the cycle closes with what was answered; a late answer
    is still accepted). A step killed at any point is resumed by calling it again, to the same selection.
    ``probabilities``: a run scored from probability files reads this folder from now on (stored with the run)."""
    run = Path(run)
    own = learner is None
    learner = open_learner(run, probabilities=probabilities) if own else learner
    if probabilities is not None:
        doc = read_loop(run)
        if "probabilities" not in doc:
            raise ValueError(f"{run}: scores with viewal's own network, not probability files; --probabilities "
                             f"belongs to runs started with it")
        write_json(run / LOOP_FILE, {**doc, "probabilities": str(Path(probabilities).resolve())})
    try:
        doc = read_loop(run)
        layout = RunLayout(run)
        method, led = doc["method"], learner.ledger
        c = led.cycle()
        ckpt = lambda k: layout.checkpoint(method, learner.config, k)  # noqa: E731
        if c > 0 and not led.queries(c) and not led.labels(c):
            # the previous step closed cycle c - 1 and was stopped before it recorded cycle c's queries
            return learner.open_cycle(_budget_pixels(learner, c), ckpt(c - 1), progress=progress)
        pending = led.pending_queries(c)
        if pending and not force:
            total = len(led.queries(c))
            raise PendingQueriesError(
                f"{led.path}: cycle {c} has {len(pending)} of {total} queries still unanswered; import their "
                f"labels (viewal query import ... --run {run}), or pass --force to close the cycle with the "
                f"{total - len(pending)} answered")
        learner.close_cycle(ckpt(c), ckpt(c - 1) if c > 0 else None, progress=progress)
        return learner.open_cycle(_budget_pixels(learner, c + 1), ckpt(c), progress=progress)
    finally:
        if own:
            learner.close()


def load_query_model(learner, cycle: int, run: str | Path | None = None):
    """The model that chose ``cycle``'s queries (the checkpoint of cycle ``cycle - 1``), loaded into
    ``learner``; None for cycle 0 (the seed set, chosen without a model) or when the checkpoint is missing."""
    if int(cycle) <= 0:
        return None
    run = Path(run) if run is not None else learner.ledger.path.parent.parent
    path = RunLayout(run).checkpoint(read_loop(run)["method"], learner.config, int(cycle) - 1)
    if not path.is_file():
        return None
    learner.load_model(path)
    return learner.model


def cycle_progress(ledger) -> list[dict]:
    """Per cycle of a ledger: ``{"cycle", "queries", "answered", "pending", "labels", "labelled_pixels",
    "miou", "closed"}`` (``miou`` None when the cycle is open or was evaluated without labelled test frames)."""
    qcycle = {q.query_id: q.cycle for q in ledger.queries()}
    queries: dict[int, int] = {}
    for c in qcycle.values():
        queries[c] = queries.get(c, 0) + 1
    answered: dict[int, set] = {}
    labels: dict[int, int] = {}
    pixels: dict[int, int] = {}
    for r in ledger.labels():
        labels[r["cycle"]] = labels.get(r["cycle"], 0) + 1
        pixels[r["cycle"]] = pixels.get(r["cycle"], 0) + int(r["n_pixels"])
        if r["query_id"] is not None:
            answered.setdefault(qcycle.get(r["query_id"], r["cycle"]), set()).add(r["query_id"])
    results = {int(r["cycle"]): r for r in ledger.results()}
    out = []
    for c in range(ledger.cycle() + 1):
        n, a = queries.get(c, 0), len(answered.get(c, ()))
        res = results.get(c, {})
        out.append({"cycle": c, "queries": n, "answered": a, "pending": n - a, "labels": labels.get(c, 0),
                    "labelled_pixels": pixels.get(c, 0), "miou": res.get("miou"), "closed": c in results})
    return out


def default_export_dir(run: str | Path, cycle: int) -> Path:
    """Where ``viewal loop`` writes a cycle's queries for people: ``RUN/queries/cycle-<N>``."""
    return Path(run) / "queries" / f"cycle-{int(cycle)}"


def export_for_people(queries: Sequence, out: str | Path, *, dataset: Any = None, format: str = "png",
                      annotators: int = 1, previews: bool = True, image_url: str | None = None,
                      num_classes: int | None = None, class_names: Sequence[str] | None = None) -> list[Path]:
    """Write ``queries`` for a labelling team (:func:`viewal.labelling.hitl.export_queries`): one export in ``out``, or
    ``annotators`` disjoint batches (round-robin by rank) in ``out/annotator-<k>``. Returns the written
    ``queries.json`` paths (one per non-empty batch)."""
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise ValueError(f"--annotators must be an integer >= 1, got {annotators!r}")
    if image_url and format != "label-studio":
        raise ValueError("--image-url applies to --format label-studio only")
    kw = dict(dataset=dataset, previews=previews, num_classes=num_classes, class_names=class_names, format=format)
    if image_url:
        kw["image_url"] = image_url
    if annotators == 1:
        return [export_queries(list(queries), out, **kw)]
    paths = []
    for k, idx in enumerate(annotator_batches(len(queries), annotators), 1):
        if len(idx):
            paths.append(export_queries([queries[i] for i in idx], Path(out) / f"annotator-{k}", ranks=idx,
                                        annotator=f"{k} of {annotators}", **kw))
    return paths
