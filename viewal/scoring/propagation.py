"""3D label propagation in the active-learning loop: the labels people gave, carried to every pool frame of
their scene that sees the same surface (docs/propagation.md, "In the learner").

The ledger stores human labels only. Propagated labels are derived from them, the scene's geometry, the run's one
depth test and its :class:`~viewal.kernels.PropagationRule`, scene by scene and for the scene's **pool frames
only** (validation and test frames are never passed, so they never receive a label):

* :func:`propagate_scene` — one scene: the pool frames' label maps and human masks in, a
  :class:`~viewal.kernels.Propagation` out, whose ``propagated`` pixels never lie inside a human mask (a pixel a
  person left unlabelled inside a labelled region stays unlabelled: the human answer wins there too);
* :func:`covered_regions` — the regions whose pixels are mostly known through propagation: selection counts
  them as labelled, like the regions a person answered;
* :func:`ledger_propagation` — every pool scene of a ledger (optionally as it stood at a past cycle), for the
  report and the scripts;
* :class:`PropagationStore` — the scenes' results beside the ledger, one ``.npz`` per scene written atomically
  and keyed by (labels of the scene, depth test, rule, pool frames), so a resumed or killed run reads back
  exactly what it trained on.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.config import ALConfig
from viewal.core.io import atomic_path
from viewal.datasets import IGNORE_INDEX
from viewal.datasets.base import stack_scene
from viewal.kernels.propagate import NO_LABEL, Propagation, PropagationRule, propagate_labels
from viewal.scoring.executors import overlap_test_key

__all__ = ["ScenePropagation", "propagate_scene", "covered_regions", "propagation_key", "PropagationStore",
           "ledger_propagation", "pool_scenes", "propagation_metrics"]

_FIELDS = ("labels", "propagated", "votes", "views", "majority", "majority_votes", "agreement")


@dataclass(frozen=True)
class ScenePropagation:
    """The propagation of one scene's pool frames.

    Attributes:
        scene_id: the scene. frame_ids: (V,) its pool frames, in pool order.
        human: (V, H, W) bool, the pixels inside the human masks of the ledger.
        result: :class:`~viewal.kernels.Propagation` of those frames (``labels`` = human label, else
            propagated class, else 255; ``propagated`` never inside ``human``; votes, views, agreement).
    """

    scene_id: str
    frame_ids: tuple[str, ...]
    human: np.ndarray
    result: Any

    def index(self, frame_id: str) -> int:
        try:
            return self.frame_ids.index(frame_id)
        except ValueError:
            raise KeyError(f"{self.scene_id}/{frame_id} is not a pool frame of scene {self.scene_id}") from None

    @property
    def n_propagated(self) -> int:
        return int(np.count_nonzero(self.result.propagated))


def propagate_scene(frames: Sequence, labels: np.ndarray, human: np.ndarray, *, depth_test, rule):
    """Propagate one scene's human labels among its pool frames.

    Args:
        frames: (V,) pool frames of one scene (their depth, ``K`` and ``world_T_cam`` are read).
        labels: (V, H, W) int class ids of the human labels, 255 = none.
        human: (V, H, W) bool, the pixels inside the human masks (labelled or left unlabelled on purpose).
        depth_test: the run's :class:`~viewal.kernels.DepthTest`; rule: its
            :class:`~viewal.kernels.PropagationRule`.
    Returns:
        :class:`~viewal.kernels.Propagation`; a pixel inside ``human`` is never propagated (its label, or its
        255, is the person's).
    """
    human = np.asarray(human, dtype=bool)
    src = np.where(human, np.asarray(labels), NO_LABEL)
    geo = stack_scene(frames)
    p = propagate_labels(src, geo["depths"], geo["Ks"], geo["world_T_cams"], depth_test=depth_test, rule=rule)
    inside = p.propagated & human
    if inside.any():  # a pixel the person left at 255 inside a labelled region stays unlabelled
        p = replace(p, labels=np.where(inside, NO_LABEL, p.labels), propagated=p.propagated & ~human)
    return p


def covered_regions(regions: np.ndarray, propagated: np.ndarray, min_share: float) -> np.ndarray:
    """(N, H, W) bool: the pixels of every region whose share of propagated pixels is at least ``min_share``.

    regions: (N, H, W) int region ids per frame (superpixels, or zeros for whole-frame regions); propagated:
    (N, H, W) bool. A region's share is its propagated pixels over all its pixels, per frame.
    """
    regions = np.asarray(regions)
    propagated = np.asarray(propagated, dtype=bool)
    if regions.shape != propagated.shape:
        raise ValueError(f"covered_regions: regions {regions.shape} and propagated {propagated.shape} differ")
    out = np.zeros(regions.shape, dtype=bool)
    for i in range(regions.shape[0]):
        if not propagated[i].any():
            continue
        r = regions[i].ravel().astype(np.int64)
        size = np.bincount(r)
        hit = np.bincount(r[propagated[i].ravel()], minlength=size.size)
        full = (size > 0) & (hit >= min_share * size)
        out[i] = full[regions[i]]
    return out


def propagation_key(frame_ids: Sequence[str], labels: np.ndarray, human: np.ndarray, depth_test, rule) -> str:
    """SHA-1 naming a scene's propagation: its pool frames, its human labels and masks, the decisive part of the
    depth test (mode and tolerances or distance; not the backend, which gives the same integers) and the rule."""
    h = hashlib.sha1()
    h.update(json.dumps({"frames": list(frame_ids), "test": overlap_test_key(depth_test), "rule": rule.to_dict(),
                         "shape": list(np.shape(labels)), "v": 1}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.uint8)).tobytes())
    h.update(np.packbits(np.asarray(human, dtype=bool)).tobytes())
    return h.hexdigest()


class PropagationStore:
    """The current propagation of each scene, one ``.npz`` per scene under ``directory`` (written atomically,
    :func:`viewal.core.io.atomic_path`), tagged with its :func:`propagation_key`; a file with another key, or
    unreadable, counts as absent."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, scene_id: str) -> Path:
        name = scene_id if re.fullmatch(r"[A-Za-z0-9_.-]+", scene_id) and not scene_id.startswith(".") \
            else "scene-" + hashlib.sha1(scene_id.encode()).hexdigest()[:16]
        return self.directory / f"{name}.npz"

    def save(self, scene_id: str, key: str, result) -> Path:
        arrays = {f: np.asarray(getattr(result, f)) for f in _FIELDS}
        arrays["labels"] = arrays["labels"].astype(np.uint8)
        arrays["majority"] = arrays["majority"].astype(np.uint8)
        arrays.update(key=np.array(key), scene_id=np.array(scene_id), rule=np.array(json.dumps(result.rule.to_dict())))
        path = self.path(scene_id)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        return path

    def load(self, scene_id: str, key: str):
        """The stored :class:`~viewal.kernels.Propagation` of ``scene_id`` when its key is ``key``; else None."""
        path = self.path(scene_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key or str(z["scene_id"]) != scene_id:
                    return None
                a = {f: z[f] for f in _FIELDS}
                rule = PropagationRule.from_dict(json.loads(str(z["rule"])))
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: propagate again
            return None
        a["labels"] = a["labels"].astype(np.int64)
        a["majority"] = a["majority"].astype(np.int64)
        return Propagation(**a, rule=rule)


def pool_scenes(pool: Sequence) -> list[tuple[str, list]]:
    """The pool's frames grouped by scene, scenes in order of first appearance, frames in pool order."""
    by: dict[str, list] = {}
    for f in pool:
        by.setdefault(f.scene_id, []).append(f)
    return list(by.items())


def scene_labels(ledger, frames: Sequence, hw: tuple[int, int], max_cycle: int | None = None):
    """(labels (V, H, W) int64, human (V, H, W) bool) of a scene's frames from a ledger (255 / False where none)."""
    labels = np.stack([ledger.label_map(f.key, hw, max_cycle=max_cycle) for f in frames])
    human = np.stack([ledger.labelled_mask(f.key, hw, max_cycle=max_cycle) for f in frames])
    return labels, human


def ledger_propagation(pool: Sequence, ledger, config: ALConfig, hw: tuple[int, int], *, max_cycle: int | None = None,
                       store: PropagationStore | None = None) -> dict[str, ScenePropagation]:
    """The propagation of every pool scene of a ledger under a run's config (``depth_test``, ``propagate_rule``).

    ``max_cycle``: the labels as they stood after that cycle (the report's past cycles); ``store``: read and
    write the scenes' results there (the learner's cache)."""
    out = {}
    for sid, frames in pool_scenes(pool):
        labels, human = scene_labels(ledger, frames, hw, max_cycle)
        fids = tuple(f.frame_id for f in frames)
        key = propagation_key(fids, labels, human, config.depth_test, config.propagate_rule)
        result = store.load(sid, key) if store is not None else None
        if result is None:
            result = propagate_scene(frames, labels, human, depth_test=config.depth_test, rule=config.propagate_rule)
            if store is not None:
                store.save(sid, key, result)
        out[sid] = ScenePropagation(sid, fids, human, result)
    return out


def propagated_items(scenes: dict[str, ScenePropagation], pool: Sequence, labelled: set[str] | Sequence[str],
                     weight: float) -> list[tuple]:
    """The training items of a propagating run, in pool order: ``(frame, labels (H, W) int64, weight (H, W)
    float32)`` for every pool frame with a human label (``labelled``: frame keys) or a propagated one; labels are
    the human ones with the propagated ones beside them (255 elsewhere), ``weight`` is ``weight`` on propagated
    pixels and 1 elsewhere. ``scenes``: :func:`ledger_propagation` of the same labels."""
    labelled = set(labelled)
    items = []
    for f in pool:
        sp = scenes[f.scene_id]
        i = sp.index(f.frame_id)
        prop = sp.result.propagated[i]
        if f.key not in labelled and not prop.any():
            continue
        w = np.where(prop, np.float32(weight), np.float32(1.0)).astype(np.float32)
        items.append((f, sp.result.labels[i].copy(), w))
    return items


def propagation_metrics(scenes: dict[str, ScenePropagation], pool: Sequence, human_pixels: int) -> dict:
    """What the cycle metrics say of propagation, beside (never inside) the costs: ``propagated_pixels``,
    ``propagated_frames`` (pool frames with propagated labels and no human one), ``propagation_multiplier``
    (propagated per human-labelled pixel) and, when pool frames have ground truth, ``propagation_accuracy`` (the
    share of the propagated pixels with a ground-truth class that have it) with ``propagation_checked_pixels``."""
    frames = {f.key: f for f in pool}
    n_prop = n_frames = n_checked = n_right = 0
    for sp in scenes.values():
        for i, fid in enumerate(sp.frame_ids):
            prop = sp.result.propagated[i]
            k = int(np.count_nonzero(prop))
            if not k:
                continue
            n_prop += k
            n_frames += int(not sp.human[i].any())
            f = frames[f"{sp.scene_id}/{fid}"]
            if f.has_labels:
                gt = np.asarray(f.labels)[prop]
                known = gt != IGNORE_INDEX
                n_checked += int(known.sum())
                n_right += int((gt[known] == sp.result.labels[i][prop][known]).sum())
    out = {"propagated_pixels": n_prop, "propagated_frames": n_frames,
           "propagation_multiplier": n_prop / human_pixels if human_pixels else float("nan")}
    if n_checked:
        out.update(propagation_accuracy=n_right / n_checked, propagation_checked_pixels=n_checked)
    return out
