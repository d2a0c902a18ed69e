"""What a method's picks were, seen by the model that picked them (docs/label_efficiency.md, "Why").

A benchmark says *whether* a selection helps; this says *what* it selected. For cycle k of a run, the model
of cycle k-1 chose the regions labelled in cycle k. Over the pool pixels, it compares the pixels picked in
cycle k with every pixel still unlabelled before it:

* **error enrichment**: the picking model's error rate on the picked pixels divided by its error rate on the
  unlabelled pool (1 = no better than chance at finding its own mistakes);
* **weak-class share**: the share of picked pixels whose true class is one of the picking model's weak
  classes (pool IoU below the median of the classes present), against the same share in the pool; mIoU is
  a mean over classes, so labels on weak classes are the ones that can raise it;
* **class diversity**: the effective number of classes (exp of the entropy) of the picked pixels' labels;
* the **gain**: test mIoU after cycle k minus after cycle k-1, from the ledger;
* optionally the **learnability** of the picks: the error of the model trained on them (cycle k's) on those
  very pixels, against its error on the pixels still unlabelled;
* the **class balance** of what a run has labelled by a cycle (:func:`class_balance`): each class's share of
  the labelled pixels next to its share of the pool and its test IoU, the trade an uncertainty method makes
  between the classes a model finds hard and the ones it finds easy.

Ground truth is used here for the measurement only, never by a scorer; frames without labels are left out of
every measurement (the numbers are those of the frames that have labels). The arithmetic is in small pure
functions on arrays (:func:`selection_counts`, :func:`summarise_counts`); :func:`diagnose_run` reads a run
folder (ledgers + checkpoints) and drives them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.config import ALConfig
from viewal.core.progress import progress_bar
from viewal.datasets import open_dataset
from viewal.datasets.base import IGNORE_INDEX, MissingLabelsError
from viewal.nn.metrics import label_class_counts
from viewal.nn.train import evaluate, iter_eval_predictions, load_checkpoint
from viewal.runs.layout import RunLayout
from viewal.runs.ledger import Ledger

__all__ = ["selection_counts", "summarise_counts", "predict_labels", "diagnose_cycle", "open_run_dataset",
           "diagnose_run", "class_histogram", "class_balance", "compare_models"]

COUNT_KEYS = ("picked", "picked_err", "pool", "pool_err")


def selection_counts(pred: np.ndarray, gt: np.ndarray, picked: np.ndarray, available: np.ndarray,
                     num_classes: int) -> dict[str, np.ndarray]:
    """Per-class pixel counts of one frame.

    Args:
        pred: (H, W) int predicted classes of the picking model.
        gt: (H, W) int true classes, ``IGNORE_INDEX`` (255) where unknown (skipped everywhere).
        picked: (H, W) bool pixels labelled in the cycle under study.
        available: (H, W) bool pixels still unlabelled before that cycle (the pool it picked from).
        num_classes: C.

    Returns:
        ``picked``, ``picked_err``, ``pool``, ``pool_err``: (C,) int64 counts by true class (of all picked /
        available pixels, and of those the model got wrong); ``confusion``: (C, C) int64 over the available
        pixels (rows = truth).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    picked, available = np.asarray(picked, bool), np.asarray(available, bool)
    shapes = {a.shape for a in (pred, gt, picked, available)}
    if len(shapes) != 1 or pred.ndim != 2:
        raise ValueError(f"selection_counts: pred, gt, picked, available must be (H, W) of one shape, got "
                         f"{[a.shape for a in (pred, gt, picked, available)]}")
    valid = gt != IGNORE_INDEX
    if (gt[valid] >= num_classes).any() or (gt[valid] < 0).any():
        raise ValueError(f"selection_counts: gt has classes outside 0..{num_classes - 1}")
    wrong = pred != gt
    p, a = picked & valid, available & valid

    def count(m: np.ndarray) -> np.ndarray:
        return np.bincount(gt[m].astype(np.int64), minlength=num_classes).astype(np.int64)

    conf = np.bincount(gt[a].astype(np.int64) * num_classes + np.clip(pred[a], 0, num_classes - 1).astype(np.int64),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return {"picked": count(p), "picked_err": count(p & wrong), "pool": count(a), "pool_err": count(a & wrong),
            "confusion": conf.astype(np.int64)}


def _rate(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def _effective_classes(hist: np.ndarray) -> float:
    """exp(entropy) of a class histogram: 1 = one class, C = all classes equally."""
    tot = hist.sum()
    if not tot:
        return float("nan")
    p = hist[hist > 0] / tot
    return float(np.exp(-(p * np.log(p)).sum()))


def summarise_counts(counts: dict[str, np.ndarray]) -> dict[str, float]:
    """The cycle's numbers from summed :func:`selection_counts` (module docstring).

    Weak classes: the classes present in the pool whose IoU (from ``confusion``) is below the median IoU of
    those classes."""
    conf = counts["confusion"]
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = counts["pool"] > 0
    iou = np.divide(tp, union, out=np.full(len(tp), np.nan), where=union > 0)
    weak = present & (iou < np.nanmedian(iou[present])) if present.any() else present
    picked, pool = counts["picked"].sum(), counts["pool"].sum()
    err_picked = _rate(counts["picked_err"].sum(), picked)
    err_pool = _rate(counts["pool_err"].sum(), pool)
    return {"picked_pixels": int(picked), "pool_pixels": int(pool),
            "error_picked": err_picked, "error_pool": err_pool, "error_enrichment": _rate(err_picked, err_pool),
            "weak_share_picked": _rate(counts["picked"][weak].sum(), picked),
            "weak_share_pool": _rate(counts["pool"][weak].sum(), pool),
            "classes_picked": _effective_classes(counts["picked"]),
            "classes_pool": _effective_classes(counts["pool"])}


def predict_labels(model, frames: Sequence, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode argmax of ``model`` on ``frames`` at their own resolution → (pred, gt), each (N, H, W) int64
    (:func:`viewal.nn.train.iter_eval_predictions`, the batches :func:`viewal.nn.train.evaluate` scores)."""
    pairs = list(iter_eval_predictions(model, list(frames), batch_size))
    return (np.concatenate([p for p, _ in pairs]).astype(np.int64),
            np.concatenate([g for _, g in pairs]).astype(np.int64))


def diagnose_cycle(model, ledger, pool: Sequence, cycle: int, num_classes: int, batch_size: int = 8,
                   after=None) -> dict[str, Any]:
    """:func:`summarise_counts` of ``cycle``'s picks; ``model`` is the one that picked them (cycle - 1's),
    ``ledger`` an open :class:`~viewal.runs.ledger.Ledger`, ``pool`` its pool frames (those without labels are left
    out: ``measured_frames`` counts the others; with none, the counts are 0 and the rates NaN). ``after``: the
    model trained on those picks (cycle's own); adds ``error_picked_after`` (its error on the pixels it was
    trained on: how learnable the picked labels were) and ``error_pool_after`` (on the pixels still unlabelled)."""
    if cycle < 1:
        raise ValueError(f"diagnose_cycle: cycle must be >= 1 (cycle 0 is the seed set), got {cycle}")
    pool = [f for f in pool if f.has_labels]
    zeros = np.zeros(num_classes, np.int64)
    total: dict[str, np.ndarray] = {**{k: zeros for k in COUNT_KEYS},
                                    "confusion": np.zeros((num_classes, num_classes), np.int64)}
    err_after = np.zeros(3, np.int64)  # ``after``'s errors on the picked, on the still unlabelled; their count
    pred = gt = pred_after = None
    if pool:
        pred, gt = predict_labels(model, pool, batch_size)
        pred_after = predict_labels(after, pool, batch_size)[0] if after is not None else None
    shape = gt.shape[1:] if gt is not None else None
    for i, f in enumerate(pool):
        key = f"{f.scene_id}/{f.frame_id}"
        before = ledger.label_map(key, shape, max_cycle=cycle - 1) != IGNORE_INDEX
        upto = ledger.label_map(key, shape, max_cycle=cycle) != IGNORE_INDEX
        c = selection_counts(pred[i], gt[i], upto & ~before, ~before, num_classes)
        total = {k: total[k] + c[k] for k in total}
        if pred_after is not None:
            a = selection_counts(pred_after[i], gt[i], upto & ~before, ~upto, num_classes)
            err_after += (a["picked_err"].sum(), a["pool_err"].sum(), a["pool"].sum())
    out = summarise_counts(total)
    out["measured_frames"] = len(pool)
    if after is not None:
        out.update(error_picked_after=_rate(err_after[0], out["picked_pixels"]),
                   error_pool_after=_rate(err_after[1], err_after[2]))
    rows = ledger.labels(cycle)
    out.update(regions=len(rows), frames=len({(r["scene_id"], r["frame_id"]) for r in rows}))
    return out


def open_run_dataset(run_dir: str | Path, method: str, seed: int, data: str | Path | None = None):
    """The dataset as ``viewal experiment`` opened it for a ledger of ``run_dir``: its path (or ``data``), working
    size and ``--frame-step``, all read from the ledger."""
    path = RunLayout(Path(run_dir)).ledger(method, seed)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger {path}")
    with Ledger(path) as led:
        cfg = led.config()
        step = int((led.meta("experiment") or {}).get("frame_step", 1))
    data = data or cfg.get("dataset")
    if not data:
        raise ValueError(f"{path}: no dataset path in the ledger config; pass the data folder")
    size = (cfg.get("al") or {}).get("size")
    return open_dataset(data, **({"height": size[0], "width": size[1]} if size else {})).every(step)


def diagnose_run(run_dir: str | Path, dataset, methods: Sequence[str], seeds: Sequence[int], cycles: Sequence[int],
                 *, batch_size: int = 8, learnability: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """One row per method × seed × cycle of a ``viewal experiment`` folder: :func:`diagnose_cycle` plus the
    cycle's test-mIoU gain. ``dataset`` must be opened as the run opened it (size, frame step).
    ``learnability``: also the cycle's own model on its picks (``diagnose_cycle``'s ``after``)."""
    import torch

    layout = RunLayout(Path(run_dir))
    pool = dataset.split("train")
    jobs = [(m, s, c) for m in methods for s in seeds for c in cycles]
    rows = []
    for method, seed, cycle in progress_bar(jobs, desc="diagnose", unit="cycle", disable=not progress):
        path = layout.ledger(method, seed)
        if not path.is_file():
            raise FileNotFoundError(f"no ledger {path} (ledgers in {layout.ledgers}: "
                                    f"{layout.ledger_names() or 'none'})")
        with Ledger(path) as led:
            al = led.config().get("al") or {}
            cfg = ALConfig.from_json({**al, "seed": int(seed)})
            results = {int(r["cycle"]): r for r in led.results()}
            if cycle not in results or cycle - 1 not in results:
                raise ValueError(f"{path}: cycle {cycle} or {cycle - 1} has no result yet (cycles done: "
                                 f"{sorted(results)})")
            ckpt = layout.checkpoint(method, cfg, cycle - 1)
            model = load_checkpoint(ckpt, num_classes=dataset.num_classes)
            after = load_checkpoint(layout.checkpoint(method, cfg, cycle), num_classes=dataset.num_classes) \
                if learnability else None
            torch.manual_seed(0)
            row = diagnose_cycle(model, led, pool, cycle, dataset.num_classes, batch_size, after=after)
        miou = {c: float(r["miou"]) for c, r in results.items()}
        rows.append({"method": method, "seed": int(seed), "cycle": int(cycle), "picked_by": ckpt.name,
                     "miou_before": miou[cycle - 1], "miou_after": miou[cycle],
                     "gain": miou[cycle] - miou[cycle - 1], **row})
    return rows


def class_histogram(label_maps, num_classes: int) -> np.ndarray:
    """(num_classes,) int64 pixel count per class over (H, W) label maps (``IGNORE_INDEX`` skipped); a class
    outside 0..num_classes-1 is refused (:func:`viewal.nn.metrics.label_class_counts`)."""
    return label_class_counts(label_maps, num_classes)


def class_balance(run_dir: str | Path, dataset, methods: Sequence[str], seeds: Sequence[int], cycle: int,
                  *, progress: bool = True) -> dict[str, Any]:
    """What each method had labelled by ``cycle`` (its seed set included), per class, mean over ``seeds``:
    ``{"classes": names, "pool": (C,) share of the pool's pixels, method: {"share": (C,) share of the
    labelled pixels, "iou": (C,) test IoU after the cycle's fit}}``; shares sum to 1. Trains nothing;
    ground truth is read for the pool share only."""
    layout = RunLayout(Path(run_dir))
    shape, c = (dataset.height, dataset.width), dataset.num_classes
    pool = class_histogram((f.labels for f in dataset.split("train") if f.has_labels), c)
    out: dict[str, Any] = {"classes": list(dataset.class_names), "cycle": int(cycle),
                           "pool": (pool / max(1, pool.sum())).tolist()}
    for method in progress_bar(list(methods), desc="class balance", unit="method", disable=not progress):
        shares, ious = [], []
        for seed in seeds:
            path = layout.ledger(method, seed)
            if not path.is_file():
                raise FileNotFoundError(f"no ledger {path}")
            with Ledger(path) as led:
                results = {int(r["cycle"]): r for r in led.results()}
                if cycle not in results:
                    raise ValueError(f"{path}: cycle {cycle} has no result yet (cycles done: {sorted(results)})")
                hist = class_histogram((led.label_map(k, shape, max_cycle=cycle) for k in led.labelled_frames()), c)
            shares.append(hist / max(1, hist.sum()))
            if "per_class_iou" not in results[cycle]:
                raise ValueError(f"{path}: cycle {cycle}'s result has no per_class_iou (a ledger older than it)")
            ious.append(np.asarray(results[cycle]["per_class_iou"], dtype=float))
        out[method] = {"share": np.mean(shares, 0).tolist(), "iou": np.nanmean(ious, 0).tolist()}
    return out


def compare_models(models: dict, frames: Sequence, num_classes: int, batch_size: int = 8) -> dict[str, Any]:
    """Class by class, what each of several models predicts on labelled ``frames`` (e.g. a fit and the same
    fit after a training aid): ``{"truth": (C,) share of the frames' labelled pixels per class, name: {"miou":
    float, "iou": (C,) test IoU (NaN: class absent from truth and prediction), "predicted": (C,) share of
    those pixels predicted as each class}}`` (:func:`viewal.nn.train.evaluate`, eval mode). A model that drifts
    toward the classes it is sure of shows a ``predicted`` share above ``truth`` there and falling IoU
    elsewhere. Frames without labels are left out; with none left, :class:`viewal.datasets.MissingLabelsError`."""
    if not models:
        raise ValueError("compare_models: no models given")
    given = list(frames)
    frames = [f for f in given if isinstance(f, tuple) or f.has_labels]
    if not frames:
        first = f" (e.g. {given[0].key})" if given else ""
        raise MissingLabelsError(f"compare_models: none of the {len(given)} frames has labels{first}; comparing "
                                 "models class by class needs ground truth")
    out: dict[str, Any] = {}
    for name, model in models.items():
        m = evaluate(model, list(frames), num_classes, batch_size=batch_size)
        conf = m["confusion"].astype(np.float64)
        total = conf.sum()
        if total == 0:
            raise ValueError("compare_models: the frames carry no labelled pixels")
        out.setdefault("truth", conf.sum(1) / total)
        out[name] = {"miou": float(m["miou"]), "iou": m["per_class_iou"], "predicted": conf.sum(0) / total}
    return out
