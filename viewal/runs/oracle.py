"""Simulated oracle: answers region queries from the ground truth, optionally wrong on purpose.

With ``wrong_label_rate = ρ`` each queried region is, with probability ρ, labelled entirely with one
wrong class (a class different from the region's majority ground-truth class; ignore pixels stay
ignore), as PAL's noisy-oracle test does (20 %). Whether a region is wrong and which class it gets are
drawn from a generator seeded by ``(seed, frame key, region mask)``, so the same query gets the same
answer whatever the order of the queries and across resumed runs. The counts of regions answered and answered
wrongly are the run's, not the process's: :meth:`Oracle.resume` takes them from the ledger, so a run resumed
in a new process counts what an uninterrupted one counts.

A frame without labels (``Frame.has_labels`` False) cannot be answered: :meth:`Oracle.label` raises
:class:`viewal.datasets.MissingLabelsError` naming it (such data is labelled by people:
``viewal query export`` / ``import``).
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from viewal.datasets.base import MissingLabelsError

__all__ = ["IGNORE_INDEX", "oracle_labels", "majority_class", "region_rng", "Oracle"]

IGNORE_INDEX = 255


def majority_class(gt: np.ndarray, mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> int | None:
    """Most frequent non-ignore class of ``gt`` inside ``mask`` (lowest id on ties), ``None`` if none.

    gt: (H, W) int class ids; mask: (H, W) bool.
    """
    vals = np.asarray(gt)[np.asarray(mask, dtype=bool)]
    vals = vals[vals != ignore_index]
    if vals.size == 0:
        return None
    return int(np.argmax(np.bincount(vals.astype(np.int64))))


def oracle_labels(gt: np.ndarray, mask: np.ndarray, wrong_class: int | None = None,
                  ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Labels of a region from the ground truth.

    Args:
        gt: (H, W) int ground-truth class ids (``ignore_index`` = unlabelled).
        mask: (H, W) bool region.
        wrong_class: if given, every non-ignore pixel of the region gets this class instead.
    Returns:
        (H, W) int64: the ground truth inside ``mask``, ``ignore_index`` outside (and where gt is ignore).
    """
    gt = np.asarray(gt)
    mask = np.asarray(mask, dtype=bool)
    if gt.shape != mask.shape:
        raise ValueError(f"mask has shape {mask.shape}, ground truth {gt.shape}")
    out = np.full(gt.shape, ignore_index, dtype=np.int64)
    out[mask] = gt[mask]
    if wrong_class is not None:
        out[mask & (gt != ignore_index)] = int(wrong_class)
    return out


def region_rng(seed: int, frame_key: str, mask: np.ndarray) -> np.random.Generator:
    """Generator seeded by (seed, frame key, region mask): order-independent and reproducible."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(frame_key).encode())
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
    h.update(np.packbits(m).tobytes())
    words = np.frombuffer(h.digest(), dtype=np.uint32).tolist()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *words])


class Oracle:
    """Simulated oracle over a dataset's ground truth.

    Args:
        dataset: ``viewal.datasets.RGBDDataset`` (the frames it is asked about must have labels).
        wrong_label_rate: probability that a region comes back with one wrong class (0 = perfect oracle).
        seed: seed of the wrong-label draws.

    >>> oracle = Oracle(ds, wrong_label_rate=0.2, seed=1)          # doctest: +SKIP
    >>> labels = oracle.label("scene0/000035", mask)               # doctest: +SKIP
    """

    def __init__(self, dataset: Any, wrong_label_rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= float(wrong_label_rate) <= 1.0:
            raise ValueError(f"wrong_label_rate must lie in [0, 1], got {wrong_label_rate}")
        self.dataset = dataset
        self.wrong_label_rate = float(wrong_label_rate)
        self.seed = int(seed)
        self.num_classes = int(dataset.num_classes)
        #: number of regions answered and of regions answered wrongly (since construction, or in the run of the
        #: ledger given to :meth:`resume`)
        self.n_answered = 0
        self.n_wrong = 0

    def resume(self, ledger: Any) -> Oracle:
        """Take the counts from a run's ledger (:class:`viewal.runs.ledger.Ledger`): ``n_answered`` = the queries
        this oracle answered there (labels of a query with source ``oracle``, or ``seed`` for the seed set's
        whole frames asked in cycle 0), ``n_wrong`` = those of them it answered wrongly (the same keyed draw as
        :meth:`wrong_class`, on the queries' recorded masks). A learner opening a ledger that already holds
        answers (a resumed run) calls it once; the counts then go on as an uninterrupted run's. Returns self."""
        source = {r["query_id"]: r["source"] for r in ledger.labels() if r["query_id"] is not None}
        answered = [q for q in ledger.queries() if source.get(q.query_id) in ("oracle", "seed")]
        wrong = 0
        if self.wrong_label_rate > 0.0:
            by_frame: dict[str, list] = {}
            for q in answered:
                by_frame.setdefault(f"{q.scene_id}/{q.frame_id}", []).append(q)
            for key, qs in by_frame.items():
                frame = self.dataset.frame(key)
                gt = np.asarray(frame.labels)
                wrong += sum(self.wrong_class(frame.key, gt, np.asarray(q.mask, dtype=bool)) is not None for q in qs)
        self.n_answered, self.n_wrong = len(answered), wrong
        return self

    def wrong_class(self, frame_key: str, gt: np.ndarray, mask: np.ndarray) -> int | None:
        """The wrong class this region gets, or ``None`` when it is answered correctly."""
        if self.wrong_label_rate <= 0.0:
            return None
        rng = region_rng(self.seed, frame_key, mask)
        if rng.random() >= self.wrong_label_rate:
            return None
        maj = majority_class(gt, mask)
        if maj is None or self.num_classes < 2:
            return None
        c = int(rng.integers(self.num_classes - 1))
        return c if c < maj else c + 1

    def label(self, frame: Any, mask: np.ndarray) -> np.ndarray:
        """Labels for ``mask`` of ``frame`` (a Frame, or a key ``"scene/frame"``): (H, W) int64, 255 outside.

        Raises :class:`viewal.datasets.MissingLabelsError` (a ValueError) naming the frame when it has no labels.
        """
        if isinstance(frame, str):
            frame = self.dataset.frame(frame)
        if not frame.has_labels:
            raise MissingLabelsError(f"the simulated oracle answers from ground truth, but frame {frame.key} has no "
                                     f"labels; label its queries by hand instead (viewal query export / import)")
        gt = np.asarray(frame.labels)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"oracle: mask of shape {mask.shape} does not match frame {frame.key} ({gt.shape})")
        wc = self.wrong_class(frame.key, gt, mask)
        self.n_answered += 1
        self.n_wrong += wc is not None
        return oracle_labels(gt, mask, wc)

    def label_query(self, query: Any) -> np.ndarray:
        """Labels for a :class:`viewal.selection.RegionQuery`."""
        return self.label(f"{query.scene_id}/{query.frame_id}", query.mask)
