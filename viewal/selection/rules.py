"""The selection rules as pure functions on a scored pool: ViewAL's (view entropy ranks, view divergence picks the
view, cross-view dedup), greedy by score (dedup optional), k-centre greedy (core-set) and a random share after
any of them. Budget: a region costs its pixels; a rule stops once the budget is reached (over by at most one
region). Ties break by lower global id."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from viewal.selection.pool import RegionPool, Selection

__all__ = ["select_viewal", "select_greedy", "select_kcenter", "select_random_share", "kcenter_greedy",
           "region_features"]


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


def select_kcenter(pool: RegionPool, budget_pixels: int, features: np.ndarray,
                   centres: np.ndarray | None = None) -> Selection:
    """k-centre greedy (:func:`kcenter_greedy`) over the pool's available regions. features: (R, D) one row per
    region; centres: (L, D) the labelled set's features, or None."""
    if len(features) != pool.n_regions:
        raise ValueError(f"features has {len(features)} rows, pool has {pool.n_regions} regions")
    ids, dist = kcenter_greedy(features, pool.sizes, budget_pixels, pool.available, centres)
    return Selection(ids=ids, anchors=ids.copy(), score=dist, view=pool.view[ids].astype(np.float64),
                     pixels=int(pool.sizes[ids].sum()))


