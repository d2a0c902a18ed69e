"""Training on partial labels, evaluation (mIoU from a confusion matrix), checkpoints (the library of
``viewal train``, :mod:`viewal.cli.train`).

Recipe (ViewAL; docs/model.md "Training on partial labels"): cross-entropy with ignore index 255 (unlabelled
pixels contribute nothing), horizontal flip + Gaussian blur, SGD momentum 0.9, weight decay 5e-4, lr 4e-4 for the
encoder and ×10 for ASPP + decoder + head, batch 6, step schedule (γ 0.1 at 70 % of the epochs: 35 of 50),
best-validation-mIoU weights restored at the end. Epochs and the working image size are options so
that CPU runs stay short.

mIoU convention: IoU_c = TP / (TP + FP + FN) from the confusion matrix over all evaluated pixels
(pixels whose ground truth is 255 are skipped); a class with TP + FP + FN = 0 (absent from the
ground truth and never predicted) has IoU NaN and is left out of the mean.

Frames without labels (``Frame.has_labels`` False): :func:`fit` skips them among the validation frames (and
trains without validation, keeping the final weights, when none has labels); :func:`evaluate` refuses them
with an error naming the frame (an mIoU needs ground truth); :func:`iter_eval_predictions` predicts them with
an all-255 (unknown) label map. Reports for data without ground truth: :mod:`viewal.nn.metrics`.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from viewal.core.config import SAMPLINGS, ExecutionSettings, TrainingSettings
from viewal.core.io import atomic_path, load_torch_file, unpickle_reason
from viewal.core.progress import progress_bar, progress_write
from viewal.core.seeding import stream_seed
from viewal.datasets.base import IGNORE_INDEX, require_labels
from viewal.nn.data import SegmentationDataset, as_items, collate, parse_size
from viewal.nn.distributed import shard, world
from viewal.nn.model import SegModel, build_model
from viewal.nn.predictor import OwnModule
from viewal.nn.pretrained import canonical_encoder

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "recalibrate_bn", "segmentation_loss", "confusion_matrix",
           "iou_from_confusion", "iter_eval_predictions", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "train_subset", "set_threads", "labelled_val_items"]

CHECKPOINT_FORMAT = "viewal-checkpoint"


ExtraLoss = Callable[[SegModel, dict, torch.Tensor, list], torch.Tensor]


@dataclass
class TrainConfig:
    """Training settings (defaults: ViewAL's recipe, except epochs/size which CPU runs shorten).

    Attributes:
        epochs: passes over the training items (ViewAL: 50).
        batch_size: 6 as ViewAL.
        lr: encoder learning rate; ``head_lr_mult`` × lr for ASPP + decoder + head (and extra modules).
        momentum, weight_decay: SGD.
        step_at: fraction of the epochs after which the lr is multiplied by ``gamma`` (0.7 -> 35 of 50).
        size: working (H, W) for training and validation, None = the frames' resolution.
        flip, blur: augmentations.
        seed: seeds the model-independent randomness (batch order, augmentation, dropout).
        num_threads: torch threads (None: leave torch's setting).
        device: "cpu" or e.g. "cuda".
        eval_every: validate every this many epochs (and always after the last).
        eval_batch_size: batch size of validation.
        steps: total SGD steps; when set it replaces ``epochs`` (an "epoch" is then
            ``steps_per_epoch`` steps, the unit of validation and of the lr schedule).
        steps_per_epoch: steps per epoch (None: one pass over the items, as ViewAL).
        sampling: ``"uniform"`` (shuffled passes over the items), ``"crops"`` (every sample a 2×2
            mosaic of four half-size crops, each centred on a random labelled pixel of a frame drawn in
            proportion to its labelled pixels: sparse labels are packed, at the same scale, so a step sees
            up to 4× more of them; :func:`label_mosaic`) or ``"labels"`` (every sample drawn
            with probability proportional to its item's labelled pixels, with replacement), so that
            steps are spent on labels rather than on frames with a few labelled superpixels.
        bn_recalibrate: before each validation (and at the end), re-estimate the BatchNorm running
            statistics with the current weights on up to this many training images (train-mode
            forward, dropout off, equal-weight average; "precise BN"). 0 disables. Needed from random
            initialisation: with dropout active in training and weights moving fast, the running
            averages lag and eval-mode predictions collapse to the majority class.
        freeze_bn: BatchNorm layers keep their running statistics during training (eval mode; no
            recalibration). Under ``torchrun`` on CPUs, where SyncBatchNorm is unavailable, each rank
            otherwise normalises its share of the batch with that share's own statistics; frozen, a
            data-parallel step computes exactly the single-process step (docs/scale.md).
    """

    epochs: int = 50
    batch_size: int = 6
    lr: float = 4e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_at: float = 0.7
    gamma: float = 0.1
    size: tuple[int, int] | None = None
    flip: bool = True
    blur: bool = True
    seed: int = 0
    num_threads: int | None = None
    device: str = "cpu"
    eval_every: int = 1
    eval_batch_size: int = 8
    bn_recalibrate: int = 64
    steps: int | None = None
    steps_per_epoch: int | None = None
    sampling: str = "uniform"
    freeze_bn: bool = False

    @classmethod
    def from_settings(cls, training: TrainingSettings, execution: ExecutionSettings, n_items: int,
                      seed: int) -> TrainConfig:
        """The recipe of a run's fit on ``n_items`` labelled items: exactly ``training.steps`` SGD steps with
        ``training.validations`` validations when steps are set, else ``training.epochs`` epochs raised to at
        least ``training.min_iterations`` steps. One recipe for the learner's fits, their retrains and the
        full-data reference."""
        t = training
        kw = dict(batch_size=t.batch_size, lr=t.lr, size=t.size, seed=int(seed), num_threads=execution.num_threads,
                  device=execution.device, sampling=t.sampling)
        if t.steps is not None:
            return cls(epochs=1, steps=t.steps, steps_per_epoch=max(1, -(-t.steps // max(1, t.validations))),
                       eval_every=1, **kw)
        epochs = epochs_for(t.min_iterations, n_items, t.batch_size, at_least=t.epochs) if t.min_iterations \
            else t.epochs
        return cls(epochs=epochs, eval_every=max(1, epochs // t.validations), **kw)

    def __post_init__(self) -> None:
        self.size = parse_size(self.size)
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.steps is not None:
            if self.steps < 1:
                raise ValueError(f"steps must be >= 1, got {self.steps}")
            if self.steps_per_epoch is None:
                raise ValueError("steps needs steps_per_epoch (the validation / lr-schedule unit)")
            self.epochs = -(-int(self.steps) // int(self.steps_per_epoch))
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def with_epochs(self, epochs: int) -> TrainConfig:
        """A copy that trains ``epochs`` epochs (of ``steps_per_epoch`` steps when steps are counted)."""
        import dataclasses

        steps = None if self.steps is None else int(epochs) * int(self.steps_per_epoch)
        return dataclasses.replace(self, epochs=int(epochs), steps=steps)

    @property
    def step_epoch(self) -> int:
        """Epoch (0-based count of finished epochs) at which the lr drops."""
        return max(1, int(round(self.step_at * self.epochs)))


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        best_miou: best validation mIoU (NaN without labelled validation frames).
        best_epoch: 1-based epoch of the restored weights (the last one without validation).
        history: one dict per epoch: ``epoch``, ``step`` (SGD steps done), ``loss`` (mean training
            loss), ``lr``, ``seconds``, ``train_seconds`` (without validation), ``val_miou`` (or None).
        seconds: total wall time.
    """

    best_miou: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]


def epochs_for(iterations: int, n_items: int, batch_size: int, at_least: int = 1) -> int:
    """Epochs needed for about ``iterations`` SGD steps over ``n_items`` items (at least ``at_least``)."""
    per_epoch = max(1, -(-n_items // batch_size))
    return max(at_least, -(-iterations // per_epoch))


@dataclass
class FitState:
    """What the steps of one fit share (``viewal.nn.aids``): the fit and the aids that improve a trained model
    (max-entropy augmentation, pseudo-labels) each take this one object.

    Attributes:
        model: the network being trained (changed in place by every step).
        items: labelled training items ``(frame, label map (H, W), extras)`` (:func:`fit`).
        val: validation frames (checkpoint choice; :func:`fit` skips those without labels and keeps the final
            weights when none has labels).
        config: :class:`TrainConfig` of the fits.
        extra_loss: the scorer's and auxiliaries' ``extra_loss`` hook (or None), used by every fit.
        progress, desc: progress bars and their label.
        result: the :class:`FitResult` of the last fit kept (None before the first fit).
        stats: what the aids measured (flat: ``theta_dev``, ``precision``, ...; ``steps`` names the steps run).
    """

    model: Any
    items: Sequence
    val: Sequence
    config: TrainConfig
    extra_loss: Callable | None = None
    progress: bool = True
    desc: str = "train"
    result: FitResult | None = None
    stats: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- loss / metrics

def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; logits (B, C, H, W), labels (B, H, W) int64, 255 = ignore.

    ``weight``: optional (B, H, W) per-pixel weights (e.g. propagated labels weighing less than human ones); the
    loss is then the weighted mean ``sum(w * ce) / sum(w)`` over labelled pixels (all ones: the plain mean).
    A batch without any labelled pixel (or whose labelled pixels all weigh 0) gives 0 (still connected to the
    graph), never NaN.
    """
    valid = labels != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if weight is None:
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    w = weight.to(logits.dtype) * valid
    total = w.sum()
    if not bool(total > 0):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * w).sum() / total


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """pred, gt: int arrays of the same shape (gt 255 = ignore) -> (C, C) int64, rows = ground truth."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    gt = np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt sizes differ: {pred.shape} vs {gt.shape}")
    keep = (gt != IGNORE_INDEX) & (gt >= 0) & (gt < num_classes)
    idx = gt[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """(C, C) confusion -> (mIoU, per-class IoU (C,) with NaN for classes absent from GT and prediction)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return miou, iou


def _eval_item(item):
    """A frame or ``(frame, label)`` item to predict; a frame without labels gets an all-unknown label map."""
    if isinstance(item, tuple) or getattr(item, "has_labels", False):
        return item
    return item, np.full(np.asarray(item.rgb).shape[:2], IGNORE_INDEX, np.int64)


def iter_eval_predictions(model: SegModel, frames: Sequence, batch_size: int = 8, device: str = "cpu", *,
                          size: tuple[int, int] | str | None = None, progress: bool = False, desc: str = "eval"):
    """Plain (eval-mode) argmax predictions of ``frames`` batch by batch: yields ``(pred, label)``, each
    (B, H, W) int numpy at the working ``size`` (labels nearest-resized; 255 = unknown, everywhere for a
    frame without labels).

    Args:
        frames: frames (with or without labels) or ``(frame, label_map (H, W))`` pairs.
    """
    frames = list(frames)
    size = parse_size(size)
    was_training = model.training
    model.eval()
    model.to(device)
    try:
        with torch.no_grad():
            for s in progress_bar(range(0, len(frames), batch_size), desc=desc, disable=not progress, leave=False):
                ds = SegmentationDataset([_eval_item(it) for it in frames[s:s + batch_size]], size, augment=False,
                                         cache=False)
                batch = collate([ds[i] for i in range(len(ds))])
                yield model(batch["image"].to(device)).argmax(1).cpu().numpy(), batch["label"].numpy()
    finally:
        model.train(was_training)


def evaluate(model: SegModel, frames: Sequence, num_classes: int, batch_size: int = 8, device: str = "cpu", *,
             size: tuple[int, int] | str | None = None, progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Plain (deterministic, eval-mode) prediction on labelled frames -> metrics.

    Args:
        frames: frames with labels, or (frame, label_map) pairs.
        size: working (H, W); predictions and labels (nearest-resized) are compared at this size.

    Returns:
        ``{"miou": float, "per_class_iou": (C,) float64 with NaN for absent classes,
        "confusion": (C, C) int64 (rows = ground truth), "pixel_accuracy": float}``.

    Raises:
        viewal.datasets.MissingLabelsError (a ValueError): a frame has no labels (the message names the
        first one); an mIoU needs ground truth on every val/test frame (:mod:`viewal.nn.metrics` reports
        without it).
    """
    frames = list(frames)
    require_labels((f for f in frames if not isinstance(f, tuple)), "evaluation (mIoU) of the val/test frames")
    conf = np.zeros((num_classes, num_classes), np.int64)
    for pred, label in iter_eval_predictions(model, frames, batch_size, device, size=size, progress=progress,
                                             desc=desc):
        conf += confusion_matrix(pred, label, num_classes)
    miou, iou = iou_from_confusion(conf)
    total = conf.sum()
    return {"miou": miou, "per_class_iou": iou, "confusion": conf,
            "pixel_accuracy": float(np.trace(conf) / total) if total else float("nan")}


# ---------------------------------------------------------------------------------------------- training

def epoch_batches(n: int, batch_size: int, gen: torch.Generator, steps: int | None = None,
                  weights: np.ndarray | None = None) -> list[list[int]]:
    """Index batches of one epoch.

    Args:
        n: items; batch_size: B.
        steps: batches to make (None: one shuffled pass over the items, :func:`_batches`).
        weights: (n,) non-negative sampling weights (e.g. labelled pixels): every index is drawn
            with probability ∝ weight, with replacement. None: uniform, shuffled passes.

    Returns:
        ``steps`` (or ceil(n / B)) lists of indices, none of length one.
    """
    if steps is None and weights is None:
        return _batches(n, batch_size, gen)
    steps = steps if steps is not None else max(1, -(-n // batch_size))
    b = max(2, batch_size)
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, np.float64))
        if w.shape != (n,) or bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"weights must be ({n},) finite and non-negative")
        if float(w.sum()) <= 0:
            w = torch.ones(n, dtype=torch.float64)
        flat = torch.multinomial(w, steps * b, replacement=True, generator=gen).tolist()
    else:
        flat = []
        while len(flat) < steps * b:
            flat += torch.randperm(n, generator=gen).tolist()
    return [flat[s * b:(s + 1) * b] for s in range(steps)]


def _crop_at_label(sample: dict, hh: int, ww: int, gen: torch.Generator) -> dict:
    """A (hh, ww) window of a sample centred (clamped to the frame) on one of its labelled pixels, drawn
    uniformly; the frame's centre when it has none. Every tensor whose last two axes are the frame's
    (H, W) is cropped alike."""
    label = sample["label"]
    h, w = label.shape[-2:]
    pts = torch.nonzero(label != IGNORE_INDEX)
    if len(pts):
        y, x = pts[int(torch.randint(len(pts), (1,), generator=gen))].tolist()
    else:
        y, x = h // 2, w // 2
    top = min(max(0, y - hh // 2), h - hh)
    left = min(max(0, x - ww // 2), w - ww)
    return {k: (v[..., top:top + hh, left:left + ww] if isinstance(v, torch.Tensor) and v.ndim >= 2
                and tuple(v.shape[-2:]) == (h, w) else v) for k, v in sample.items()}


def label_mosaic(samples: Sequence[dict], gen: torch.Generator) -> dict:
    """Four samples -> one sample of the same (H, W): a 2×2 mosaic of (H/2, W/2) crops, each centred on a
    random labelled pixel of its sample (:func:`_crop_at_label`). Labels, image and every per-pixel extra
    are tiled alike; other values come from the first sample. Packs sparse labels at their own scale."""
    if len(samples) != 4:
        raise ValueError(f"label_mosaic needs 4 samples, got {len(samples)}")
    h, w = samples[0]["label"].shape[-2:]
    hh, ww = h // 2, w // 2
    crops = [_crop_at_label(s, hh, ww, gen) for s in samples]
    out = dict(samples[0])
    for k, v in samples[0].items():
        if isinstance(v, torch.Tensor) and v.ndim >= 2 and tuple(v.shape[-2:]) == (h, w):
            full = torch.full_like(v, IGNORE_INDEX) if k == "label" else torch.zeros_like(v)
            for q, c in enumerate(crops):
                r, col = divmod(q, 2)
                full[..., r * hh:(r + 1) * hh, col * ww:(col + 1) * ww] = c[k]
            out[k] = full
    return out


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """Shuffled index batches; never a batch of one (BatchNorm in the ASPP pooling branch needs >= 2)."""
    perm = torch.randperm(n, generator=gen).tolist()
    if n == 1:
        return [perm * 2]
    out = [perm[s:s + batch_size] for s in range(0, n, batch_size)]
    if len(out[-1]) == 1:
        if len(out) > 1:
            out[-2].extend(out.pop())
        else:
            out[-1] = out[-1] * 2
    return out


@torch.no_grad()
def recalibrate_bn(model: SegModel, images: Sequence[torch.Tensor], batch_size: int = 8) -> None:
    """Re-estimate every BatchNorm's running mean/var from ``images`` ((3, h, w) tensors) with the
    current weights: train-mode forward with all dropout off, cumulative (equal-weight) average.
    Batches of one are merged (BatchNorm needs two samples)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(images) < 2:
        return
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    own = not hasattr(model, "mc_dropout")  # a user's network: its dropout layers are all there is
    was_training, p, mc = model.training, getattr(model, "dropout", 0.0), getattr(model, "mc_dropout", False)
    momenta = [m.momentum for m in bns]
    try:
        model.train()
        for m in drops:
            m.eval()
        if not own:
            model.dropout, model.mc_dropout = 0.0, False
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        starts = list(range(0, len(images), batch_size))
        if len(images) - starts[-1] == 1 and len(starts) > 1:
            starts.pop()
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(images)
            model(torch.stack(list(images[s:end])))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        if not own:
            model.dropout, model.mc_dropout = p, mc
        model.train(was_training)


class _Step(nn.Module):
    """One training step's loss as a module, so that ``DistributedDataParallel`` sees every parameter the
    step uses (the model's and the extra modules'). ``weight`` scales the cross-entropy of this rank's
    share so that the ranks' average is the global batch's mean over its labelled pixels."""

    def __init__(self, model: SegModel, extra_loss: ExtraLoss | None, extra_modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.model, self.extra = model, nn.ModuleList(extra_modules)
        self.extra_loss = extra_loss

    def forward(self, batch: dict, weight: float) -> torch.Tensor:
        if not isinstance(self.model, SegModel):  # a network of the user's (viewal.nn.predictor.OwnModule)
            return segmentation_loss(self.model(batch["image"]), batch["label"], batch.get("weight")) * weight
        feats = self.model.encode(batch["image"])
        logits = self.model.decode(feats)
        loss = segmentation_loss(logits, batch["label"], batch.get("weight")) * weight
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(self.model, batch, logits, feats)
        return loss


def labelled_val_items(val_items: Sequence, desc: str = "train") -> list:
    """The validation items that carry labels: ``(frame, label)`` pairs and frames with labels, in order.

    Frames without labels are left out with one warning naming the first of them; when none is left, the
    warning says that training runs without validation and keeps its final weights."""
    val_items = list(val_items)
    kept = [it for it in val_items if isinstance(it, tuple) or getattr(it, "has_labels", False)]
    dropped = [it for it in val_items if not (isinstance(it, tuple) or getattr(it, "has_labels", False))]
    if dropped:
        first = getattr(dropped[0], "key", dropped[0])
        what = (f"{len(dropped)} of {len(val_items)} validation frames have no labels (e.g. {first}) and are skipped"
                if kept else f"none of the {len(val_items)} validation frames has labels (e.g. {first}): training "
                             "without validation, keeping the final weights")
        warnings.warn(f"{desc}: {what}", stacklevel=3)
    return kept


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` for a positive ``n``; None (or <= 0) leaves torch's default."""
    if n is not None and n > 0:
        torch.set_num_threads(int(n))


def make_optimizer(model: nn.Module, cfg: TrainConfig, extra_modules: Sequence[nn.Module] = ()):
    """SGD over two groups and its step schedule: viewal's DeepLabv3+ trains its encoder at ``lr`` and the rest
    (ASPP, decoder, head, the extra modules) at ``head_lr_mult`` × ``lr`` (ViewAL); a user's network trains all
    at ``lr``. Returns (optimizer, scheduler)."""
    enc_params = list(model.net.encoder.parameters() if isinstance(model, SegModel) else model.parameters())
    enc_ids = {id(p) for p in enc_params}
    head_params = [p for p in model.parameters() if id(p) not in enc_ids]
    seen = enc_ids | {id(p) for p in head_params}
    for m in extra_modules:
        head_params += [p for p in m.parameters() if id(p) not in seen]
    groups = [g for g in ({"params": enc_params, "lr": cfg.lr},
                          {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}) if g["params"]]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epoch, gamma=cfg.gamma)


def step_module(model: nn.Module, extra_loss: ExtraLoss | None, extra_modules: Sequence[nn.Module],
                device: torch.device, seed: int) -> nn.Module:
    """The module whose forward is one step's loss (:class:`_Step`); under ``torchrun`` wrapped in
    ``DistributedDataParallel`` (SyncBatchNorm on GPUs), with one stream of random-layer masks per rank."""
    step_fn: nn.Module = _Step(model, extra_loss, extra_modules)
    w = world()
    if w.distributed:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the model's BatchNorms become synced
        step_fn = DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        # random layers (dropout, drop-path) draw their masks from torch's global generator: one stream per
        # rank, or every rank would drop the same channels of its share. The batches, augmentations and
        # crops come from generators that stay equal on every rank (each rank assembles the global batch).
        torch.manual_seed(stream_seed(seed, "rank", w.rank))
    return step_fn


def assemble_batch(ds: SegmentationDataset, idx: Sequence[int], per: int, gen: torch.Generator,
                   device: torch.device) -> dict:
    """The batch of dataset indices ``idx`` on ``device``: one sample per index, or (``per`` > 1) one 2×2
    mosaic of label-centred crops per ``per`` indices (:func:`label_mosaic`)."""
    if per > 1:
        batch = collate([label_mosaic([ds[i] for i in idx[k:k + per]], gen) for k in range(0, len(idx), per)])
    else:
        batch = collate([ds[i] for i in idx])
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def rank_share(batch: dict, device: torch.device, freeze_bn: bool, desc: str) -> tuple[dict, float]:
    """This rank's rows of the global ``batch`` and the weight of its cross-entropy (its labelled pixels, or
    their weights, against the ranks' mean), so that the ranks' average is the global batch's loss; outside
    ``torchrun``: the batch and 1."""
    w = world()
    if not w.distributed:
        return batch, 1.0
    n_global = int(batch["image"].shape[0])
    batch = shard(batch, w, n_global)
    if len(batch["image"]) < (1 if freeze_bn else 2):
        raise ValueError(f"{desc}: a batch of {n_global} items leaves rank {w.rank} of {w.size} fewer "
                         f"than 2 (BatchNorm needs 2); raise the batch size")
    valid = batch["label"] != IGNORE_INDEX  # labelled pixels, or their weights with a weight map
    n_lab = torch.tensor([float(valid.sum() if "weight" not in batch else (batch["weight"] * valid).sum())],
                         dtype=torch.float64)
    total = n_lab.clone().to(device)
    torch.distributed.all_reduce(total)
    return batch, (float(n_lab) * w.size / float(total) if float(total) > 0 else 1.0)


def global_loss(loss: torch.Tensor) -> torch.Tensor:
    """The global batch's loss for display: the ranks' mean of their weighted losses (the loss itself
    outside ``torchrun``)."""
    shown = loss.detach()
    w = world()
    if w.distributed:
        shown = shown.clone()
        torch.distributed.all_reduce(shown)
        shown = shown / w.size
    return shown


def train_epoch(model: nn.Module, step_fn: nn.Module, opt: torch.optim.Optimizer, ds: SegmentationDataset,
                cfg: TrainConfig, gen: torch.Generator, device: torch.device, weights: np.ndarray | None,
                n_steps: int | None, extra_modules: Sequence[nn.Module], bns: Sequence[nn.Module], *,
                epoch: int, desc: str, progress: bool) -> list[float]:
    """One epoch of SGD steps (``n_steps``, or a pass over ``ds``; batches drawn by :func:`epoch_batches`
    with ``weights``); returns each step's global loss. Raises FloatingPointError on a non-finite loss."""
    model.train()
    for m in extra_modules:
        m.train()
    if cfg.freeze_bn:
        for m in bns:
            m.eval()
    per = 4 if cfg.sampling == "crops" else 1
    batches = epoch_batches(len(ds), cfg.batch_size * per, gen, n_steps, weights)
    losses: list[float] = []
    bar = progress_bar(batches, desc=f"{desc} {epoch}/{cfg.epochs}", disable=not progress, leave=False, unit="batch")
    for idx in bar:
        batch, weight = rank_share(assemble_batch(ds, idx, per, gen, device), device, cfg.freeze_bn, desc)
        loss = step_fn(batch, weight)
        shown = global_loss(loss)
        if not torch.isfinite(shown):
            raise FloatingPointError(f"{desc}: non-finite loss at epoch {epoch}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(shown))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


def validate(model: nn.Module, train_items: Sequence, val_items: Sequence, ds: SegmentationDataset, cfg: TrainConfig,
             gen: torch.Generator, device: torch.device) -> float:
    """Recalibrate BatchNorm on ``cfg.bn_recalibrate`` training frames without augmentation (unless frozen),
    then the val split's mIoU."""
    if cfg.bn_recalibrate > 0 and not cfg.freeze_bn:
        recalibrate_on_train(model, train_items, ds, cfg, gen, device)
    return evaluate(model, val_items, model.num_classes, cfg.eval_batch_size, cfg.device, size=cfg.size)["miou"]


def recalibrate_on_train(model: nn.Module, train_items: Sequence, ds: SegmentationDataset, cfg: TrainConfig,
                         gen: torch.Generator, device: torch.device) -> None:
    """:func:`recalibrate_bn` on ``cfg.bn_recalibrate`` training frames drawn with ``gen``, unaugmented."""
    n = min(cfg.bn_recalibrate, len(ds))
    pick = torch.randperm(len(ds), generator=gen)[:n].tolist()
    plain = SegmentationDataset([train_items[i] for i in pick], cfg.size, augment=False, cache=False)
    recalibrate_bn(model, [plain[i]["image"].to(device) for i in range(len(plain))], cfg.eval_batch_size)


def fit(model: SegModel, train_items: Sequence, val_items: Sequence, config: TrainConfig | None = None, *,
        extra_loss: ExtraLoss | None = None, extra_modules: Sequence[nn.Module] = (), progress: bool = True,
        desc: str = "train", log_epochs: bool | None = None) -> FitResult:
    """Train ``model`` in place on partial labels; restore the best-validation weights at the end.

    Args:
        model: a :class:`SegModel` (re-initialise it yourself for each active-learning cycle).
        train_items: (frame, label_map (H, W) int, 255 = unlabelled[, extras dict]) items, or labelled frames.
            An extras ``"weight"`` map (H, W) weighs each pixel's cross-entropy (:func:`segmentation_loss`); when
            one item has it, every item must.
        val_items: frames (or (frame, label) pairs) for model selection; may be empty. Frames without labels
            are skipped (one warning); with no labelled one, training runs without validation and keeps the
            final weights.
        config: :class:`TrainConfig`.
        extra_loss: ``extra_loss(model, batch, logits, features) -> scalar Tensor`` added to the
            cross-entropy (batch: dict with ``image``, ``label`` and the items' extras, on the device;
            features: the encoder pyramid of the batch). Submodules registered on ``model`` (e.g.
            ``model.loss_head``) are trained with the head learning rate.
        extra_modules: further modules (not attached to the model) whose parameters the hook trains.
        progress: tqdm bar per epoch.
        log_epochs: print one line per epoch (loss, val mIoU, time); default: same as ``progress``.

    The steps, each a function of this module: :func:`make_optimizer`, :func:`step_module`, then per epoch
    :func:`train_epoch` (:func:`assemble_batch`, :func:`rank_share`, :func:`global_loss` per step) and
    :func:`validate` (BatchNorm recalibration and the val split's mIoU), keeping the best weights.

    Under ``torchrun`` (a process group initialised, ``viewal.nn.distributed.init_from_env``) the step is
    ``DistributedDataParallel``: every rank draws and assembles the same global batch and runs the network
    on its rows (``viewal.nn.distributed.shard``); gradients are averaged over the ranks with each share's
    cross-entropy weighted by its labelled pixels, so a step equals the single-process step on the global
    batch up to BatchNorm (SyncBatchNorm on GPUs, per-rank statistics on CPUs, or ``freeze_bn``) and the
    masks of the random layers (dropout, drop-path: one generator stream per rank). Every rank returns the
    same weights and result.

    Returns:
        :class:`FitResult`.
    """
    cfg = config or TrainConfig()
    if not isinstance(model, (SegModel, OwnModule)):
        raise TypeError(f"model must be a viewal.nn.model.SegModel or a viewal.nn.predictor.OwnModule, "
                        f"got {type(model).__name__}")
    if not isinstance(model, SegModel) and (extra_loss is not None or extra_modules):
        raise ValueError("fit: auxiliary losses need viewal's own DeepLabv3+ (they read its encoder features)")
    train_items = as_items(train_items)
    if not train_items:
        raise ValueError("fit: no training items")
    val_items = labelled_val_items(val_items, desc)
    set_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    for m in extra_modules:
        m.to(device)

    ds = SegmentationDataset(train_items, cfg.size, augment=True, flip=cfg.flip, blur=cfg.blur, seed=cfg.seed)
    opt, sched = make_optimizer(model, cfg, extra_modules)
    step_fn = step_module(model, extra_loss, extra_modules, device, cfg.seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    weights = None
    if cfg.sampling in ("labels", "crops"):
        weights = np.array([float((ds._load(i)[1] != IGNORE_INDEX).sum()) for i in range(len(ds))])
    best_miou, best_epoch, best_state = -math.inf, 0, None
    history: list[dict] = []
    t_start = time.perf_counter()
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        n_steps = cfg.steps_per_epoch if cfg.steps is None else min(cfg.steps_per_epoch, cfg.steps - step)
        losses = train_epoch(model, step_fn, opt, ds, cfg, gen, device, weights, n_steps, extra_modules, bns,
                             epoch=epoch, desc=desc, progress=progress)
        step += len(losses)
        lr_used = opt.param_groups[0]["lr"]
        sched.step()
        rec = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "lr": lr_used, "val_miou": None,
               "train_seconds": time.perf_counter() - t0}
        last = epoch == cfg.epochs
        if val_items and (epoch % max(1, cfg.eval_every) == 0 or last):
            rec["val_miou"] = validate(model, train_items, val_items, ds, cfg, gen, device)
            score = rec["val_miou"] if np.isfinite(rec["val_miou"]) else -1.0
            if score > best_miou:
                best_miou, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
        elif last and cfg.bn_recalibrate > 0 and not cfg.freeze_bn:
            recalibrate_on_train(model, train_items, ds, cfg, gen, device)
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        if progress if log_epochs is None else log_epochs:
            msg = f"{desc} epoch {epoch}/{cfg.epochs}: loss {rec['loss']:.4f}"
            if rec["val_miou"] is not None:
                msg += f", val mIoU {rec['val_miou']:.4f}"
            progress_write(msg + f" ({rec['seconds']:.1f} s)")
            sys.stdout.flush()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_miou, best_epoch = float("nan"), cfg.epochs
    model.eval()
    return FitResult(best_miou=float(best_miou), best_epoch=best_epoch, history=history,
                     seconds=time.perf_counter() - t_start)


class CheckpointError(ValueError):
    """A checkpoint does not fit the requested model; the message names the file."""


def save_checkpoint(path: str | Path, model: SegModel, meta: dict | None = None) -> Path:
    """Write the model's weights and architecture atomically (loadable with ``weights_only=True``).

    Contents: ``format``, ``version``, ``encoder``, ``num_classes``, ``dropout``, ``decoder_channels``,
    ``output_stride``, ``state_dict`` (all the model's tensors, including attached heads), ``meta`` (JSON-able dict).
    """
    path = Path(path)
    obj = {"format": CHECKPOINT_FORMAT, "version": 1, "encoder": model.encoder_name,
           "num_classes": model.num_classes, "dropout": model.dropout, "decoder_channels": model.decoder_channels,
           "output_stride": model.output_stride,
           "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
           "meta": json.loads(json.dumps(meta or {}, default=str))}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_checkpoint(path: str | Path, model: SegModel | None = None, *, num_classes: int | None = None,
                    encoder: str | None = None, map_location: str = "cpu") -> SegModel:
    """Load a checkpoint written by :func:`save_checkpoint`.

    With ``model`` the weights are loaded into it (its encoder and class count must match); without,
    a model is built from the checkpoint. ``num_classes`` / ``encoder`` state what the caller expects.
    Raises :class:`CheckpointError` (a ValueError) naming the file on any mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types
        raise CheckpointError(f"{path}: not a loadable checkpoint ({unpickle_reason(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        fmt = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a viewal checkpoint (format {fmt!r})")
    want_c = num_classes if num_classes is not None else (model.num_classes if model is not None else None)
    want_e = encoder if encoder is not None else (model.encoder_name if model is not None else None)
    if want_c is not None and int(obj["num_classes"]) != int(want_c):
        raise CheckpointError(f"{path}: checkpoint has {obj['num_classes']} classes, expected {want_c}")
    if want_e is not None and canonical_encoder(obj["encoder"]) != canonical_encoder(want_e):
        raise CheckpointError(f"{path}: checkpoint encoder is {obj['encoder']!r}, expected {want_e!r}")
    if model is None:
        model = build_model(int(obj["num_classes"]), obj["encoder"], dropout=float(obj.get("dropout", 0.25)),
                            decoder_channels=int(obj.get("decoder_channels", 256)),
                            output_stride=int(obj.get("output_stride", 16)))
    try:
        missing, unexpected = model.load_state_dict(obj["state_dict"], strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]})") from None
    # heads attached to the saved model (loss_head, rotation_head, ...) may be absent here: skipped;
    # the network itself must be complete
    bad = [k for k in list(missing) + list(unexpected) if k.startswith("net.")]
    if bad:
        raise CheckpointError(f"{path}: weights do not fit the model (keys {bad[:3]})")
    return model


def checkpoint_meta(path: str | Path) -> dict:
    """The ``meta`` dict stored in a checkpoint."""
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a viewal checkpoint")
    return dict(obj.get("meta", {}))


def train_subset(frames: list, fraction: float, seed: int) -> list:
    """A seeded random share ``fraction`` of ``frames`` (at least 2, in their order); all of them at 1."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return frames
    n = max(2, int(round(fraction * len(frames))))
    idx = np.sort(np.random.default_rng(seed).choice(len(frames), size=min(n, len(frames)), replace=False))
    return [frames[i] for i in idx]
