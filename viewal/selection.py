"""Region selection: pure functions on arrays over a *global* superpixel index.

The pool is every region (superpixel, or the whole frame in whole-image mode) of every frame of the
unlabelled pool. Frame ``f`` owns the global ids ``offsets[f] .. offsets[f+1]-1``; region ``r`` of frame
``f`` (its id in the frame's region map) has global id ``offsets[f] + r``.

Selectors (``Scorer.selector()``; the functional form: :func:`select` by rule name):

* :class:`ViewALSelector` (``"viewal"``) — ViewAL's selection (Siddiqui et al., CVPR 2020, Sec. 3.4): visit
  regions by pooled score (VE), highest first; for each region ``r`` neither labelled nor flagged, the
  candidates are ``r`` and every unflagged region whose overlap with ``r`` exceeds the threshold (0.25) in
  either direction; the candidate with the highest pooled view score (VD, compared as floats) is labelled;
  all candidates and every region overlapping the winner are flagged. Stops when the labelled pixels reach
  the budget.
* :class:`GreedySelector` (``"greedy"``) — regions by score, highest first, until the budget is reached;
  with ``dedup`` each pick flags the regions overlapping it (same dedup, no view choice).
* :class:`KCenterSelector` (``"kcenter"``) — k-centre greedy (core-set) on the pool's region features:
  :func:`kcenter_greedy`.
* PAL's sub-queries live with the PAL scorer (``viewal.scorers.pal.PALSelector``).
* :class:`RandomShareSelector` — any of the above for ``1 − share`` of the budget, then random regions for
  the rest (:func:`select_random_share`): uncertainty picks plus an exploration share.

Whole-image selection is the same machinery with one region per frame (region map all zeros,
:func:`whole_image_regions`); the overlap table of all-zero maps is a frame-level overlap.

Overlaps come as a sparse *symmetric* boolean adjacency over global ids (``scipy.sparse.csr_matrix``),
built from a coverage table's rows (``t_frame, t_sp, s_frame, s_sp, coverage``) by
:func:`overlap_adjacency`; selection never depends on the kernel's own table class.

Budget accounting: a region's cost is its pixel count; selection stops as soon as the selected
pixels reach ``budget_pixels``, so it is never over budget by more than one region. Ties are broken
deterministically (lower global id first; the anchor region ``r`` wins VD ties among its candidates).

How a loop uses it (per cycle; the adjacency can be built once per run when the pool's frames stay the
same, since labelled regions are excluded through ``RegionPool.available``, not by rebuilding)::

    pools, tables = [], []
    for scene, frames in pool_frames_by_scene:                 # unlabelled-pool frames of each scene
        sp = region maps (N, H, W)                             # superpixels, or whole_image_regions(...)
        inputs = build_scene_inputs(frames, sp, scorer.needs, **compute_needs(scorer.needs, ctx), rng=...)
        s = scorer(inputs)
        pools.append(build_pool(scene, fids, sp, s.pixel, s.view, labelled=ledger masks (N, H, W),
                                features=scorer.region_features(inputs)))
        tables.append((scene, fids, viewal.kernels.superpixel_overlap(sp, depths, Ks, poses)))
    pool = concat_pools(pools)
    context = SelectionContext(adjacency=lambda: overlap_adjacency(pool, tables), model=..., frames=...)
    sel = scorer.selector(dedup=False).select(pool, budget_pixels, context)
    queries = queries_from_selection(pool, sel, regions_of=lambda f: region map of pool frame f, cycle=c)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "RegionQuery", "RegionPool", "Selection", "OVERLAP_THRESHOLD", "whole_image_regions", "region_sizes",
    "pool_frames", "build_pool", "concat_pools", "labelled_regions", "overlap_edges", "adjacency_from_edges",
    "overlap_adjacency", "empty_adjacency", "select_viewal", "select_greedy", "select_random_share",
    "kcenter_greedy", "region_features", "select", "queries_from_selection",
    "SelectionContext", "Selector", "GreedySelector", "ViewALSelector", "KCenterSelector",
    "RandomShareSelector", "with_random_share",
]

#: ViewAL's overlap threshold: two regions are "the same 3D region" if either covers the other by more.
OVERLAP_THRESHOLD = 0.25


# --------------------------------------------------------------------------------------------- data types

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


# --------------------------------------------------------------------------------------------- pooling

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


# --------------------------------------------------------------------------------------------- overlaps

def overlap_edges(t_frame: np.ndarray, t_sp: np.ndarray, s_frame: np.ndarray, s_sp: np.ndarray,
                  coverage: np.ndarray, frame_offsets: np.ndarray, frame_counts: np.ndarray | None = None,
                  threshold: float = OVERLAP_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a coverage table whose coverage exceeds ``threshold``, as global-id pairs.

    Args:
        t_frame, t_sp, s_frame, s_sp: (M,) int, frame indices (into the scene's frame list the table was
            computed on) and local superpixel ids of target and source.
        coverage: (M,) float, cov(t, r; s, q) = fraction of target region r covered by source region q.
        frame_offsets: (N,) int64 first global id of each of those frames in the pool, -1 = not in pool
            (rows touching such frames are dropped); see :meth:`RegionPool.frame_offsets`.
        frame_counts: (N,) regions per frame, to check ids (optional).
        threshold: keep rows with ``coverage > threshold``.
    Returns:
        (rows, cols) int64 global ids ``(target, source)``; self pairs removed.
    """
    t_frame = np.asarray(t_frame, dtype=np.int64)
    s_frame = np.asarray(s_frame, dtype=np.int64)
    t_sp = np.asarray(t_sp, dtype=np.int64)
    s_sp = np.asarray(s_sp, dtype=np.int64)
    cov = np.asarray(coverage, dtype=np.float64)
    frame_offsets = np.asarray(frame_offsets, dtype=np.int64)
    m = len(cov)
    for name, a in (("t_frame", t_frame), ("t_sp", t_sp), ("s_frame", s_frame), ("s_sp", s_sp)):
        if a.shape != (m,):
            raise ValueError(f"overlap table: {name} has shape {a.shape}, expected ({m},) like coverage")
    if m and (t_frame.max() >= len(frame_offsets) or s_frame.max() >= len(frame_offsets) or
              min(t_frame.min(), s_frame.min()) < 0):
        raise ValueError(f"overlap table: frame index outside 0..{len(frame_offsets) - 1} (frame_offsets)")
    if frame_counts is not None and m:
        fc = np.asarray(frame_counts, dtype=np.int64)
        bad = ((t_sp >= fc[t_frame]) & (frame_offsets[t_frame] >= 0)) | \
              ((s_sp >= fc[s_frame]) & (frame_offsets[s_frame] >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"overlap table: row {i} names superpixel {int(t_sp[i])}/{int(s_sp[i])} beyond the "
                             f"region count of its frame")
    keep = (cov > threshold) & (frame_offsets[t_frame] >= 0) & (frame_offsets[s_frame] >= 0)
    rows = frame_offsets[t_frame[keep]] + t_sp[keep]
    cols = frame_offsets[s_frame[keep]] + s_sp[keep]
    ns = rows != cols
    return rows[ns], cols[ns]


def adjacency_from_edges(rows: np.ndarray, cols: np.ndarray, n_regions: int):
    """Symmetric boolean CSR adjacency (R, R) from directed pairs ("either direction"), no diagonal.

    Column indices of every row are sorted (ties between candidates break by lower id).
    """
    import scipy.sparse as sp

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) and (max(rows.max(), cols.max()) >= n_regions or min(rows.min(), cols.min()) < 0):
        raise ValueError(f"adjacency: ids must lie in 0..{n_regions - 1}")
    r = np.concatenate([rows, cols])
    c = np.concatenate([cols, rows])
    keep = r != c
    A = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (r[keep], c[keep])), shape=(n_regions, n_regions))
    A.sum_duplicates()
    A.data[:] = 1
    A = A.astype(bool)
    A.sort_indices()
    return A


def empty_adjacency(n_regions: int):
    """(R, R) CSR adjacency without edges (no cross-view dedup)."""
    return adjacency_from_edges(np.zeros(0, np.int64), np.zeros(0, np.int64), n_regions)


def _table_arrays(table) -> tuple[np.ndarray, ...]:
    if isinstance(table, dict):
        return tuple(np.asarray(table[k]) for k in ("t_frame", "t_sp", "s_frame", "s_sp", "coverage"))
    if isinstance(table, (tuple, list)) and len(table) == 5:
        return tuple(np.asarray(a) for a in table)
    try:
        return tuple(np.asarray(getattr(table, k)) for k in ("t_frame", "t_sp", "s_frame", "s_sp", "coverage"))
    except AttributeError:
        raise TypeError("overlap table must have t_frame, t_sp, s_frame, s_sp, coverage (attributes, dict keys, "
                        "or a 5-tuple)") from None


def overlap_adjacency(pool: RegionPool, tables: Sequence[tuple[str, Sequence[str], object]],
                      threshold: float = OVERLAP_THRESHOLD):
    """Adjacency over ``pool`` from per-scene overlap tables.

    Args:
        pool: the region pool (defines global ids).
        tables: ``(scene_id, frame_ids, table)`` per scene, where ``table`` has the 1-D arrays
            ``t_frame, t_sp, s_frame, s_sp, coverage`` (``viewal.kernels.OverlapTable``, a dict, or a 5-tuple)
            indexing ``frame_ids``. Frames not in the pool are ignored.
        threshold: coverage threshold (either direction).
    Returns:
        (R, R) symmetric boolean ``scipy.sparse.csr_matrix``.
    """
    rows, cols = [], []
    for scene_id, frame_ids, table in tables:
        offs = pool.frame_offsets(scene_id, frame_ids)
        counts = pool.frame_region_counts(scene_id, frame_ids)
        r, c = overlap_edges(*_table_arrays(table), frame_offsets=offs, frame_counts=counts, threshold=threshold)
        rows.append(r)
        cols.append(c)
    if not rows:
        return empty_adjacency(pool.n_regions)
    return adjacency_from_edges(np.concatenate(rows), np.concatenate(cols), pool.n_regions)


# --------------------------------------------------------------------------------------------- selection

# Sequential by nature (flags depend on earlier picks): a small compiled loop over the score order.
def _select_loop_py(order, indptr, indices, view, sizes, flagged, budget, choose_view):  # pragma: no cover - numba
    n = order.shape[0]
    picked = np.empty(n, np.int64)
    anchors = np.empty(n, np.int64)
    k = 0
    total = 0
    if budget <= 0:
        return picked[:0], anchors[:0], total
    for i in range(n):
        r = order[i]
        if flagged[r]:
            continue
        best = r
        bestv = view[r]
        if choose_view:
            for p in range(indptr[r], indptr[r + 1]):
                q = indices[p]
                if not flagged[q] and view[q] > bestv:
                    best = q
                    bestv = view[q]
        flagged[r] = True
        for p in range(indptr[r], indptr[r + 1]):
            flagged[indices[p]] = True
        flagged[best] = True
        for p in range(indptr[best], indptr[best + 1]):
            flagged[indices[p]] = True
        picked[k] = best
        anchors[k] = r
        k += 1
        total += sizes[best]
        if total >= budget:
            break
    return picked[:k], anchors[:k], total


_COMPILED: dict = {}


def _select_loop(*args):
    """The selection loop, compiled with Numba on first use (cache=True): importing this module stays light."""
    fn = _COMPILED.get("loop")
    if fn is None:
        try:
            from numba import njit
        except ImportError:  # pragma: no cover - numba is a dependency
            fn = _select_loop_py
        else:
            fn = njit(cache=True)(_select_loop_py)
        _COMPILED["loop"] = fn
    return fn(*args)


def _order(score: np.ndarray) -> np.ndarray:
    """Indices by score descending, ties by lower id; NaN last."""
    s = np.where(np.isnan(score), -np.inf, score)
    return np.argsort(-s, kind="stable").astype(np.int64)


def _finite_or_neg_inf(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), -np.inf, a)


def _run(pool: RegionPool, adjacency, budget_pixels: int, choose_view: bool) -> Selection:
    R = pool.n_regions
    if adjacency is None:
        indptr = np.zeros(R + 1, np.int64)
        indices = np.zeros(0, np.int64)
    else:
        if adjacency.shape != (R, R):
            raise ValueError(f"adjacency has shape {adjacency.shape}, expected ({R}, {R}) for this pool")
        if not adjacency.has_sorted_indices:
            adjacency = adjacency.copy()
            adjacency.sort_indices()
        indptr, indices = adjacency.indptr, adjacency.indices  # int32 or int64: the loop takes either
    if budget_pixels is None or budget_pixels < 0:
        raise ValueError(f"budget_pixels must be >= 0, got {budget_pixels}")
    view = _finite_or_neg_inf(pool.view)
    flagged = ~np.asarray(pool.available, dtype=bool).copy()
    picked, anchors, total = _select_loop(_order(pool.score), indptr, indices, view,
                                          pool.sizes.astype(np.int64), flagged, int(budget_pixels), choose_view)
    return Selection(ids=picked, anchors=anchors, score=pool.score[picked].astype(np.float64),
                     view=pool.view[picked].astype(np.float64), pixels=int(total))


def select_viewal(pool: RegionPool, adjacency, budget_pixels: int) -> Selection:
    """ViewAL's selection with cross-view dedup and view choice (see module docstring).

    Args:
        pool: pooled VE (``score``) and VD (``view``) per region; ``available`` False = labelled/empty.
        adjacency: (R, R) symmetric boolean CSR of overlaps above the threshold (:func:`overlap_adjacency`).
        budget_pixels: stop once the selected pixels reach this.
    """
    if adjacency is None:
        raise ValueError("select_viewal needs the overlap adjacency (use empty_adjacency(n) for none)")
    return _run(pool, adjacency, budget_pixels, choose_view=True)


def select_greedy(pool: RegionPool, budget_pixels: int, adjacency=None) -> Selection:
    """Highest pooled score first until the budget; ``adjacency`` given → cross-view dedup (a pick flags the
    regions overlapping it), no view choice."""
    return _run(pool, adjacency, budget_pixels, choose_view=False)


# --------------------------------------------------------------------------------------------- core-set

def region_features(features: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Features per region for k-centre selection.

    Args:
        features: (N, D) per-frame pooled features (every region of a frame gets its frame's feature), or
            (N, D, h, w) feature maps (masked average over each region, the region map resized to h×w by
            nearest neighbour; regions that vanish at h×w take their frame's mean feature).
        regions: (N, H, W) int local region ids.
    Returns:
        (R, D) float32 in the global order of :func:`pool_frames`.
    """
    features = np.asarray(features, dtype=np.float32)
    regions = np.asarray(regions)
    N = len(regions)
    if features.shape[0] != N:
        raise ValueError(f"features has {features.shape[0]} frames, regions {N}")
    counts = regions.reshape(N, -1).max(axis=1) + 1
    if features.ndim == 2:
        return np.repeat(features, counts, axis=0)
    if features.ndim != 4:
        raise ValueError(f"features must be (N, D) or (N, D, h, w), got {features.shape}")
    _, D, h, w = features.shape
    H, W = regions.shape[1:]
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    out = []
    for i in range(N):
        small = regions[i][rows[:, None], cols[None, :]].ravel()
        R = int(counts[i])
        cnt = np.bincount(small, minlength=R).astype(np.float64)
        f = features[i].reshape(D, -1)
        sums = np.stack([np.bincount(small, weights=f[d], minlength=R) for d in range(D)], axis=1)
        mean = f.mean(axis=1)
        out.append(np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], mean[None, :]))
    return np.concatenate(out).astype(np.float32)


def kcenter_greedy(features: np.ndarray, sizes: np.ndarray, budget_pixels: int, available: np.ndarray | None = None,
                   centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-centre greedy (Sener & Savarese's core-set): repeatedly take the available point farthest from all
    centres, until the selected pixels reach the budget.

    Args:
        features: (R, D) region features.
        sizes: (R,) pixels per region.
        budget_pixels: pixel budget.
        available: (R,) bool selectable regions (default all).
        centres: (L, D) features of the labelled set (initial centres); none → the first pick is the region
            farthest from the mean of the available features.
    Returns:
        ids (K,) int64 in pick order, dist (K,) float64 distance of each pick to its nearest centre.
    """
    X = np.asarray(features, dtype=np.float64)
    R = len(X)
    avail = np.ones(R, bool) if available is None else np.asarray(available, dtype=bool).copy()
    sizes = np.asarray(sizes, dtype=np.int64)

    def dist_to(c: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(((X - c[None, :]) ** 2).sum(axis=1), 0.0))

    if centres is not None and len(centres):
        C = np.asarray(centres, dtype=np.float64)
        d = np.full(R, np.inf)
        for s in range(0, len(C), 256):  # chunks: never an R×L matrix larger than R×256
            blk = C[s:s + 256]
            d2 = (X ** 2).sum(1)[:, None] - 2 * X @ blk.T + (blk ** 2).sum(1)[None, :]
            d = np.minimum(d, np.sqrt(np.maximum(d2.min(axis=1), 0.0)))
    else:
        d = dist_to(X[avail].mean(axis=0)) if avail.any() else np.zeros(R)
    ids, dists, total = [], [], 0
    while total < budget_pixels and avail.any():
        cand = np.where(avail, d, -np.inf)
        i = int(np.argmax(cand))  # first index on ties: deterministic
        ids.append(i)
        dists.append(float(d[i]))
        total += int(sizes[i])
        avail[i] = False
        d = np.minimum(d, dist_to(X[i]))
    return np.asarray(ids, dtype=np.int64), np.asarray(dists, dtype=np.float64)


# --------------------------------------------------------------------------------------------- selectors

@dataclass
class SelectionContext:
    """What a :class:`Selector` may use besides the pooled scores (the loop fills it the same way for every
    scorer; a selector reads what it needs).

    Attributes:
        adjacency: (R, R) overlap adjacency over the pool (:func:`overlap_adjacency`), or a zero-argument
            callable returning it (computed on first use, so that selectors without dedup never pay for the
            overlap tables); None: no overlaps known.
        model: the current segmentation model (selectors that look at the network, e.g. PAL's sub-queries).
        frames: (F,) the pool's frames in pool order.
        device, size, batch_size: inference settings (working size (H, W) or None).
        progress: show progress bars.
        rng: random generator of this cycle's selection (random shares); None: the selection uses none.
    """

    adjacency: Any = None
    model: Any = None
    frames: Sequence = ()
    device: str = "cpu"
    size: tuple[int, int] | None = None
    batch_size: int = 4
    progress: bool = True
    rng: np.random.Generator | None = None

    def overlaps(self):
        """The overlap adjacency (computed now when it was given as a callable); ValueError when none."""
        adj = self.adjacency
        if adj is None:
            raise ValueError("this selection needs the overlap adjacency (SelectionContext.adjacency)")
        if callable(adj) and not hasattr(adj, "shape"):
            adj = self.adjacency = adj()
        return adj


class Selector:
    """How regions are picked from a scored pool: one method, :meth:`select`. Each scorer owns one
    (``Scorer.selector``), so the loop makes the same call whatever the scorer."""

    name: ClassVar[str] = ""

    @property
    def needs_overlaps(self) -> bool:
        """True when :meth:`select` reads the overlap adjacency (``context.overlaps()``): the scoring then
        computes each scene's overlap table alongside its scores."""
        return False

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        raise NotImplementedError  # pragma: no cover - interface

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def select_random_share(pool: RegionPool, first: Selection, budget_pixels: int, rng: np.random.Generator,
                        adjacency=None) -> Selection:
    """``first`` (a selection made on ``pool``), then regions drawn uniformly at random (one U(0, 1) per region,
    whatever its size, as the ``random`` scorer) among those ``first`` left available, until ``budget_pixels``
    is reached (over by at most one region). ``adjacency`` (R, R) given: regions overlapping a pick of
    ``first`` are not drawn either, so the random share never asks again for a 3D region ``first`` asked for
    (random picks may overlap one another, as the plain ``random`` scorer's do). The random picks' ``score``
    and ``view`` are the pool's (their rank among the scorer's picks does not matter)."""
    R = pool.n_regions
    available = np.asarray(pool.available, dtype=bool).copy()
    available[first.ids] = False
    if adjacency is not None and len(first.ids):
        if adjacency.shape != (R, R):
            raise ValueError(f"adjacency has shape {adjacency.shape}, expected ({R}, {R}) for this pool")
        available[adjacency[first.ids].indices] = False
    rest = replace(pool, score=rng.random(R), available=available, features=None)
    second = select_greedy(rest, max(0, int(budget_pixels) - first.pixels))
    return Selection(ids=np.concatenate([first.ids, second.ids]).astype(np.int64),
                     anchors=np.concatenate([first.anchors, second.ids]).astype(np.int64),
                     score=np.concatenate([first.score, pool.score[second.ids]]).astype(np.float64),
                     view=np.concatenate([first.view, pool.view[second.ids]]).astype(np.float64),
                     pixels=int(first.pixels + second.pixels))


@dataclass(frozen=True)
class GreedySelector(Selector):
    """Highest pooled score first until the budget (:func:`select_greedy`); ``dedup``: each pick flags the
    regions overlapping it (the context's adjacency), no view choice."""

    dedup: bool = False
    name: ClassVar[str] = "greedy"

    @property
    def needs_overlaps(self) -> bool:
        return self.dedup

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        return select_greedy(pool, budget_pixels, context.overlaps() if self.dedup else None)


class ViewALSelector(Selector):
    """ViewAL's selection: view entropy ranks, view divergence picks the view, cross-view dedup always
    (:func:`select_viewal`)."""

    name: ClassVar[str] = "viewal"
    needs_overlaps: ClassVar[bool] = True

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        return select_viewal(pool, context.overlaps(), budget_pixels)


class KCenterSelector(Selector):
    """k-centre greedy (core-set) on ``pool.features``, the labelled regions' features as initial centres
    (:func:`kcenter_greedy`)."""

    name: ClassVar[str] = "kcenter"

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        if pool.features is None:
            raise ValueError("k-centre selection needs region features (RegionPool.features, from "
                             "Scorer.region_features)")
        labelled = ~np.asarray(pool.available, dtype=bool) & (pool.sizes > 0)
        centres = pool.features[labelled] if labelled.any() else None
        return _kcenter(pool, budget_pixels, pool.features, centres)


@dataclass(frozen=True)
class RandomShareSelector(Selector):
    """``inner`` picks ``(1 − share)`` of the budget, random regions the rest (:func:`select_random_share`;
    ``context.rng`` draws them; when ``inner`` dedups, the random picks avoid the 3D regions it asked).

    Uncertainty sampling in segmentation trades classes: it spends its labels where the model is unsure
    (small objects) and starves the large classes it is confident about, whose IoU then falls
    (``docs/label_efficiency_warm.md``). A random share keeps every class sampled as the pool has it."""

    inner: Selector
    share: float
    name: ClassVar[str] = "random_share"

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float, np.floating)) \
                or not 0 <= self.share <= 1:
            raise ValueError(f"RandomShareSelector: share must be a number in [0, 1], got {self.share!r}")

    @property
    def needs_overlaps(self) -> bool:
        return self.inner.needs_overlaps

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        if context.rng is None:
            raise ValueError("RandomShareSelector needs a random generator (SelectionContext.rng)")
        inner_budget = int(round((1.0 - float(self.share)) * int(budget_pixels)))
        first = self.inner.select(pool, inner_budget, context) if inner_budget > 0 else \
            Selection(ids=np.zeros(0, np.int64), anchors=np.zeros(0, np.int64), score=np.zeros(0), view=np.zeros(0))
        return select_random_share(pool, first, budget_pixels, context.rng,
                                   context.overlaps() if self.inner.needs_overlaps else None)


def with_random_share(selector: Selector, share: float) -> Selector:
    """``selector`` itself when ``share`` is 0, else a :class:`RandomShareSelector` around it."""
    return selector if share == 0 else RandomShareSelector(selector, float(share))


def _kcenter(pool: RegionPool, budget_pixels: int, features: np.ndarray, centres: np.ndarray | None) -> Selection:
    if len(features) != pool.n_regions:
        raise ValueError(f"features has {len(features)} rows, pool has {pool.n_regions} regions")
    ids, dist = kcenter_greedy(features, pool.sizes, budget_pixels, pool.available, centres)
    return Selection(ids=ids, anchors=ids.copy(), score=dist, view=pool.view[ids].astype(np.float64),
                     pixels=int(pool.sizes[ids].sum()))


def select(rule: str, pool: RegionPool, budget_pixels: int, *, adjacency=None, dedup: bool = False,
           features: np.ndarray | None = None, centres: np.ndarray | None = None) -> Selection:
    """Apply a selection rule by name to a pool (the functional form of the :class:`Selector` classes).

    Args:
        rule: ``"viewal"``, ``"greedy"`` or ``"kcenter"``.
        pool: the pooled region scores.
        budget_pixels: pixel budget of the cycle.
        adjacency: overlap adjacency over the pool (needed by ``viewal``, and by ``greedy`` when ``dedup``).
        dedup: greedy only: flag regions overlapping each pick.
        features: (R, D) region features (``kcenter``); centres: (L, D) labelled-set features.
    """
    if rule == "viewal":
        if adjacency is None:
            raise ValueError("select_viewal needs the overlap adjacency (use empty_adjacency(n) for none)")
        return select_viewal(pool, adjacency, budget_pixels)
    if rule == "greedy":
        if dedup and adjacency is None:
            raise ValueError("greedy selection with dedup=True needs the overlap adjacency")
        return select_greedy(pool, budget_pixels, adjacency if dedup else None)
    if rule == "kcenter":
        if features is None:
            raise ValueError("k-centre selection needs region features (Scorer.region_features)")
        return _kcenter(pool, budget_pixels, features, centres)
    raise ValueError(f"unknown selection rule {rule!r}; valid: 'viewal', 'greedy', 'kcenter'")


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
