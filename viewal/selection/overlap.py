"""Cross-view overlaps as a sparse symmetric adjacency over the pool's global region ids, built from the rows of
per-scene coverage tables (``t_frame, t_sp, s_frame, s_sp, coverage``); selection never depends on the kernel's
own table class."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from viewal.selection.pool import RegionPool

__all__ = ["OVERLAP_THRESHOLD", "overlap_edges", "adjacency_from_edges", "empty_adjacency", "overlap_adjacency"]

#: ViewAL's overlap threshold: two regions are "the same 3D region" if either covers the other by more.
OVERLAP_THRESHOLD = 0.25


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
