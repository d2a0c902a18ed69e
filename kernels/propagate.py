"""3D label propagation: a label given in one view of a scene reaches the pixels of its other views that see the
same surface (docs/propagation.md).

Each labelled pixel with valid depth is back-projected with its depth and pose and cross-projected into every
other frame whose frustum its frame's labelled points can reach (``_common.candidate_pairs`` on the labelled
pixels); where the run's :class:`~viewal.kernels.DepthTest` holds against that frame's depth, it votes for its
class at the pixel it lands on. The test is the one of view entropy and of the superpixel overlap, applied by
the same compiled step (``_math.make_pixel_landing``: source depth check, back-projection, ``correspond``), so
"the same point" means the same thing for all three. Work grows with labelled pixels x frames, never with
all pixels x frames^2 (the NumPy reference excepted).

Per target pixel the kernels count the votes (source pixels), the distinct source frames among them, and the
most-voted class with its count (none on a tie). :func:`decide` then applies the rules of a
:class:`PropagationRule`: a human label always wins, a propagated class needs enough votes, views and a large
enough majority share; invalid depth never gives nor gets a label (it never passes the depth test).

Backends, chosen by ``DepthTest.backend`` as for the other kernels: ``"numpy"`` (:func:`votes_reference`, every
frame pair, every valid pixel, written with ``reference.matches``), ``"cpu"`` (:func:`votes_cpu`, Numba,
parallel over target frames) and ``"cuda"`` (:func:`votes_cuda`, Numba CUDA, one thread per labelled source
pixel and frame pair). All three return the same integers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numba import cuda, njit, prange

from ._common import Scene, candidate_pairs, check_depth_test, check_scene, relative_poses
from .cpu import pixel_landing
from .cuda import pixel_landing as pixel_landing_cuda
from .depth_test import DEPTH_TEST, DepthTest
from .reference import matches
from .rule import PROPAGATION_RULE, PropagationRule

__all__ = ["NO_LABEL", "PROPAGATION_RULE", "Propagation", "PropagationRule", "VoteCounts", "decide",
           "propagate_labels", "votes_cpu", "votes_cuda", "votes_reference"]

NO_LABEL = 255
# relative slack of the agreement comparison: "share reaches min_agreement" is decided on integers
# (majority_votes >= min_agreement * votes), and e.g. 0.7 * 10 = 7.000000000000001 must not refuse 7 of 10
_AGREEMENT_SLACK = 1e-12


@dataclass(frozen=True)
class VoteCounts:
    """What the kernels count per target pixel, all (V, H, W) int32.

    votes: labelled source pixels of the other frames that land on the pixel and pass the depth test;
    views: distinct source frames among them; top: index into the scene's class list of the most-voted
    class, -1 where there is no vote or a tie for the most votes; top_votes: the most votes one class has.
    """

    votes: np.ndarray
    views: np.ndarray
    top: np.ndarray
    top_votes: np.ndarray


@dataclass(frozen=True)
class Propagation:
    """Labels of one scene after propagation, with each pixel's support.

    Attributes (all (V, H, W)):
        labels: int64, the human label where there is one, else the propagated class, else 255.
        propagated: bool, True where ``labels`` holds a propagated class (never on a human-labelled pixel).
        votes: int32, labelled pixels of the other frames that land on the pixel and pass the depth test
            (counted on human-labelled pixels too).
        views: int32, distinct source frames among those votes.
        majority: int64, the most-voted class, 255 where there is no vote or a tie for the most votes.
        majority_votes: int32, the votes of the most-voted class (of either one on a tie).
        agreement: float32, ``majority_votes / votes`` (the majority's share), 0 where there is no vote.
        rule: the :class:`PropagationRule` that made ``labels``.
    """

    labels: np.ndarray
    propagated: np.ndarray
    votes: np.ndarray
    views: np.ndarray
    majority: np.ndarray
    majority_votes: np.ndarray
    agreement: np.ndarray
    rule: PropagationRule

    @property
    def human(self) -> np.ndarray:
        """(V, H, W) int64: the human labels the propagation started from (255 = none)."""
        return np.where(self.propagated, NO_LABEL, self.labels)

    @property
    def n_human(self) -> int:
        return int(np.count_nonzero(self.human != NO_LABEL))

    @property
    def n_propagated(self) -> int:
        return int(np.count_nonzero(self.propagated))

    @property
    def multiplier(self) -> float:
        """Propagated pixels per human-labelled pixel (NaN without human labels)."""
        return self.n_propagated / self.n_human if self.n_human else float("nan")

    def with_rule(self, rule: PropagationRule) -> Propagation:
        """The same votes decided by another rule (no projection is redone)."""
        labels, propagated = decide(self.human, self.majority, self.votes, self.views, self.majority_votes, rule)
        return replace(self, labels=labels, propagated=propagated, rule=rule)


# ------------------------------------------------------------------------------------------ inputs

def check_labels(labels: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Validate human label maps (V, H, W) matching depths: integers 0..255, 255 = none; return int64."""
    a = np.asarray(labels)
    if a.shape != tuple(shape):
        raise ValueError(f"labels: expected shape {tuple(shape)} to match depths, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"labels: expected integer class ids (255 = none), got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > NO_LABEL):
        raise ValueError(f"labels: class ids must be in 0..{NO_LABEL} ({NO_LABEL} = none), "
                         f"got min {int(a.min())}, max {int(a.max())}")
    return a.astype(np.int64)


def compact_classes(human: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classes present and each pixel's index among them.

    human: (V, H, W) int64, 255 = none. Returns (classes (C,) int64 sorted, index (V, H, W) int32 into
    ``classes``, -1 where there is no label).
    """
    classes = np.unique(human[human != NO_LABEL])
    index = np.searchsorted(classes, human).astype(np.int32)
    index[human == NO_LABEL] = -1
    return classes, index


def source_lists(index: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels that vote: labelled and with valid depth, as CSR lists per frame.

    index: (V, H, W) int32 class index, -1 = none; depths: (V, H, W) float32, invalid 0. Returns (ptr (V+1,)
    int64, pix (L,) int64 flat pixel index within its frame, cls (L,) int32 class index); frame s's pixels
    are ``pix[ptr[s]:ptr[s+1]]``, in raster order.
    """
    n = index.shape[0]
    voting = (index >= 0) & (depths > 0)
    frame, flat = np.nonzero(voting.reshape(n, -1))
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(frame, minlength=n), out=ptr[1:])
    return ptr, flat.astype(np.int64), index.reshape(n, -1)[frame, flat].astype(np.int32)


def vote_pairs(scene: Scene, voting: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists of the source frames of each target frame: (ptr (V+1,) int64, src (P,) int32, M (P, 3, 4)).

    voting: (V, H, W) bool, the pixels that will be projected. Only pairs whose voting points may land in the
    target are listed (``candidate_pairs`` bounding the voting pixels only); target t's sources are
    ``src[ptr[t]:ptr[t+1]]`` in increasing order, with ``M`` = cam_t_T_cam_src.
    """
    s, t = candidate_pairs(scene, voting)
    order = np.lexsort((s, t))
    s, t = s[order], t[order]
    ptr = np.zeros(scene.n + 1, np.int64)
    np.cumsum(np.bincount(t, minlength=scene.n), out=ptr[1:])
    M = relative_poses(scene.poses, s, t) if s.size else np.zeros((0, 3, 4))
    return ptr, s.astype(np.int32), M


# ------------------------------------------------------------------------------------------ rules

def decide(human: np.ndarray, majority: np.ndarray, votes: np.ndarray, views: np.ndarray,
           majority_votes: np.ndarray, rule: PropagationRule = PROPAGATION_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Apply the propagation rules pixel by pixel.

    human, majority: (V, H, W) int64 class ids, 255 = none (majority: the most-voted class, 255 on a tie or
    without votes); votes, views, majority_votes: (V, H, W) int. A pixel takes ``majority`` when it has no human
    label, a majority exists, ``votes >= min_support``, ``views >= min_views`` and
    ``majority_votes >= min_agreement * votes``. Returns (labels (V, H, W) int64, propagated (V, H, W) bool).
    """
    propagated = ((human == NO_LABEL) & (majority != NO_LABEL) & (votes >= rule.min_support)
                  & (views >= rule.min_views)
                  & (majority_votes * (1.0 + _AGREEMENT_SLACK) >= rule.min_agreement * votes))
    return np.where(propagated, majority, human).astype(np.int64), propagated


def _tally(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, C) vote histogram -> votes (P,), top (P,) class index or -1 (no vote or a tie), top_votes (P,)."""
    votes = hist.sum(axis=1)
    if hist.shape[1] == 0:
        zero = np.zeros(hist.shape[0], np.int64)
        return zero, zero - 1, zero
    top_votes = hist.max(axis=1)
    top = hist.argmax(axis=1)
    tie = (hist == top_votes[:, None]).sum(axis=1) > 1
    top[(votes == 0) | tie] = -1
    return votes, top, top_votes


# ------------------------------------------------------------------------------------------ NumPy reference

def votes_reference(index: np.ndarray, n_classes: int, scene: Scene) -> VoteCounts:
    """Every ordered frame pair, every valid pixel (``reference.matches``), then keep the labelled sources.

    index: (V, H, W) int32 class index, -1 = none; n_classes: C; scene: validated. Slow and obviously right.
    """
    n, h, w = index.shape
    out = {k: np.zeros((n, h * w), np.int32) for k in ("votes", "views", "top", "top_votes")}
    for t in range(n):
        hist = np.zeros((h * w, n_classes), np.int64)
        views = np.zeros(h * w, np.int64)
        for s in range(n):
            if s == t:
                continue
            ps, pt = matches(scene, s, t)
            c = index[s].reshape(-1)[ps]
            keep = c >= 0
            np.add.at(hist, (pt[keep], c[keep]), 1)
            views[np.unique(pt[keep])] += 1
        votes, top, top_votes = _tally(hist)
        out["votes"][t], out["views"][t], out["top"][t], out["top_votes"][t] = votes, views, top, top_votes
    return VoteCounts(**{k: v.reshape(n, h, w) for k, v in out.items()})


# ------------------------------------------------------------------------------------------ Numba CPU

@njit(parallel=True, cache=True)
def _votes_cpu_kernel(depths, Kinvs, Ks, src_ptr, src_pix, src_cls, n_classes, nbr_ptr, nbr_src, nbr_M, mode,
                      abs_tol, rel_tol, max_dist2, votes, views, top, top_votes):
    """Fill votes, views, top, top_votes (V, H*W) int32.

    depths (V, H, W) float32, invalid 0; Kinvs, Ks (V, 3, 3); voting pixels of frame s:
    ``src_pix[src_ptr[s]:src_ptr[s+1]]`` (flat indices) with class indices ``src_cls``; sources of target t:
    ``nbr_src[nbr_ptr[t]:nbr_ptr[t+1]]`` with ``nbr_M`` (3, 4) = cam_t_T_cam_s. One parallel task per target
    frame with its own (H*W, C) histogram; a per-pixel "last source frame" marker counts distinct views.
    """
    n, h, w = depths.shape
    for t in prange(n):
        hist = np.zeros((h * w, max(n_classes, 1)), np.int32)
        last = np.full(h * w, -1, np.int32)
        for e in range(nbr_ptr[t], nbr_ptr[t + 1]):
            s = nbr_src[e]
            for k in range(src_ptr[s], src_ptr[s + 1]):
                p = src_pix[k]
                v = p // w
                vt, ut = pixel_landing(p - v * w, v, depths[s], Kinvs[s], nbr_M[e], Ks[t], Kinvs[t], depths[t], mode,
                                       abs_tol, rel_tol, max_dist2)
                if vt < 0:
                    continue
                q = vt * w + ut
                hist[q, src_cls[k]] += 1
                if last[q] != s:
                    last[q] = s
                    views[t, q] += 1
        for q in range(h * w):
            total = 0
            best = -1
            best_n = 0
            tie = False
            for c in range(n_classes):
                x = hist[q, c]
                total += x
                if x > best_n:
                    best_n = x
                    best = c
                    tie = False
                elif x == best_n and x > 0:
                    tie = True
            votes[t, q] = total
            top_votes[t, q] = best_n
            top[t, q] = -1 if tie else best


def votes_cpu(index: np.ndarray, n_classes: int, scene: Scene) -> VoteCounts:
    """Numba CPU backend: arguments and result as :func:`votes_reference`."""
    n, h, w = index.shape
    src_ptr, src_pix, src_cls = source_lists(index, scene.depths)
    ptr, src, M = vote_pairs(scene, (index >= 0) & (scene.depths > 0))
    out = [np.zeros((n, h * w), np.int32) for _ in range(4)]
    _votes_cpu_kernel(scene.depths, scene.Kinvs, scene.Ks, src_ptr, src_pix, src_cls, n_classes, ptr, src, M,
                      scene.mode, scene.abs_tol, scene.rel_tol, scene.max_dist2, *out)
    return VoteCounts(*(a.reshape(n, h, w) for a in out))


# ------------------------------------------------------------------------------------------ Numba CUDA

THREADS = 128


@cuda.jit
def _reset_kernel(hist, nview, last):
    """Zero one target frame's sums: hist (H*W, C), nview (H*W,) int32; last (H*W,) int32 = -1."""
    q = cuda.grid(1)
    if q >= nview.shape[0]:
        return
    for c in range(hist.shape[1]):
        hist[q, c] = 0
    nview[q] = 0
    last[q] = -1


@cuda.jit
def _vote_kernel(depths, Kinvs, Ks, s, t, stamp, pix, cls, M, mode, abs_tol, rel_tol, max_dist2, hist, nview, last):
    """One thread per voting pixel of source frame s (flat ``pix``, class index ``cls``) into target t (M (3, 4)
    = cam_t_T_cam_s): hist[q, cls] += 1 where it lands. ``stamp`` grows with each launch for one target and
    each launch has one source frame, so ``atomic.max`` returns a smaller value once per target pixel and
    launch: that counts the source frame once in nview."""
    k = cuda.grid(1)
    if k >= pix.shape[0]:
        return
    w = depths.shape[2]
    p = pix[k]
    v = p // w
    vt, ut = pixel_landing_cuda(p - v * w, v, depths[s], Kinvs[s], M, Ks[t], Kinvs[t], depths[t], mode, abs_tol,
                                rel_tol, max_dist2)
    if vt < 0:
        return
    q = vt * w + ut
    cuda.atomic.add(hist, (q, cls[k]), 1)
    if cuda.atomic.max(last, q, stamp) < stamp:
        cuda.atomic.add(nview, q, 1)


@cuda.jit
def _finish_kernel(hist, nview, n_classes, t, votes, views, top, top_votes):
    """One thread per pixel of target t: its totals and most-voted class (-1 on a tie or without votes)."""
    q = cuda.grid(1)
    if q >= nview.shape[0]:
        return
    total = 0
    best = -1
    best_n = 0
    tie = False
    for c in range(n_classes):
        x = hist[q, c]
        total += x
        if x > best_n:
            best_n = x
            best = c
            tie = False
        elif x == best_n and x > 0:
            tie = True
    votes[t, q] = total
    views[t, q] = nview[q]
    top_votes[t, q] = best_n
    top[t, q] = -1 if tie else best


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def votes_cuda(index: np.ndarray, n_classes: int, scene: Scene) -> VoteCounts:
    """Numba CUDA backend: arguments and result as :func:`votes_reference`. One target frame at a time with
    int32 sums (H*W, C) on the device; one launch per (source, target) pair."""
    n, h, w = index.shape
    src_ptr, src_pix, src_cls = source_lists(index, scene.depths)
    ptr, src, M = vote_pairs(scene, (index >= 0) & (scene.depths > 0))
    d_depths, d_Kinvs, d_Ks = (cuda.to_device(a) for a in (scene.depths, scene.Kinvs, scene.Ks))
    d_pix = cuda.to_device(src_pix if src_pix.size else np.zeros(1, np.int64))
    d_cls = cuda.to_device(src_cls if src_cls.size else np.zeros(1, np.int32))
    d_M = cuda.to_device(M if M.shape[0] else np.zeros((1, 3, 4)))
    hist = cuda.device_array((h * w, max(n_classes, 1)), np.int32)
    nview = cuda.device_array(h * w, np.int32)
    last = cuda.device_array(h * w, np.int32)
    outs = [cuda.device_array((n, h * w), np.int32) for _ in range(4)]
    test = (scene.mode, scene.abs_tol, scene.rel_tol, scene.max_dist2)
    for t in range(n):
        _reset_kernel[_blocks(h * w), THREADS](hist, nview, last)
        for e in range(int(ptr[t]), int(ptr[t + 1])):
            s = int(src[e])
            a, b = int(src_ptr[s]), int(src_ptr[s + 1])
            _vote_kernel[_blocks(b - a), THREADS](d_depths, d_Kinvs, d_Ks, s, t, e, d_pix[a:b], d_cls[a:b], d_M[e],
                                                *test, hist, nview, last)
        _finish_kernel[_blocks(h * w), THREADS](hist, nview, n_classes, t, *outs)
    return VoteCounts(*(o.copy_to_host().reshape(n, h, w) for o in outs))


_BACKENDS = {"numpy": votes_reference, "cpu": votes_cpu, "cuda": votes_cuda}


# ------------------------------------------------------------------------------------------ entry point

def propagate_labels(labels: Any, depths: Any, Ks: Any, world_T_cams: Any, *, depth_test: DepthTest = DEPTH_TEST,
                     rule: PropagationRule = PROPAGATION_RULE) -> Propagation:
    """Propagate the human labels of one scene's frames to the pixels of its other frames that see the same
    surface.

    Every labelled pixel with valid depth is back-projected and cross-projected into each other frame whose
    frustum it can reach; where ``depth_test`` holds (the same test, with the same arithmetic, as
    :func:`~viewal.kernels.view_entropy_divergence` and :func:`~viewal.kernels.superpixel_overlap`), it votes
    for its class at the pixel it lands on. ``rule`` then decides (:func:`decide`): a human label always wins
    and is not counted as propagated; a pixel without one takes the most-voted class when it has at least
    ``rule.min_support`` votes from ``rule.min_views`` frames and that class has at least ``rule.min_agreement``
    of them (never on a tie); otherwise it stays 255. Invalid depth neither gives nor gets a label. Which frames
    may receive labels (e.g. only the pool's) is the caller's choice: pass only those frames and the labelled
    ones, or discard the other frames' output.

    Args:
        labels: (V, H, W) integer human labels, 0..254, 255 = none.
        depths: (V, H, W) metres along the optical axis; 0 or non-finite = invalid.
        Ks: (V, 3, 3) or (3, 3) OpenCV intrinsics. world_T_cams: (V, 4, 4) camera-to-world rigid poses.
        depth_test: :class:`~viewal.kernels.DepthTest`: mode and tolerances or distance, and the backend
            (``"numpy"``, ``"cpu"``, ``"cuda"``; all give the same result). Its aggregation does not apply.
        rule: :class:`PropagationRule` (default :data:`PROPAGATION_RULE`).
    Returns:
        :class:`Propagation` (labels, propagated mask, votes, views, majority, agreement per pixel).
    Raises:
        ValueError / GeometryError naming the argument on bad shapes, labels, poses or an unusable backend;
        TypeError when ``depth_test`` or ``rule`` has the wrong type.
    """
    backend = check_depth_test(depth_test).backend
    if not isinstance(rule, PropagationRule):
        raise TypeError(f"rule: expected a viewal.kernels.PropagationRule, got {type(rule).__name__}")
    d = np.asarray(depths)
    K = np.asarray(Ks, dtype=np.float64)
    if K.shape == (3, 3) and d.ndim == 3:
        K = np.broadcast_to(K, (d.shape[0], 3, 3))
    scene = check_scene(d, K, world_T_cams, depth_test)
    human = check_labels(labels, scene.depths.shape)
    classes, index = compact_classes(human)
    counts = _BACKENDS[backend](index, int(classes.size), scene)
    majority = np.where(counts.top >= 0, classes[np.maximum(counts.top, 0)] if classes.size else NO_LABEL,
                        NO_LABEL).astype(np.int64)
    labels_out, propagated = decide(human, majority, counts.votes, counts.views, counts.top_votes, rule)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(counts.votes > 0, counts.top_votes / np.maximum(counts.votes, 1), 0.0)
    return Propagation(labels=labels_out, propagated=propagated, votes=counts.votes, views=counts.views,
                       majority=majority, majority_votes=counts.top_votes, agreement=agreement.astype(np.float32),
                       rule=rule)
