"""What selection works on and returns: region queries, the scored pool over global region ids, a selection;
pooling pixel scores into regions, and turning a selection back into queries (pure functions on arrays)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RegionQuery", "RegionPool", "Selection", "whole_image_regions", "region_sizes", "pool_frames",
           "labelled_regions", "build_pool", "concat_pools", "queries_from_selection"]


@dataclass
class RegionQuery:
    """One region to be labelled.

    Attributes:
        scene_id, frame_id: the frame it lies in.
        mask: (H, W) bool, True inside the region.
        score: pooled acquisition score of the region (ViewAL: mean view entropy).
        region_id: region id in the frame's region map (superpixel id; 0 in whole-image mode).
        view_score: pooled view score (ViewAL: mean view divergence) or ``None``.
        cycle: active-learning cycle that asked it (``-1`` = not recorded).
        query_id: row id in the ledger once recorded (``None`` before).
    """

    scene_id: str
    frame_id: str
    mask: np.ndarray
    score: float
    region_id: int = -1
    view_score: float | None = None
    cycle: int = -1
    query_id: int | None = None

    @property
    def frame_key(self) -> str:
        return f"{self.scene_id}/{self.frame_id}"

    @property
    def n_pixels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def __repr__(self) -> str:
        vs = "None" if self.view_score is None else f"{self.view_score:.4g}"
        return (f"RegionQuery({self.frame_key!r}, region={self.region_id}, pixels={self.n_pixels}, "
                f"score={self.score:.4g}, view_score={vs})")


@dataclass
class RegionPool:
    """Pooled scores of every region of the unlabelled pool (global indexing).

    Attributes:
        scene_ids, frame_ids: (F,) identity of each pool frame.
        offsets: (F+1,) int64, frame ``f`` owns global ids ``offsets[f]:offsets[f+1]``.
        score: (R,) float64 pooled score (higher = more informative; ``-inf`` allowed).
        view: (R,) float64 pooled view score (ViewAL: VD); equals ``score`` when a scorer has none.
        sizes: (R,) int64 pixels per region.
        available: (R,) bool, False for already-labelled or empty regions (never selected).
        features: (R, D) float32 one feature vector per region (``Scorer.region_features``), for
            set-level selectors (k-centre); None for scorers that rank by score.
    """

    scene_ids: list[str]
    frame_ids: list[str]
    offsets: np.ndarray
    score: np.ndarray
    view: np.ndarray
    sizes: np.ndarray
    available: np.ndarray
    features: np.ndarray | None = None

    @property
    def n_regions(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_frames(self) -> int:
        return len(self.frame_ids)

    def frame_of(self, gid: np.ndarray | int) -> np.ndarray:
        """Pool frame index of global id(s)."""
        return np.searchsorted(self.offsets, np.asarray(gid), side="right") - 1

    def local_id(self, gid: np.ndarray | int) -> np.ndarray:
        """Region id inside its frame of global id(s)."""
        g = np.asarray(gid)
        return g - self.offsets[self.frame_of(g)]

    def _frame_index(self) -> dict[tuple[str, str], int]:
        idx = self.__dict__.get("_index")
        if idx is None or len(idx) != len(self.frame_ids):
            idx = {(s, f): i for i, (s, f) in enumerate(zip(self.scene_ids, self.frame_ids))}
            self.__dict__["_index"] = idx
        return idx

    def frame_offsets(self, scene_id: str, frame_ids: Sequence[str]) -> np.ndarray:
        """(N,) first global id of each listed frame of ``scene_id`` (-1 when the frame is not in the pool).

        Use it to map an overlap table computed on a scene's frame list onto this pool.
        """
        where = self._frame_index()
        return np.array([self.offsets[where[(scene_id, f)]] if (scene_id, f) in where else -1 for f in frame_ids],
                        dtype=np.int64)

    def frame_region_counts(self, scene_id: str, frame_ids: Sequence[str]) -> np.ndarray:
        """(N,) number of regions of each listed frame (0 when not in the pool)."""
        where = self._frame_index()
        out = np.zeros(len(frame_ids), dtype=np.int64)
        for k, f in enumerate(frame_ids):
            i = where.get((scene_id, f))
            if i is not None:
                out[k] = self.offsets[i + 1] - self.offsets[i]
        return out


@dataclass
class Selection:
    """Result of a selection rule.

    Attributes:
        ids: (K,) int64 global ids of the selected regions, in pick order.
        anchors: (K,) int64 region whose turn produced each pick (ViewAL: the high-VE region; = ids otherwise).
        score: (K,) float64 pooled score of each selected region (k-centre: its distance at pick time).
        view: (K,) float64 pooled view score of each selected region.
        pixels: total pixels selected.
    """

    ids: np.ndarray
    anchors: np.ndarray
    score: np.ndarray
    view: np.ndarray
    pixels: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def whole_image_regions(n: int, height: int, width: int) -> np.ndarray:
    """(n, H, W) int32 zeros: one region per frame (whole-image selection)."""
    return np.zeros((n, height, width), dtype=np.int32)


def region_sizes(regions: np.ndarray, n_regions: int | None = None) -> np.ndarray:
    """Pixels per region. regions: (H, W) int ids 0..R-1 → (R,) int64."""
    r = np.asarray(regions).ravel()
    R = int(r.max()) + 1 if n_regions is None else int(n_regions)
    return np.bincount(r, minlength=R).astype(np.int64)


def pool_frames(pixel: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean pixel score per region for a stack of frames, with global indexing.

    Args:
        pixel: (N, H, W) float scores (``-inf`` allowed: the region becomes ``-inf``).
        regions: (N, H, W) int region ids, local to each frame (0..R_i-1).
    Returns:
        score (R,) float64 mean per region (NaN for empty ids), sizes (R,) int64, offsets (N+1,) int64.
    """
    pixel = np.asarray(pixel)
    regions = np.asarray(regions)
    if pixel.shape != regions.shape or regions.ndim != 3:
        raise ValueError(f"pixel scores {pixel.shape} and regions {regions.shape} must both be (N, H, W)")
    if regions.size and regions.min() < 0:
        raise ValueError("regions: region ids must be >= 0")
    counts = (regions.reshape(len(regions), -1).max(axis=1).astype(np.int64) + 1 if regions.size
              else np.zeros(0, np.int64))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gid = (regions.astype(np.int64) + offsets[:-1, None, None]).ravel()
    R = int(offsets[-1])
    sizes = np.bincount(gid, minlength=R).astype(np.int64)
    with np.errstate(invalid="ignore"):
        tot = np.bincount(gid, weights=pixel.astype(np.float64).ravel(), minlength=R)
        score = np.where(sizes > 0, tot / np.maximum(sizes, 1), np.nan)
    return score, sizes, offsets


def labelled_regions(regions: np.ndarray, labelled: np.ndarray, min_fraction: float | None = None) -> np.ndarray:
    """Regions counted as already labelled.

    Args:
        regions: (N, H, W) int local region ids.
        labelled: (N, H, W) bool, pixels that already have a label (any source).
        min_fraction: a region is labelled when at least this fraction of its pixels is; ``None`` (default):
            when any of its pixels is (the ledger refuses labels overlapping labelled pixels by default).
    Returns:
        (R,) bool over the global ids of :func:`pool_frames`.
    """
    regions = np.asarray(regions)
    labelled = np.asarray(labelled, dtype=bool)
    if labelled.shape != regions.shape:
        raise ValueError(f"labelled mask {labelled.shape} must match regions {regions.shape}")
    frac, _, _ = pool_frames(labelled.astype(np.float64), regions)
    frac = np.nan_to_num(frac, nan=0.0)
    return frac > 0 if min_fraction is None else frac >= min_fraction - 1e-12


def build_pool(scene_id: str, frame_ids: Sequence[str], regions: np.ndarray, pixel: np.ndarray,
               view: np.ndarray | None = None, labelled: np.ndarray | None = None,
               labelled_fraction: float | None = None, features: np.ndarray | None = None) -> RegionPool:
    """Pool the pixel scores of one scene's pool frames into regions.

    Args:
        scene_id: scene of the frames.
        frame_ids: (N,) frame ids.
        regions: (N, H, W) int local region ids (superpixels, or :func:`whole_image_regions`).
        pixel: (N, H, W) pixel scores (``Scores.pixel``).
        view: (N, H, W) view scores (``Scores.view``) or None (= ``pixel``).
        labelled: (N, H, W) bool already-labelled pixels, or None.
        labelled_fraction: see :func:`labelled_regions`.
        features: (R, D) region features in the pool's global order (``Scorer.region_features``), or None.
    """
    if len(frame_ids) != len(regions):
        raise ValueError(f"frame_ids has {len(frame_ids)} entries but regions has {len(regions)} frames")
    score, sizes, offsets = pool_frames(pixel, regions)
    vscore = score if view is None else pool_frames(view, regions)[0]
    available = sizes > 0
    if labelled is not None:
        available &= ~labelled_regions(regions, labelled, labelled_fraction)
    if features is not None and len(features) != len(sizes):
        raise ValueError(f"features has {len(features)} rows, the pool {len(sizes)} regions")
    return RegionPool(scene_ids=[scene_id] * len(frame_ids), frame_ids=list(map(str, frame_ids)), offsets=offsets,
                      score=score, view=vscore, sizes=sizes, available=available, features=features)


def concat_pools(pools: Sequence[RegionPool]) -> RegionPool:
    """One pool from several (e.g. one per scene); global ids follow the order of ``pools``."""
    if not pools:
        return RegionPool([], [], np.zeros(1, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                          np.zeros(0, bool))
    offs = [np.zeros(1, np.int64)]
    base = 0
    for p in pools:
        offs.append(p.offsets[1:] + base)
        base += p.n_regions
    return RegionPool(
        scene_ids=[s for p in pools for s in p.scene_ids],
        frame_ids=[f for p in pools for f in p.frame_ids],
        offsets=np.concatenate(offs).astype(np.int64),
        score=np.concatenate([p.score for p in pools]).astype(np.float64),
        view=np.concatenate([p.view for p in pools]).astype(np.float64),
        sizes=np.concatenate([p.sizes for p in pools]).astype(np.int64),
        available=np.concatenate([p.available for p in pools]).astype(bool),
        features=(np.concatenate([p.features for p in pools]).astype(np.float32)
                  if all(p.features is not None for p in pools) else None),
    )


def queries_from_selection(pool: RegionPool, selection: Selection,
                           regions_of: Callable[[int], np.ndarray] | Sequence[np.ndarray],
                           cycle: int = -1) -> list[RegionQuery]:
    """RegionQuery objects (with masks) for a selection.

    Args:
        pool: the pool the selection was made on.
        selection: its result.
        regions_of: pool frame index → (H, W) region map of that frame (a callable or a sequence).
        cycle: cycle number stored on the queries.
    """
    get = regions_of if callable(regions_of) else (lambda i: regions_of[i])
    out = []
    frames = pool.frame_of(selection.ids)
    for k, g in enumerate(selection.ids):
        f = int(frames[k])
        rid = int(g - pool.offsets[f])
        out.append(RegionQuery(scene_id=pool.scene_ids[f], frame_id=pool.frame_ids[f],
                               mask=np.asarray(get(f)) == rid, score=float(selection.score[k]), region_id=rid,
                               view_score=float(selection.view[k]), cycle=cycle))
    return out
