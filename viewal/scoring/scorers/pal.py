"""PAL (Bhatnagar et al., BMVC 2021; ``docs/methods.md`` §3 "PAL"): the scorer, its need provider and its
selector, the sub-queries with rotation-only fine-tuning (the diversity term S_D).

* S_S(image) = Σ_k CE(g(rot_k x), k) (rotation head), S_C(x) = −KL(U ‖ P̄(x)) with U uniform and P̄ the
  MC-mean prediction (PAL's task-head score: high when the prediction is close to uniform); equal to
  mean_c log(P̄_c + ε) + log C. S = n(S_S) + n(S_C) (+ n(S_D) in :class:`PALSelector`), n the normalisation
  of ``viewal.scoring.scorers.consistency``. :func:`pal_select` runs PAL end to end and normalises over the whole
  pool (it sees every frame).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from viewal.core.progress import progress_bar
from viewal.nn.heads import attach_rotation_head, finetune_rotation, rotation_extra_loss, rotation_scores
from viewal.nn.model import iter_predict_frames
from viewal.scoring.needs import NeedContext, register_provider
from viewal.scoring.scorers.base import SceneInputs, Scores, register
from viewal.scoring.scorers.consistency import EPS, NormalisingScorer, frame_images, pool_stats, working_size
from viewal.selection import (
    RegionPool,
    Selection,
    SelectionContext,
    Selector,
    labelled_regions,
    pool_frames,
    select_greedy,
)

__all__ = ["uniform_kl_score", "frame_rotation_scores", "PAL", "PALSelector", "pal_diversity_select", "pal_select"]


def uniform_kl_score(probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """PAL's task-head score S_C = −KL(U‖P) = mean_c log(p_c + ε) + log C (≤ 0; 0 for a uniform P).

    Args:
        probs: (C, H, W) or (N, C, H, W).
    Returns:
        (H, W) or (N, H, W) float32.
    """
    probs = np.asarray(probs, dtype=np.float64)
    C = probs.shape[-3]
    return (np.log(probs + eps).mean(axis=-3) + np.log(C)).astype(np.float32)


@register_provider("rotation_score", "(N,) float32 PAL self-supervision score S_S (rotation loss over 4 rotations)")
def _rotation_score_provider(ctx: NeedContext) -> dict[str, np.ndarray]:
    return {"rotation_score": frame_rotation_scores(ctx.model, ctx.frames, batch_size=ctx.batch_size,
                                                    device=ctx.device, size=working_size(ctx))}


def frame_rotation_scores(model, frames: Sequence, batch_size: int = 4, device="cpu",
                          size: tuple[int, int] | None = None) -> np.ndarray:
    """S_S of each frame: (N,) float32 (see :func:`viewal.nn.heads.rotation_scores`)."""
    import torch

    if getattr(model, "rotation_head", None) is None:
        raise ValueError("PAL needs model.rotation_head: train with viewal.nn.heads.attach_rotation_head(model) "
                         "and rotation_extra_loss(...)")
    model = model.to(device)
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(frames), max(1, batch_size)):
                images = frame_images(frames[s:s + batch_size], device, size)
                out.append(rotation_scores(model, images).float().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out).astype(np.float32)


@register
class PAL(NormalisingScorer):
    """PAL: n(S_S) + n(S_C) per pixel (weights ``w_ss``, ``w_sc``, default 1), and the diversity term S_D in
    :class:`PALSelector` (:meth:`selector`).

    Options: ``w_ss``, ``w_sc``, ``w_sd`` (weights), ``rotation_weight`` (weight of the rotation loss in
    training, default 1), ``sub_queries`` (K, default 4), ``finetune_steps`` (20), ``finetune_lr`` (1e-3),
    ``finetune_batch`` (4), ``normalise``, ``stats``. The loop selects with :meth:`selector`.
    """

    option_names = frozenset({"stats", "normalise", "rotation_weight", "w_ss", "w_sc", "sub_queries", "finetune_steps",
                              "finetune_lr", "finetune_batch", "w_sd", "seed"})
    name = "pal"
    training = "rotation_head"
    needs = frozenset({"probs", "rotation_score"})
    selection = "greedy"

    def prepare_model(self, model):
        attach_rotation_head(model)
        return rotation_extra_loss(weight=float(self.options.get("rotation_weight", 1.0)))

    def components(self, inputs: SceneInputs) -> dict[str, np.ndarray]:
        ss = np.asarray(inputs.extras["rotation_score"], dtype=np.float32).reshape(-1)
        sp = inputs.superpixels
        if ss.shape[0] != sp.shape[0]:
            raise ValueError(f"rotation_score has {ss.shape[0]} frames, superpixels {sp.shape[0]}")
        return {"ss": np.broadcast_to(ss[:, None, None], sp.shape).astype(np.float32),
                "sc": uniform_kl_score(inputs.probs)}

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        comp = self.components(inputs)
        sp = inputs.superpixels
        w_ss = float(self.options.get("w_ss", 1.0))
        w_sc = float(self.options.get("w_sc", 1.0))
        return Scores(pixel=w_ss * self._norm("ss", comp["ss"], sp) + w_sc * self._norm("sc", comp["sc"], sp))

    def selector(self, dedup: bool = False) -> PALSelector:
        """PAL's sub-queries (:class:`PALSelector`) with this scorer's options; ``dedup``: cross-view dedup
        between the picks."""
        return PALSelector(self.options, dedup=dedup)

    def select_pool(self, model, pool, frames: Sequence, regions_of, budget_pixels: int, *, adjacency=None,
                    device: str = "cpu", size: tuple[int, int] | None = None, batch_size: int = 4,
                    progress: bool = True):
        """:class:`PALSelector` on a pool already scored by this scorer, with its inputs as arguments
        (``regions_of`` unused). Returns a ``viewal.selection.Selection``."""
        network = NeedContext(model=model, frames=list(frames), batch_size=batch_size, device=device,
                              options={"size": size})
        ctx = SelectionContext(adjacency=adjacency, network=network, progress=progress)
        return PALSelector(self.options, dedup=adjacency is not None).select(pool, budget_pixels, ctx)


class PALSelector(Selector):
    """PAL's K sub-queries with rotation-only fine-tuning between them (:func:`pal_diversity_select`), on a
    pool scored by :class:`PAL`; reads the model, the pool frames and the inference settings from the
    ``SelectionContext``'s ``network``, and its overlaps when ``dedup``.

    Options (``PAL``'s): ``sub_queries`` (K, default 4), ``finetune_steps`` (20), ``finetune_lr`` (1e-3),
    ``finetune_batch`` (4), ``w_sd`` (weight of S_D, 1), ``seed`` (0).
    """

    name: ClassVar[str] = "pal"

    def __init__(self, options: dict | None = None, dedup: bool = False) -> None:
        self.options = dict(options or {})
        self.dedup = bool(dedup)

    @property
    def needs_overlaps(self) -> bool:
        return self.dedup

    def select(self, pool, budget_pixels: int, context):
        o, net = self.options, context.network
        if net is None:
            raise ValueError("PAL's sub-queries fine-tune and run the network: SelectionContext.network must hold "
                             "the model and the pool's frames (a viewal.scoring.needs.NeedContext)")
        return pal_diversity_select(net.model, pool, net.frames, budget_pixels,
                                    sub_queries=int(o.get("sub_queries", 4)),
                                    finetune_steps=int(o.get("finetune_steps", 20)),
                                    finetune_lr=float(o.get("finetune_lr", 1e-3)),
                                    finetune_batch=int(o.get("finetune_batch", 4)), w_d=float(o.get("w_sd", 1.0)),
                                    adjacency=context.overlaps() if self.dedup else None, device=net.device,
                                    size=net.options.get("size"), batch_size=net.batch_size,
                                    seed=int(o.get("seed", 0)), progress=context.progress)

    def __repr__(self) -> str:
        return f"PALSelector({self.options}, dedup={self.dedup})"




def pal_diversity_select(model, pool, frames: Sequence, budget_pixels: int, *, sub_queries: int = 4,
                         finetune_steps: int = 20, finetune_lr: float = 1e-3, finetune_batch: int = 4,
                         w_d: float = 1.0, adjacency=None, device: str = "cpu", size: tuple[int, int] | None = None,
                         batch_size: int = 4, seed: int = 0, progress: bool = True):
    """PAL's K sub-queries with rotation-only fine-tuning between them (the diversity term S_D).

    Sub-query k (k = 0..K−1) gets ⌈(budget − selected so far)/(K − k)⌉ pixels and takes the available regions
    with the highest score, greedily (cross-view dedup when ``adjacency`` is given): ``pool.score`` for k = 0,
    ``pool.score + w_d · n(S_D)`` afterwards. After each sub-query but the last, a copy of ``model`` (encoder
    + rotation head) is fine-tuned on the rotation task only on the frames chosen so far
    (:func:`viewal.nn.heads.finetune_rotation`, from ``model`` each time), and S_D = S_S of the fine-tuned copy
    is recomputed for every pool frame (constant over a frame's regions); n = min-max over the available
    regions of the pool.

    Args:
        model: SegModel with ``rotation_head``.
        pool: ``viewal.selection.RegionPool`` with the base score (PAL: n(S_S) + n(S_C)).
        frames: (F,) the pool's frames, in pool order.
        budget_pixels: pixel budget of the cycle.
        adjacency: overlap adjacency over the pool's global ids, or None.
        size: working (H, W) of the network.
    Returns:
        ``viewal.selection.Selection`` with the picks of all sub-queries in order (``score`` = the score
        at pick time).
    """
    frames = list(frames)
    if len(frames) != pool.n_frames:
        raise ValueError(f"frames has {len(frames)} entries, the pool {pool.n_frames} frames")
    if sub_queries < 1:
        raise ValueError(f"sub_queries must be >= 1, got {sub_queries}")
    base = np.asarray(pool.score, dtype=np.float64)
    sizes = np.asarray(pool.sizes)
    frame_of_region = pool.frame_of(np.arange(pool.n_regions))
    avail = np.asarray(pool.available, dtype=bool).copy()
    available0 = avail.copy()

    def n(v: np.ndarray) -> np.ndarray:
        lo, hi = pool_stats(v[available0], "minmax")
        return (v - lo) / (hi - lo)

    picked: list[np.ndarray] = []
    picked_scores: list[np.ndarray] = []
    total = 0
    score = base
    bar = progress_bar(range(sub_queries), desc="PAL sub-queries", disable=not progress, leave=False)
    for q in bar:
        share = int(np.ceil((budget_pixels - total) / (sub_queries - q)))
        if share <= 0 or not avail.any():
            break
        sub = RegionPool(pool.scene_ids, pool.frame_ids, pool.offsets, score, score, sizes, avail)
        sel = select_greedy(sub, share, adjacency)
        if len(sel.ids) == 0:
            break
        picked.append(sel.ids)
        picked_scores.append(score[sel.ids])
        total += int(sel.pixels)
        avail[sel.ids] = False
        if adjacency is not None:  # regions overlapping a pick show the same 3D region: not asked again
            avail[np.unique(adjacency[sel.ids].indices)] = False
        if q == sub_queries - 1 or total >= budget_pixels:
            break
        chosen = np.unique(frame_of_region[np.concatenate(picked)])
        imgs = frame_images([frames[i] for i in chosen], device, size)
        tuned = finetune_rotation(model, imgs, steps=finetune_steps, lr=finetune_lr, batch_size=finetune_batch,
                                  seed=seed + q)
        sd = frame_rotation_scores(tuned, frames, batch_size, device, size)[frame_of_region].astype(np.float64)
        del tuned
        score = base + w_d * n(sd)
    bar.close()
    ids = np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)
    scores = np.concatenate(picked_scores) if picked_scores else np.zeros(0)
    return Selection(ids=ids, anchors=ids.copy(), score=scores.astype(np.float64),
                     view=np.asarray(pool.view, dtype=np.float64)[ids], pixels=int(sizes[ids].sum()))


def pal_select(model, frames: Sequence, regions: np.ndarray | Sequence[np.ndarray], budget_pixels: int, *,
               labelled: np.ndarray | Sequence[np.ndarray] | None = None, sub_queries: int = 4,
               finetune_steps: int = 20, finetune_lr: float = 1e-3, finetune_batch: int = 4,
               weights: tuple[float, float, float] = (1.0, 1.0, 1.0), mc_passes: int = 20, batch_size: int = 4,
               device: str = "cpu", size: tuple[int, int] | None = None, adjacency=None, seed: int = 0,
               progress: bool = True):
    """PAL end to end over a pool of frames: S_S, S_C normalised over the whole pool, then
    :func:`pal_diversity_select`.

    Args:
        model: SegModel with ``rotation_head`` (trained with ``viewal.nn.heads.rotation_extra_loss``).
        frames: (F,) pool frames (``viewal.datasets.Frame``, any scenes), in pool order.
        regions: (F, H, W) int local region ids (superpixels, or zeros for whole-image selection).
        budget_pixels: pixel budget of the cycle.
        labelled: (F, H, W) bool already-labelled pixels (their regions are never picked), or None.
        weights: (w_s, w_c, w_d).
        mc_passes: MC-dropout passes for P̄ in S_C.
        adjacency: overlap adjacency over the pool's global region ids (``viewal.selection``) or None.
    Returns:
        (selection, pool): ``viewal.selection.Selection`` and the ``RegionPool`` (``score`` = w_s·n(S_S) +
        w_c·n(S_C)) for ``viewal.selection.queries_from_selection``.
    """
    frames = list(frames)
    regions = np.stack([np.asarray(r) for r in regions]).astype(np.int64)
    if len(regions) != len(frames):
        raise ValueError(f"regions has {len(regions)} frames, frames {len(frames)}")
    if getattr(model, "rotation_head", None) is None:
        raise ValueError("PAL needs model.rotation_head: train with viewal.nn.heads.attach_rotation_head(model) "
                         "and rotation_extra_loss(...)")
    w_s, w_c, w_d = (float(w) for w in weights)
    F_ = len(frames)

    # S_C per region, streamed batch by batch (never the pool's full probability array)
    sc_maps = np.zeros(regions.shape, dtype=np.float32)
    k = 0
    for out in iter_predict_frames(model, frames, passes=mc_passes, batch_size=batch_size, device=device,
                                   size=size, seed=seed, progress=progress, desc="PAL S_C"):
        probs = out["probs"] if isinstance(out, dict) else out[0]
        sc_maps[k:k + len(probs)] = uniform_kl_score(probs)
        k += len(probs)
    sc, sizes, offsets = pool_frames(sc_maps, regions)
    del sc_maps
    frame_of_region = np.repeat(np.arange(F_), np.diff(offsets))
    ss = frame_rotation_scores(model, frames, batch_size, device, size)[frame_of_region].astype(np.float64)

    available = sizes > 0
    if labelled is not None:
        lab = np.stack([np.asarray(m, dtype=bool) for m in labelled])
        available &= ~labelled_regions(regions, lab)

    def n(v: np.ndarray) -> np.ndarray:
        lo, hi = pool_stats(v[available], "minmax")
        return (v - lo) / (hi - lo)

    base = w_s * n(ss) + w_c * n(sc)
    pool = RegionPool(scene_ids=[f.scene_id for f in frames], frame_ids=[f.frame_id for f in frames],
                      offsets=offsets, score=base, view=base.copy(), sizes=sizes, available=available)
    sel = pal_diversity_select(model, pool, frames, budget_pixels, sub_queries=sub_queries,
                               finetune_steps=finetune_steps, finetune_lr=finetune_lr, finetune_batch=finetune_batch,
                               w_d=w_d, adjacency=adjacency, device=device, size=size, batch_size=batch_size,
                               seed=seed, progress=progress)
    return sel, pool
