"""Reports that need no ground truth: what the labels gathered so far contain, and what a model predicts.

A dataset whose test frames have no labels has no mIoU, and none is made up here: these numbers describe
the labels that exist (pixels per class, the classes seen) and the model's predictions (the share of pixels
it gives each class), which is what can be said without ground truth. The mIoU with ground truth is
:func:`viewal.nn.train.evaluate`.

>>> import numpy as np
>>> label_class_counts([np.array([[0, 2], [255, 2]])], 3).tolist()
[1, 0, 2]
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from viewal.datasets.base import IGNORE_INDEX
from viewal.nn.train import iter_eval_predictions

__all__ = ["label_class_counts", "label_summary", "predicted_class_counts", "predicted_class_shares",
           "summary_without_ground_truth"]


def _map_counts(m: np.ndarray, num_classes: int, i: int) -> np.ndarray:
    """(C,) int64 labelled pixels per class of the ``i``-th label map (errors name it)."""
    m = np.asarray(m)
    if m.ndim != 2 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"label map {i} must be an (H, W) integer array, got shape {m.shape} {m.dtype}")
    v = m.ravel()
    v = v[v != IGNORE_INDEX]
    if v.size and (v.min() < 0 or v.max() >= num_classes):
        raise ValueError(f"label map {i} has labels outside 0..{num_classes - 1} (got {v.min()}..{v.max()}; "
                         f"255 = none)")
    return np.bincount(v.astype(np.int64), minlength=num_classes)


def _check_num_classes(num_classes: int) -> int:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return int(num_classes)


def label_class_counts(label_maps: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Labelled pixels per class.

    Args:
        label_maps: (H, W) integer class-id maps (sizes may differ), ``IGNORE_INDEX`` (255) = no label.
        num_classes: C.

    Returns:
        (C,) int64 pixel count per class. A value outside 0..C-1 (other than 255) is an error naming the map
        by its position.
    """
    num_classes = _check_num_classes(num_classes)
    out = np.zeros(num_classes, dtype=np.int64)
    for i, m in enumerate(label_maps):
        out += _map_counts(m, num_classes, i)
    return out


def label_summary(label_maps: Iterable[np.ndarray], num_classes: int) -> dict[str, Any]:
    """What a set of label maps holds, JSON-able.

    Args:
        label_maps: (H, W) integer class-id maps, 255 = no label (e.g. a run's labelled frames).
        num_classes: C.

    Returns:
        ``{"labelled_pixels": int, "labelled_frames": int (maps with at least one labelled pixel),
        "class_pixels": [C ints], "classes_seen": [sorted class ids with at least one pixel]}``.
    """
    num_classes = _check_num_classes(num_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    frames = 0
    for i, m in enumerate(label_maps):
        c = _map_counts(m, num_classes, i)
        counts += c
        frames += bool(c.any())
    return {"labelled_pixels": int(counts.sum()), "labelled_frames": int(frames),
            "class_pixels": counts.tolist(), "classes_seen": np.flatnonzero(counts).tolist()}


def predicted_class_counts(model, frames: Sequence, num_classes: int, *, batch_size: int = 8, device: str = "cpu",
                           size: tuple[int, int] | str | None = None, progress: bool = False) -> np.ndarray:
    """Pixels the model predicts for each class (eval-mode argmax, :func:`viewal.nn.train.iter_eval_predictions`).

    Args:
        model: a segmentation model returning (B, C, H, W) logits (``viewal.nn.model.SegModel``).
        frames: frames, with or without labels (labels are not read), or ``(frame, label_map)`` pairs.
        num_classes: C (the model's output channels).
        size: working (H, W) the model sees; pixels are counted at this size (None: the frames' own).

    Returns:
        (C,) int64 predicted pixels per class.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("predicted_class_counts: no frames")
    own = getattr(model, "num_classes", None)
    if own is not None and int(own) != int(num_classes):
        raise ValueError(f"predicted_class_counts: the model predicts {own} classes, num_classes is {num_classes}")
    counts = np.zeros(int(num_classes), dtype=np.int64)
    for pred, _ in iter_eval_predictions(model, frames, batch_size, device, size=size, progress=progress,
                                         desc="predicted classes"):
        counts += np.bincount(np.asarray(pred, np.int64).ravel(), minlength=num_classes)[:num_classes]
    return counts


def predicted_class_shares(model, frames: Sequence, num_classes: int, *, batch_size: int = 8, device: str = "cpu",
                           size: tuple[int, int] | str | None = None, progress: bool = False) -> np.ndarray:
    """Share of the pixels of ``frames`` the model predicts as each class (:func:`predicted_class_counts`).

    Returns:
        (C,) float64 summing to 1 (a model predicting one class k everywhere gives the unit vector e_k).
    """
    counts = predicted_class_counts(model, frames, num_classes, batch_size=batch_size, device=device, size=size,
                                    progress=progress)
    return counts / counts.sum()


def summary_without_ground_truth(model, frames: Sequence, num_classes: int, label_maps: Iterable[np.ndarray] = (),
                                 *, batch_size: int = 8, device: str = "cpu",
                                 size: tuple[int, int] | str | None = None, progress: bool = False) -> dict[str, Any]:
    """What can be reported of a model and its labels when the evaluation frames have no ground truth.

    Args:
        model: the trained model.
        frames: (N,) frames to predict (e.g. the test split, without labels).
        num_classes: C.
        label_maps: the labels gathered so far ((H, W) maps, 255 = none), e.g. a run's labelled frames.

    Returns:
        JSON-able ``{"labelled_pixels", "labelled_frames", "class_pixels": [C], "classes_seen": [...]}``
        (:func:`label_summary`) with ``"predicted_frames": N`` and ``"predicted_class_shares": [C]``
        (:func:`predicted_class_shares`). There is no mIoU key: without ground truth there is no mIoU.
    """
    out = label_summary(label_maps, num_classes)
    frames = list(frames)
    shares = predicted_class_shares(model, frames, num_classes, batch_size=batch_size, device=device, size=size,
                                    progress=progress)
    out.update(predicted_frames=len(frames), predicted_class_shares=[float(x) for x in shares])
    return out
