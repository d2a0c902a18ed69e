"""Superpixel overlap ("coverage") table of a scene, as a compact sparse table (ViewAL Sec. 3.4)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from viewal.core.io import atomic_path

from ._common import Scene, candidate_pairs, check_depth_test, check_scene, check_superpixels, relative_poses
from .depth_test import DEPTH_TEST, DepthTest
from .reference import overlap_reference

__all__ = ["OverlapTable", "superpixel_overlap"]

_FIELDS = ("t_frame", "t_sp", "s_frame", "s_sp", "coverage")
# cap on the dense per-chunk count buffer (pairs x Rmax x Rmax int32 cells)
_CHUNK_CELLS = 1 << 23


@dataclass
class OverlapTable:
    """Sparse superpixel overlap of one scene: one row per (t, r, s, q) with nonzero coverage.

    ``coverage[k]`` = cov(t, r; s, q) = (number of depth-consistent pixels of superpixel ``s_sp`` of frame
    ``s_frame`` that land in superpixel ``t_sp`` of frame ``t_frame``) / |t_sp|. Self rows (t == s, r == q,
    coverage 1: every pixel corresponds to itself) are included. Rows are sorted by (t, r, s, q).

    Attributes: t_frame, t_sp, s_frame, s_sp: (K,) int32; coverage: (K,) float32;
    n_superpixels: (N,) int64 superpixel count R_i of each frame (ids 0..R_i-1).
    """

    t_frame: np.ndarray
    t_sp: np.ndarray
    s_frame: np.ndarray
    s_sp: np.ndarray
    coverage: np.ndarray
    n_superpixels: np.ndarray

    def __len__(self) -> int:
        return int(self.coverage.shape[0])

    def offsets(self) -> np.ndarray:
        """(N + 1,) int64 cumulative superpixel counts: global id of (frame i, sp r) = offsets[i] + r."""
        return np.concatenate([[0], np.cumsum(self.n_superpixels)]).astype(np.int64)

    def to_pairs(self, offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global superpixel ids: (target (K,) int64, source (K,) int64, coverage (K,) float32).

        ``offsets`` (N,) or (N + 1,): global id of superpixel 0 of each frame (default: ``self.offsets()``,
        i.e. frames numbered consecutively from 0 within this scene).
        """
        off = self.offsets() if offsets is None else np.asarray(offsets, dtype=np.int64)
        n = self.n_superpixels.shape[0]
        if off.ndim != 1 or off.shape[0] not in (n, n + 1):
            raise ValueError(f"offsets: expected shape ({n},) or ({n + 1},), got {off.shape}")
        return off[self.t_frame] + self.t_sp, off[self.s_frame] + self.s_sp, self.coverage

    def to_sparse(self, offsets: np.ndarray | None = None, n_total: int | None = None):
        """scipy.sparse CSR matrix A with A[target_global, source_global] = coverage."""
        import scipy.sparse as sp

        tg, sg, cov = self.to_pairs(offsets)
        if n_total is None:
            n_total = int(max(tg.max(initial=-1), sg.max(initial=-1)) + 1) if offsets is not None \
                else int(self.n_superpixels.sum())
        return sp.csr_matrix((cov, (tg, sg)), shape=(n_total, n_total))

    def save(self, path: str | os.PathLike) -> None:
        """Write the table to ``path`` (.npz), atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **{f: getattr(self, f) for f in _FIELDS}, n_superpixels=self.n_superpixels)

    @classmethod
    def load(cls, path: str | os.PathLike) -> OverlapTable:
        """Read a table written by :meth:`save`; raises ValueError naming the file if it is malformed."""
        with np.load(path) as z:
            missing = [f for f in _FIELDS + ("n_superpixels",) if f not in z.files]
            if missing:
                raise ValueError(f"{path}: not an overlap table (missing {', '.join(missing)})")
            t = cls(*(z[f] for f in _FIELDS), n_superpixels=z["n_superpixels"])
        k = len(t.coverage)
        if any(getattr(t, f).shape != (k,) for f in _FIELDS):
            raise ValueError(f"{path}: overlap table columns have different lengths")
        return t

    @classmethod
    def from_dict(cls, d: dict[tuple[int, int, int, int], float], n_superpixels: np.ndarray) -> OverlapTable:
        """Build from ``{(t, r, s, q): coverage}`` (rows sorted)."""
        keys = np.array(sorted(d), dtype=np.int64).reshape(-1, 4)
        cov = np.array([d[tuple(k)] for k in keys.tolist()], dtype=np.float32)
        return cls(*(keys[:, a].astype(np.int32) for a in range(4)), cov,
                   n_superpixels=np.asarray(n_superpixels, dtype=np.int64))

    def as_dict(self) -> dict[tuple[int, int, int, int], float]:
        return {(int(a), int(b), int(c), int(d)): float(e)
                for a, b, c, d, e in zip(self.t_frame, self.t_sp, self.s_frame, self.s_sp, self.coverage)}


def _self_rows(sizes: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    f = np.concatenate([np.full(int((s > 0).sum()), i, np.int64) for i, s in enumerate(sizes)])
    r = np.concatenate([np.nonzero(s > 0)[0] for s in sizes]).astype(np.int64)
    return f, r, f, r, np.ones(f.shape[0], np.float32)


def _assemble(parts: list[tuple[np.ndarray, ...]], n_sp: np.ndarray) -> OverlapTable:
    cols = [np.concatenate([p[a] for p in parts]) for a in range(5)]
    order = np.lexsort((cols[3], cols[2], cols[1], cols[0]))
    ints = [cols[a][order].astype(np.int32) for a in range(4)]
    return OverlapTable(*ints, cols[4][order].astype(np.float32), n_superpixels=n_sp.astype(np.int64))


def superpixel_overlap(superpixels: Any, depths: Any, Ks: Any, world_T_cams: Any, *,
                       depth_test: DepthTest = DEPTH_TEST) -> OverlapTable:
    """Superpixel overlap table of one scene, from the same cross-projection as the view scores.

    Args:
        superpixels: (N, H, W) integer ids 0..R_i-1 per frame.
        depths (N, H, W) metres (0/non-finite invalid); Ks (N, 3, 3); world_T_cams (N, 4, 4) camera-to-world.
        depth_test: :class:`~viewal.kernels.DepthTest`, as in :func:`view_entropy_divergence` (its mode,
            tolerances or distance and backend; the aggregation does not apply: a source pixel counts in
            the target superpixel it lands on). ViewAL's own tables: ``DepthTest(mode="viewal")``.
    Returns:
        :class:`OverlapTable` (rows with nonzero coverage only, self rows included).
    """
    backend = check_depth_test(depth_test).backend
    scene = check_scene(depths, Ks, world_T_cams, depth_test)
    sps, n_sp = check_superpixels(superpixels, scene.depths.shape)
    if backend == "numpy":
        return OverlapTable.from_dict(overlap_reference(sps, n_sp, scene), n_sp)
    return _overlap_fast(sps, n_sp, scene, backend)


def _overlap_fast(sps: np.ndarray, n_sp: np.ndarray, scene: Scene, backend: str) -> OverlapTable:
    n, h, w = sps.shape
    sizes = [np.bincount(sps[i].reshape(-1), minlength=int(n_sp[i])) for i in range(n)]
    parts = [_self_rows(sizes)]
    src, dst = candidate_pairs(scene)              # src's points may land in dst: source s, target t
    rmax = int(n_sp.max())
    size_all = np.concatenate(sizes)
    off = np.concatenate([[0], np.cumsum(n_sp)]).astype(np.int64)
    chunk = max(1, _CHUNK_CELLS // (rmax * rmax))
    if backend == "cuda":
        from . import cuda as cuda_backend

        run = cuda_backend.overlap_counts
    else:
        from . import cpu

        def run(sps_, scene_, s_, t_, M_, counts_):
            cpu.overlap_kernel(sps_, scene_.depths, scene_.Kinvs, scene_.Ks, s_, t_, M_, scene_.mode,
                               scene_.abs_tol, scene_.rel_tol, scene_.max_dist2, counts_)
    for a in range(0, src.size, chunk):
        s, t = src[a:a + chunk], dst[a:a + chunk]
        M = relative_poses(scene.poses, s, t)
        counts = np.zeros((s.size, rmax, rmax), np.int32)
        run(sps, scene, s, t, M, counts)
        p, r, q = np.nonzero(counts)
        size_r = size_all[off[t[p]] + r]
        cov = counts[p, r, q] / np.maximum(size_r, 1)
        parts.append((t[p], r.astype(np.int64), s[p], q.astype(np.int64), cov.astype(np.float32)))
    return _assemble(parts, n_sp)
