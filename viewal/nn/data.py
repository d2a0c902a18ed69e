"""Torch datasets over ``viewal.datasets`` frames: partial labels, working size, ViewAL's augmentation.

A training *item* is ``(frame, label_map)`` or ``(frame, label_map, extras)``:

* ``frame``: a :class:`viewal.datasets.Frame` (its RGB is used);
* ``label_map``: (H, W) int array, class ids, 255 = unlabelled / ignored (the active-learning loop passes
  the labelled regions of a frame; the full-data reference passes the frame's own labels);
* ``extras``: optional dict of further per-pixel maps passed through to the batch under their own key
  (e.g. ``"negative"`` (C, H, W) bool, ``"superpixels"`` (H, W) int, ``"weight"`` (H, W) float: each pixel's
  weight in the cross-entropy, ``viewal.nn.train.segmentation_loss``): arrays whose last two axes are
  (H, W) are resized (nearest) and flipped with the image; anything else is passed unchanged.

Samples are dicts ``{"image": (3, h, w) float32 RGB in [0, 1] (the model normalises for its encoder),
"label": (h, w) int64, "index": int, ...}``
at the working size (h, w). RGB is area-resized, labels and extras nearest-resized.

Augmentation (ViewAL's recipe): horizontal flip with probability 1/2, Gaussian blur with probability
1/2 (σ uniform in (0, 1] px at 240×320, scaled with the working size).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from viewal.datasets.base import IGNORE_INDEX
from viewal.datasets.canonical import resize_nearest

__all__ = ["SegmentationDataset", "UnlabelledDataset", "collate", "normalise_rgb", "resize_rgb", "as_items",
           "parse_size"]


def parse_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"120x160"`` (H x W) or (H, W) -> (H, W); None/""/"full" -> None (the frames' own size)."""
    if text is None:
        return None
    if isinstance(text, str):
        t = text.strip().lower()
        if t in ("", "full", "none"):
            return None
        try:
            h, w = (int(v) for v in t.split("x"))
        except ValueError:
            raise ValueError(f"size must look like HxW, e.g. 120x160, got {text!r}") from None
    else:
        h, w = (int(v) for v in text)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {h}x{w}")
    return h, w


def resize_rgb(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 (area filter when shrinking, linear when enlarging)."""
    if size is None or rgb.shape[:2] == tuple(size):
        return rgb
    shrink = size[0] < rgb.shape[0]
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def normalise_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]. The encoder's own mean/std are applied inside
    :meth:`viewal.nn.model.SegModel.encode`."""
    x = rgb.astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize_map(a: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-resize an array whose last two axes are (H, W)."""
    if size is None or a.shape[-2:] == tuple(size):
        return a
    if a.ndim == 2:
        return resize_nearest(a, size)
    flat = a.reshape(-1, *a.shape[-2:])
    return np.stack([resize_nearest(x, size) for x in flat]).reshape(*a.shape[:-2], *size)


def as_items(frames_or_items: Sequence) -> list[tuple]:
    """Frames (with labels) or (frame, label[, extras]) tuples -> list of (frame, label, extras) tuples."""
    out = []
    for it in frames_or_items:
        if isinstance(it, tuple):
            if len(it) == 2:
                out.append((it[0], it[1], {}))
            elif len(it) == 3:
                out.append((it[0], it[1], dict(it[2] or {})))
            else:
                raise ValueError(f"an item must be (frame, label) or (frame, label, extras), got {len(it)} values")
        else:
            if not getattr(it, "has_labels", False):
                raise ValueError(f"frame {getattr(it, 'key', it)!r} has no labels; pass (frame, label_map) items")
            out.append((it, None, {}))
    return out


class SegmentationDataset(torch.utils.data.Dataset):
    """(frame, label_map[, extras]) items -> augmented samples at the working size.

    Args:
        items: see the module docstring; bare frames use their own ``labels``.
        size: working (h, w) or None (frame resolution).
        augment: apply flip + blur.
        flip, blur: switch each augmentation.
        seed: seed of the augmentation generator (draws happen in sample order).
        cache: keep the resized RGB/labels in memory (frames are small at working sizes).
    """

    def __init__(self, items: Sequence, size: tuple[int, int] | None = None, *, augment: bool = False,
                 flip: bool = True, blur: bool = True, seed: int = 0, cache: bool = True) -> None:
        self.items = as_items(items)
        self.size = parse_size(size)
        self.augment, self.flip, self.blur = augment, flip, blur
        self.rng = np.random.default_rng(seed)
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, dict]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        if i in self._cache:
            return self._cache[i]
        frame, label, extras = self.items[i]
        rgb = frame.rgb
        if label is None:
            label = frame.labels
        label = np.asarray(label)
        if label.shape != rgb.shape[:2]:
            raise ValueError(f"label map of {frame.key} has shape {label.shape}, image is {rgb.shape[:2]}")
        if not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"label map of {frame.key} must be integer, got {label.dtype}")
        rgb = resize_rgb(rgb, self.size)
        label = _resize_map(label.astype(np.int64), self.size)
        ex = {k: (_resize_map(np.asarray(v), self.size)
                  if isinstance(v, np.ndarray) and v.ndim >= 2 and v.shape[-2:] == frame.rgb.shape[:2] else v)
              for k, v in extras.items()}
        out = (rgb, label, ex)
        if self.cache:
            self._cache[i] = out
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        rgb, label, extras = self._load(i)
        extras = dict(extras)
        if self.augment:
            if self.flip and self.rng.random() < 0.5:
                rgb, label = rgb[:, ::-1], label[:, ::-1]
                extras = {k: (v[..., ::-1] if isinstance(v, np.ndarray) and v.ndim >= 2
                              and v.shape[-2:] == label.shape else v) for k, v in extras.items()}
            if self.blur and self.rng.random() < 0.5:
                sigma = float(self.rng.random()) * rgb.shape[1] / 320.0
                if sigma > 0.05:
                    rgb = cv2.GaussianBlur(np.ascontiguousarray(rgb), (0, 0), sigmaX=sigma)
        sample = {"image": torch.from_numpy(normalise_rgb(np.ascontiguousarray(rgb))),
                  "label": torch.from_numpy(np.ascontiguousarray(label)), "index": i}
        for k, v in extras.items():
            sample[k] = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        return sample

    def labelled_fraction(self) -> float:
        """Fraction of pixels (at the working size) that carry a label."""
        tot = lab = 0
        for i in range(len(self)):
            label = self._load(i)[1]
            tot += label.size
            lab += int((label != IGNORE_INDEX).sum())
        return lab / max(tot, 1)


class UnlabelledDataset(torch.utils.data.Dataset):
    """Frames -> uint8 RGB (h, w, 3) at the working size (SimSiam draws its own augmentations)."""

    def __init__(self, frames: Sequence, size: tuple[int, int] | None = None) -> None:
        self.frames = list(frames)
        self.size = parse_size(size)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self._cache:
            self._cache[i] = resize_rgb(self.frames[i].rgb, self.size)
        return self._cache[i]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape; other values become lists."""
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in vals) and len({tuple(v.shape) for v in vals}) == 1:
            out[k] = torch.stack(vals)
        elif all(isinstance(v, (int, np.integer)) for v in vals):
            out[k] = torch.as_tensor(vals)
        else:
            out[k] = vals
    return out
