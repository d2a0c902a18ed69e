"""Pseudo-labels for unlabelled pixels: confidence-only, class-wise thresholds, and UPS.

Class-wise thresholds after Kim and Lee, UPS after Rizve et al. (docs/methods.md §5 "Pseudo-labels"). Every rule
is a pure function on probability maps that returns a label map (255 = no pseudo-label) and, for UPS, a
negative-label mask:

* :func:`confidence_pseudo_labels` — one threshold for every class (the comparison; also what CEAL's
  tightening threshold uses, see :func:`ceal_threshold`).
* :func:`classwise_pseudo_labels` — a threshold per class (Kim and Lee): for class c, the ``quantile``
  of the confidence max_k p_k over the pixels whose argmax is c, clipped to ``[min_threshold,
  max_threshold]`` (:func:`classwise_thresholds`). Frequent, easy classes therefore get high thresholds
  and rare, hard classes lower ones — the point of class-wise confidence.
* :func:`ups_pseudo_labels` — UPS (Rizve et al., ICLR 2021): pixel x gets the positive label c if
  p_c ≥ τ_p and its MC-dropout std u_c ≤ κ_p (c = argmax; when several classes qualify the most
  probable wins); x gets a *negative* label for every class c with p_c ≤ τ_n and u_c ≤ κ_n ("c is
  absent"). Negatives train with −log(1 − p_c) (:func:`negative_label_loss`).

:func:`pseudo_label_precision` measures them against ground truth (for reports only — ground truth never
enters the rules; pool frames without labels are left out of the measurement, and the training never needs
them). :func:`negative_loss_hook` turns the negative loss into a ``viewal.nn.train.fit``
``extra_loss`` (batches carry the mask under ``"negative"``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewal.core.config import PSEUDO_LABELS as MODES
from viewal.nn.data import as_items
from viewal.nn.heads import combine_extra_losses
from viewal.nn.model import iter_predict_frames
from viewal.nn.train import FitState, TrainConfig, fit

__all__ = [
    "IGNORE", "confidence_pseudo_labels", "classwise_thresholds", "classwise_pseudo_labels",
    "ups_pseudo_labels", "pseudo_labels", "negative_label_loss", "negative_loss_hook",
    "pseudo_label_precision", "negative_label_precision", "ceal_threshold", "MODES", "thresholds_from_confidence",
    "pseudo_label_items", "train_with_pseudo_labels", "pseudo_label_finetune", "finetune_epochs_for",
]

IGNORE = 255


def _check_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim not in (3, 4):
        raise ValueError(f"{name} must be (C, H, W) or (N, C, H, W), got shape {probs.shape}")
    return probs


def _channel_axis(probs: np.ndarray) -> int:
    return probs.ndim - 3


def confidence_pseudo_labels(probs: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Confidence-only pseudo-labels: argmax where max_c p_c ≥ ``threshold``, else 255.

    Args:
        probs: (C, H, W) or (N, C, H, W) class probabilities.
        threshold: one threshold for all classes.
    Returns:
        (H, W) or (N, H, W) uint8 labels (255 = no pseudo-label).
    """
    probs = _check_probs(probs)
    ax = _channel_axis(probs)
    conf = probs.max(axis=ax)
    lab = probs.argmax(axis=ax).astype(np.uint8)
    return np.where(conf >= threshold, lab, IGNORE).astype(np.uint8)


def classwise_thresholds(probs: np.ndarray, quantile: float = 0.5, min_threshold: float = 0.5,
                         max_threshold: float = 0.95) -> np.ndarray:
    """Per-class confidence thresholds (Kim and Lee's class-wise confidence).

    t_c = clip(quantile_q{ max_k p_k(x) : argmax_k p_k(x) = c }, min_threshold, max_threshold); a class that
    is the argmax nowhere gets ``max_threshold``.

    Args:
        probs: (C, H, W) or (N, C, H, W) class probabilities (typically the whole unlabelled pool).
        quantile: q in [0, 1]; 0.5 keeps about half of each class's predicted pixels (before clipping).
    Returns:
        (C,) float64 thresholds.
    """
    probs = _check_probs(probs)
    ax = _channel_axis(probs)
    return thresholds_from_confidence(probs.max(axis=ax), probs.argmax(axis=ax), probs.shape[ax], quantile,
                                      min_threshold, max_threshold)


def thresholds_from_confidence(conf: np.ndarray, pred: np.ndarray, num_classes: int, quantile: float = 0.5,
                               min_threshold: float = 0.5, max_threshold: float = 0.95) -> np.ndarray:
    """:func:`classwise_thresholds` from confidence maps ``conf`` and argmax maps ``pred`` of any equal shape."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    conf = np.asarray(conf).ravel()
    lab = np.asarray(pred).ravel()
    out = np.full(int(num_classes), float(max_threshold))
    for c in range(int(num_classes)):
        sel = conf[lab == c]
        if sel.size:
            out[c] = float(np.quantile(sel, quantile))
    return np.clip(out, min_threshold, max_threshold)


def classwise_pseudo_labels(probs: np.ndarray, thresholds: np.ndarray | None = None, quantile: float = 0.5,
                            min_threshold: float = 0.5, max_threshold: float = 0.95) -> np.ndarray:
    """Class-wise pseudo-labels: argmax c where max_k p_k ≥ t_c, else 255.

    Args:
        probs: (C, H, W) or (N, C, H, W).
        thresholds: (C,) per-class thresholds; default :func:`classwise_thresholds` of ``probs``.
    Returns:
        (H, W) or (N, H, W) uint8 labels.
    """
    probs = _check_probs(probs)
    ax = _channel_axis(probs)
    C = probs.shape[ax]
    if thresholds is None:
        thresholds = classwise_thresholds(probs, quantile, min_threshold, max_threshold)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (C,):
        raise ValueError(f"thresholds must have shape ({C},), got {thresholds.shape}")
    conf = probs.max(axis=ax)
    lab = probs.argmax(axis=ax)
    return np.where(conf >= thresholds[lab], lab, IGNORE).astype(np.uint8)


def ups_pseudo_labels(probs: np.ndarray, std: np.ndarray, tau_p: float = 0.7, kappa_p: float = 0.05,
                      tau_n: float = 0.05, kappa_n: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """UPS positive and negative pseudo-labels.

    positive(x) = c* = argmax_c p_c(x) if p_c*(x) ≥ τ_p and u_c*(x) ≤ κ_p, else 255;
    negative(c, x) = p_c(x) ≤ τ_n and u_c(x) ≤ κ_n. Defaults are UPS's (CIFAR) values.

    Args:
        probs: (C, H, W) or (N, C, H, W) mean MC-dropout probabilities.
        std: same shape, per-class std of the probabilities over the MC passes.
    Returns:
        labels: (H, W) / (N, H, W) uint8 (255 = no positive label);
        negative: same shape as ``probs``, bool.
    """
    probs = _check_probs(probs)
    std = np.asarray(std)
    if std.shape != probs.shape:
        raise ValueError(f"std must have the shape of probs {probs.shape}, got {std.shape}")
    ax = _channel_axis(probs)
    lab = probs.argmax(axis=ax)
    p_top = np.take_along_axis(probs, np.expand_dims(lab, ax), axis=ax).squeeze(ax)
    u_top = np.take_along_axis(std, np.expand_dims(lab, ax), axis=ax).squeeze(ax)
    pos = (p_top >= tau_p) & (u_top <= kappa_p)
    labels = np.where(pos, lab, IGNORE).astype(np.uint8)
    negative = (probs <= tau_n) & (std <= kappa_n)
    return labels, negative


def pseudo_labels(mode: str, probs: np.ndarray, std: np.ndarray | None = None, **options
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Dispatch by ``mode`` in :data:`MODES` (``"none"`` gives no labels).

    Args:
        probs: (N, C, H, W) mean probabilities; std: (N, C, H, W) MC std (``ups`` only).
        options: ``threshold`` (confidence); ``quantile``, ``min_threshold``, ``max_threshold``
            (classwise); ``tau_p``, ``kappa_p``, ``tau_n``, ``kappa_n`` (ups).
    Returns:
        (labels (N, H, W) uint8, negative (N, C, H, W) bool or None).
    """
    probs = _check_probs(probs)
    if mode == "none":
        shape = probs.shape[:-3] + probs.shape[-2:]
        return np.full(shape, IGNORE, np.uint8), None
    if mode == "confidence":
        return confidence_pseudo_labels(probs, **options), None
    if mode == "classwise":
        return classwise_pseudo_labels(probs, **options), None
    if mode == "ups":
        if std is None:
            raise ValueError("pseudo-label mode 'ups' needs std (MC-dropout std of the probabilities)")
        return ups_pseudo_labels(probs, std, **options)
    raise ValueError(f"unknown pseudo-label mode {mode!r}; available: {', '.join(MODES)}")


def negative_label_loss(logits, negative, eps: float = 1e-6):
    """UPS negative-label loss: mean over negative entries of −log(1 − p_c).

    Computed stably from log-softmax: log(1 − p_c) = log1mexp(log p_c); p_c = 1 is clamped at 1 − eps.

    Args:
        logits: (B, C, H, W) torch tensor.
        negative: (B, C, H, W) bool tensor (True = "class c is absent at this pixel").
    Returns:
        scalar tensor (0 when there is no negative entry, still connected to ``logits``).
    """
    import torch

    if logits.shape != negative.shape:
        raise ValueError(f"negative mask shape {tuple(negative.shape)} != logits shape {tuple(logits.shape)}")
    neg = negative.to(torch.bool)
    n = int(neg.sum())
    if n == 0:
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits, dim=1)[neg]  # (n,) log p_c at the negative entries
    # log(1 - exp(x)) for x = log p_c <= 0, stable on both sides of -log 2 ("log1mexp")
    # (each branch gets inputs clamped to its own side so that no inf/NaN leaks into the gradient)
    ln2 = 0.6931471805599453
    lo = torch.log1p(-torch.exp(logp.clamp(max=-ln2)))
    hi = torch.log((-torch.expm1(logp.clamp(min=-ln2))).clamp(min=eps))
    log1mp = torch.where(logp < -ln2, lo, hi)
    return -log1mp.sum() / n


def negative_loss_hook(weight: float = 1.0, key: str = "negative") -> Callable:
    """A ``viewal.nn.train.fit`` ``extra_loss`` adding ``weight`` · :func:`negative_label_loss`.

    Batches without ``key`` contribute zero. ``batch[key]``: (B, C, H, W) bool.
    """

    def extra_loss(model, batch, logits, features):
        neg = batch.get(key) if isinstance(batch, dict) else None
        if neg is None:
            return logits.sum() * 0.0
        return weight * negative_label_loss(logits, neg.to(logits.device))

    return extra_loss


def pseudo_label_precision(pseudo: np.ndarray, gt: np.ndarray, num_classes: int | None = None) -> dict:
    """Precision of positive pseudo-labels against ground truth (reporting only).

    Args:
        pseudo: (..., H, W) labels, 255 = none.  gt: same shape, 255 = unknown.
    Returns:
        dict with ``precision`` (correct / pseudo-labelled pixels with known gt; NaN if none),
        ``coverage`` (pseudo-labelled / pixels with known gt), ``n_labelled``, ``n_correct``, and
        ``per_class`` (list of precision per predicted class, NaN where unused) when ``num_classes``.
    """
    pseudo = np.asarray(pseudo)
    gt = np.asarray(gt)
    if pseudo.shape != gt.shape:
        raise ValueError(f"pseudo {pseudo.shape} and gt {gt.shape} differ in shape")
    known = gt != IGNORE
    lab = (pseudo != IGNORE) & known
    n_lab = int(lab.sum())
    n_ok = int((lab & (pseudo == gt)).sum())
    out = {
        "precision": n_ok / n_lab if n_lab else float("nan"),
        "coverage": n_lab / int(known.sum()) if known.any() else float("nan"),
        "n_labelled": n_lab,
        "n_correct": n_ok,
    }
    if num_classes is not None:
        per = []
        for c in range(num_classes):
            m = lab & (pseudo == c)
            per.append(float((m & (gt == c)).sum() / m.sum()) if m.any() else float("nan"))
        out["per_class"] = per
    return out


def negative_label_precision(negative: np.ndarray, gt: np.ndarray) -> dict:
    """Precision of negative labels: fraction of (c, x) marked absent where gt(x) ≠ c.

    Args:
        negative: (N, C, H, W) or (C, H, W) bool.  gt: (N, H, W) or (H, W), 255 = unknown.
    Returns:
        dict with ``precision`` (NaN if no negative on a known pixel) and ``n_negative``.
    """
    negative = np.asarray(negative, dtype=bool)
    gt = np.asarray(gt)
    ax = negative.ndim - 3
    C = negative.shape[ax]
    known = np.expand_dims(gt != IGNORE, ax)
    cls = np.arange(C).reshape((C, 1, 1))
    wrong = np.expand_dims(gt, ax) == cls
    m = negative & known
    n = int(m.sum())
    return {"precision": float((m & ~wrong).sum() / n) if n else float("nan"), "n_negative": n}


def ceal_threshold(cycle: int, start: float = 0.9, step: float = 0.02, cap: float = 0.99) -> float:
    """CEAL-style tightening confidence threshold: ``min(cap, start + step · cycle)``.

    Use with :func:`confidence_pseudo_labels` (CEAL lowers an entropy threshold each cycle; on confidence
    that is a rising threshold).
    """
    if cycle < 0:
        raise ValueError(f"cycle must be ≥ 0, got {cycle}")
    return float(min(cap, start + step * cycle))


def pseudo_label_items(model, frames, mode: str, *, labels=None, mc_passes: int = 20, batch_size: int = 4,
                       device: str = "cpu", size=None, with_precision: bool = False, keep_empty: bool = False,
                       seed: int = 0, progress: bool = False, **options) -> tuple[list[tuple], dict]:
    """Pseudo-labelled training items for ``viewal.nn.train.fit`` from the model's MC-dropout predictions.

    Args:
        model: ``viewal.nn.model.SegModel``.
        frames: (N,) unlabelled-pool frames.
        mode: one of :data:`MODES` (``"none"`` returns no items).
        labels: optional (N,) label maps (H, W) already known for these frames (oracle answers, 255 elsewhere);
            they take precedence over pseudo-labels.
        mc_passes: MC-dropout passes (UPS's std comes from them).
        size: working (H, W) for the network (``viewal.nn.model.iter_predict_frames``).
        with_precision: measure precision against ``frame.labels`` (reports only): on the frames that have
            labels; frames without are skipped, and with none the precision keys are absent.
        keep_empty: keep frames that got no pseudo-label and no negative.
        options: rule settings (see :func:`pseudo_labels`).
    Returns:
        (items, stats): items ``(frame, label_map (H, W) int64, extras)`` with ``extras["negative"]``
        (C, H, W) bool for ``ups``; stats: ``mode``, ``frames``, ``pixels``, ``n_labelled``, ``coverage``
        (pseudo-labelled / all pixels of the frames), ``thresholds`` (classwise), and with
        ``with_precision``: ``precision_frames`` (frames measured), and when it is not 0 ``precision``,
        ``n_correct``, ``negative_precision`` (ups).
    """
    if mode not in MODES:
        raise ValueError(f"unknown pseudo-label mode {mode!r}; available: {', '.join(MODES)}")
    frames = list(frames)
    stats: dict = {"mode": mode, "frames": len(frames)}
    if mode == "none" or not frames:
        return [], stats
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"labels has {len(labels)} maps for {len(frames)} frames")
    want_std = mode == "ups"
    conf_l, pred_l, lab_l, neg_l = [], [], [], []
    for out in iter_predict_frames(model, frames, passes=mc_passes, batch_size=batch_size, device=device,
                                   size=size, return_passes=want_std, seed=seed, progress=progress,
                                   desc=f"pseudo-labels ({mode})"):
        probs = out["probs"]
        if mode == "ups":
            lab, neg = ups_pseudo_labels(probs, out["passes"].std(axis=0), **options)
            lab_l.append(lab)
            neg_l.extend(list(neg))
        elif mode == "confidence":
            lab_l.append(confidence_pseudo_labels(probs, **options))
        else:  # classwise: thresholds over the whole set, so keep confidence and argmax first
            conf_l.append(probs.max(axis=1))
            pred_l.append(probs.argmax(axis=1).astype(np.uint8))
            stats.setdefault("num_classes", probs.shape[1])
    if mode == "classwise":
        conf, pred = np.concatenate(conf_l), np.concatenate(pred_l)
        t = thresholds_from_confidence(conf, pred, stats.pop("num_classes"), **options)
        stats["thresholds"] = t.tolist()
        lab_all = np.where(conf >= t[pred], pred, IGNORE).astype(np.uint8)
    else:
        lab_all = np.concatenate(lab_l)
    items, n_lab, n_pix = [], 0, 0
    precision_pl, precision_gt, neg_pl, neg_gt = [], [], [], []
    for i, fr in enumerate(frames):
        pl = lab_all[i].astype(np.int64)
        given = None if labels is None else np.asarray(labels[i]).astype(np.int64)
        if given is not None:
            if given.shape != pl.shape:
                raise ValueError(f"labels[{i}] has shape {given.shape}, frame {fr.key} predictions {pl.shape}")
            pl_only = np.where(given == IGNORE, pl, IGNORE)
            merged = np.where(given != IGNORE, given, pl)
        else:
            pl_only, merged = pl, pl
        neg = neg_l[i] if neg_l else None
        if neg is not None and given is not None:
            neg = neg & (given == IGNORE)[None]
        n_lab += int((pl_only != IGNORE).sum())
        n_pix += pl.size
        if with_precision and getattr(fr, "has_labels", False):
            gt = np.asarray(fr.labels)
            precision_pl.append(pl_only)
            precision_gt.append(gt)
            if neg is not None:
                neg_pl.append(neg)
                neg_gt.append(gt)
        if not keep_empty and not (pl_only != IGNORE).any() and (neg is None or not neg.any()):
            continue
        items.append((fr, merged, {"negative": neg} if neg is not None else {}))
    stats.update(pixels=n_pix, n_labelled=n_lab, coverage=n_lab / max(n_pix, 1), items=len(items))
    if with_precision:
        stats["precision_frames"] = len(precision_pl)
    if precision_pl:
        pr = pseudo_label_precision(np.stack(precision_pl), np.stack(precision_gt))
        stats.update(precision=pr["precision"], n_correct=pr["n_correct"])
        if neg_pl:
            npr = negative_label_precision(np.stack(neg_pl), np.stack(neg_gt))
            stats.update(negative_precision=npr["precision"], n_negative=npr["n_negative"])
    return items, stats


def train_with_pseudo_labels(model, train_items, pool_frames, val_items, config=None, mode: str = "ups", *,
                             extra_loss=None, progress: bool = True, desc: str = "train", **options):
    """The ``--pseudo-labels MODE`` training option: fit on the labelled items → :func:`pseudo_label_finetune`
    (pseudo-label the pool, fine-tune on labelled + pseudo-labelled pixels).

    Args:
        model, train_items, val_items, config, extra_loss: as ``viewal.nn.train.fit``.
        pool_frames, mode, options: as :func:`pseudo_label_finetune`; ``mode="none"`` is a plain fit.
    Returns:
        (fit result, stats) as :func:`pseudo_label_finetune`.
    """
    cfg = config or TrainConfig()
    res = fit(model, train_items, val_items, cfg, extra_loss=extra_loss, progress=progress, desc=f"{desc} base")
    if mode == "none":
        return res, {"mode": "none"}
    state = FitState(model, train_items, val_items, cfg, extra_loss=extra_loss, progress=progress, desc=desc,
                     result=res)
    return pseudo_label_finetune(state, pool_frames, mode, **options)


def finetune_epochs_for(base_result, n_items: int, config: TrainConfig) -> int:
    """Epochs over ``n_items`` items that give about half the SGD steps of the fit ``base_result``
    (a ``viewal.nn.train.FitResult``; its history's last ``step``), at least 1. An epoch is
    ``config.steps_per_epoch`` steps when steps are counted, else one pass at ``config.batch_size``."""
    fit_steps = int(base_result.history[-1]["step"]) if base_result.history else 0
    per_epoch = int(config.steps_per_epoch or max(1, -(-int(n_items) // int(config.batch_size))))
    return max(1, int(round(fit_steps / 2 / per_epoch)))


def pseudo_label_finetune(state: FitState, pool_frames, mode: str = "ups", *, negative_weight: float = 1.0,
                          finetune_epochs: int | None = None, mc_passes: int = 20, batch_size: int = 4,
                          max_frames: int | None = None, with_precision: bool = True, item_extras=None,
                          keep_best: bool = True, **options):
    """Pseudo-labels for a trained ``model``: pseudo-label the pool → fine-tune on labelled +
    pseudo-labelled pixels (UPS: plus ``negative_weight`` · negative loss).

    Args:
        state: the fit so far (``viewal.nn.train.FitState``): its model (trained further in place), labelled
            items, validation frames, config, ``extra_loss``, progress and label, and ``result``, the
            ``FitResult`` of the fit that trained the model (reported as ``val_miou_base``).
        pool_frames: the unlabelled pool's frames (frames that also appear in ``train_items`` keep their
            labels, which take precedence over pseudo-labels).
        mode: one of :data:`MODES` but ``"none"``.
        finetune_epochs: epochs of the fine-tuning fit over labelled + pseudo-labelled items. Default: the
            epochs that give about half the SGD steps the fit took (``base_result``'s last ``step``; at least
            one epoch). The fit's epochs are raised on a small labelled set to reach ``min_iterations``, so
            counting the fine-tuning in those epochs over the whole pool would train it many times longer
            than the fit itself (16× on a 2 % seed set of 560 frames).
        max_frames: keep at most this many pseudo-labelled frames (those with the most pseudo-labelled pixels).
        with_precision: measure pseudo-label precision against the ground truth of the pool frames that have
            labels (reports only; frames without labels are skipped).
        item_extras: ``frame -> dict`` giving a pool frame's training extras (e.g. its ``"superpixels"``)
            when ``train_items`` carry extras: a pseudo-labelled frame keeps its labelled item's extras, an
            unlabelled one gets ``item_extras(frame)``, so every item of the fine-tuning batches the same keys.
        keep_best: when validation frames exist and the fine-tuned model's best validation mIoU is lower than the
            plain fit's, the plain fit's weights are restored (as max-entropy augmentation does);
            ``stats["pseudo_kept"]`` says which model was kept (``"pseudo"`` or ``"base"``).
        options: rule settings (see :func:`pseudo_labels`).
    Returns:
        (fit result, stats) — stats from :func:`pseudo_label_items` (``precision``, ``coverage``, ...), and the
        result of the kept model's fit.
    """
    import copy

    model, train_items, val_items, cfg, extra_loss = state.model, state.items, state.val, state.config, state.extra_loss
    progress, desc, res = state.progress, state.desc, state.result
    if mode == "none" or mode not in MODES:
        raise ValueError(f"pseudo_label_finetune: mode must be one of {', '.join(m for m in MODES if m != 'none')}, "
                         f"got {mode!r}")
    items = as_items(train_items)
    given = {it[0].key: (it[1] if it[1] is not None else np.asarray(it[0].labels)) for it in items}
    pool_frames = list(pool_frames)
    labels = [np.asarray(given[f.key]) if f.key in given else np.full(np.asarray(f.rgb).shape[:2], IGNORE, np.int64)
              for f in pool_frames]
    pl_items, stats = pseudo_label_items(model, pool_frames, mode, labels=labels, mc_passes=mc_passes,
                                         batch_size=batch_size, device=cfg.device, size=cfg.size,
                                         with_precision=with_precision, progress=progress, seed=cfg.seed, **options)
    if max_frames is not None and len(pl_items) > max_frames:
        counts = [int(((it[1] != IGNORE) & (given.get(it[0].key, np.full(it[1].shape, IGNORE)) == IGNORE)).sum())
                  for it in pl_items]
        keep = sorted(np.argsort(counts)[::-1][:max_frames])
        pl_items = [pl_items[i] for i in keep]
    stats["items_used"] = len(pl_items)
    given_extras = {it[0].key: it[2] for it in items}
    needed = set().union(*given_extras.values()) if given_extras else set()
    if needed and item_extras is None and any(it[0].key not in given_extras for it in pl_items):
        raise ValueError(f"train_items carry extras {sorted(needed)}: pass item_extras=frame -> dict so that "
                         "pseudo-labelled pool frames get them too")
    pl_items = [(f, y, {**(given_extras[f.key] if f.key in given_extras else item_extras(f)), **ex})
                if needed else (f, y, ex) for f, y, ex in pl_items]
    in_pl = {it[0].key for it in pl_items}
    merged = pl_items + [it for it in items if it[0].key not in in_pl]
    if mode == "ups":  # every item needs the same extras keys to batch: empty masks for the rest
        C = model.num_classes
        merged = [it if "negative" in it[2] else
                  (it[0], it[1], {**it[2], "negative": np.zeros((C,) + np.asarray(it[0].rgb).shape[:2], bool)})
                  for it in merged]
    ft = finetune_epochs if finetune_epochs is not None else finetune_epochs_for(res, len(merged), cfg)
    hook = combine_extra_losses(extra_loss, negative_loss_hook(negative_weight) if mode == "ups" else None)
    base_state = copy.deepcopy(model.state_dict()) if keep_best else None
    res2 = fit(model, merged, val_items, cfg.with_epochs(int(ft)), extra_loss=hook,
               progress=progress, desc=f"{desc} pseudo-{mode}")
    stats["val_miou_base"] = res.best_miou
    stats["val_miou_pseudo"] = res2.best_miou
    stats["pseudo_kept"] = "pseudo"
    base = res.best_miou if res is not None else float("nan")
    if keep_best and val_items and base == base and not res2.best_miou >= base:  # validation prefers the plain fit
        model.load_state_dict(base_state)
        model.eval()
        stats["pseudo_kept"] = "base"
        return res, stats
    return res2, stats
