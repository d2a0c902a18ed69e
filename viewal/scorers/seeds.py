"""Scorers from the seed documents (METHODS.md §3–4): flip consistency, loss prediction, their combination,
and PAL.

Pure functions first (numpy, shapes in docstrings), then the need providers (model → arrays, registered
in ``viewal.needs``), then the scorers (registered in ``viewal.scorers``), then :func:`pal_select`, PAL's
sub-query selection with rotation-only fine-tuning (the diversity term S_D), which the experiment calls
instead of the plain greedy selection when it runs PAL.

Definitions (natural log throughout; ε = 1e-8):

* CI(x) = ½[KL(P(x)‖P'(x)) + KL(P'(x)‖P(x))], P on the image, P' on its horizontal flip, flipped back.
  P and P' are deterministic predictions (dropout off).
* IoU inside region r of the argmax masks A (of P) and B (of P'): the **mean over the classes present in
  A or B inside r** of |A_c ∩ B_c ∩ r| / |(A_c ∪ B_c) ∩ r|. LI(r) = 1 − IoU(r) ∈ [0, 1].
* L_con(r) = mean_{x∈r} CI(x) + LI(r). The scorer's pixel map is CI(x) + LI(r(x)), so the region mean
  pooling of the loop yields L_con(r) exactly.
* Loss prediction: l̂(r) from ``model.loss_head`` (``viewal.heads``), region variant (masked average
  pooling in each superpixel) when the loop passes superpixels to the providers, else per image.
* consistency_loss = n(L_con) + λ · n(l̂), n = the normalisation below.
* PAL: S_S(image) = Σ_k CE(g(rot_k x), k) (rotation head), S_C(x) = −KL(U ‖ P̄(x)) with U uniform and P̄ the
  MC-mean prediction (PAL's task-head score: high when the prediction is close to uniform); equal to
  mean_c log(P̄_c + ε) + log C. S = n(S_S) + n(S_C) (+ n(S_D) in :func:`pal_select`).

Normalisation n (option ``normalise``): components are pooled per region, then mapped affinely so that
their region values span [0, 1] — ``"minmax"`` (default) uses the min and max over the scene's regions
(the scorer sees one scene at a time), ``"zscore"`` uses (x − median)/(1.4826·MAD) over the scene's
regions, ``"none"`` leaves values as they are. ``stats={"con": (lo, hi), "loss": (lo, hi), ...}`` overrides
the per-scene statistics with pool-level ones the loop can compute (e.g. with :meth:`components` over all
scenes and :func:`pool_stats`). Affine maps commute with mean pooling, so normalising the pixel maps gives
the normalised region scores. :func:`pal_select` normalises over the whole pool (it sees every frame).
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from viewal.needs import NeedContext, register_provider
from viewal.scorers.base import SceneInputs, Scorer, Scores, register

__all__ = [
    "EPS", "kl_map", "class_inconsistency", "flip_back", "region_iou", "localisation_inconsistency_map",
    "flip_consistency_map", "uniform_kl_score", "region_means", "normalise_maps", "pool_stats",
    "FlipConsistency", "LossPrediction", "ConsistencyLoss", "PAL", "pal_select", "pal_diversity_select",
    "frame_rotation_scores",
]

EPS = 1e-8


# ============================================================================ pure functions

def kl_map(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> np.ndarray:
    """KL(p‖q) per pixel along the class axis.

    Args:
        p, q: (C, H, W) or (N, C, H, W) probabilities.
    Returns:
        (H, W) or (N, H, W) float32, Σ_c p_c log((p_c + ε)/(q_c + ε)).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p {p.shape} and q {q.shape} differ in shape")
    return (p * np.log((p + eps) / (q + eps))).sum(axis=-3).astype(np.float32)


def class_inconsistency(p: np.ndarray, p_flip: np.ndarray, eps: float = EPS) -> np.ndarray:
    """CI = ½[KL(P‖P') + KL(P'‖P)], P' already flipped back into P's frame.

    Args:
        p, p_flip: (C, H, W) or (N, C, H, W).
    Returns:
        (H, W) or (N, H, W) float32, ≥ 0, zero where P = P'.
    """
    return (0.5 * (kl_map(p, p_flip, eps).astype(np.float64) + kl_map(p_flip, p, eps))).astype(np.float32)


def flip_back(x: np.ndarray) -> np.ndarray:
    """Undo a horizontal flip of (..., H, W) maps (the flip is its own inverse)."""
    return np.ascontiguousarray(np.asarray(x)[..., ::-1])


def region_iou(a: np.ndarray, b: np.ndarray, regions: np.ndarray, n_regions: int | None = None) -> np.ndarray:
    """IoU of two label maps inside each region: mean over classes present in ``a`` or ``b`` inside r of
    |a=c ∧ b=c ∧ r| / |(a=c ∨ b=c) ∧ r|.

    Args:
        a, b: (H, W) int class maps (argmax masks).  regions: (H, W) int ids 0..R-1.
    Returns:
        (R,) float64 in [0, 1]; NaN for empty region ids.
    """
    a = np.asarray(a).astype(np.int64).ravel()
    b = np.asarray(b).astype(np.int64).ravel()
    r = np.asarray(regions).astype(np.int64).ravel()
    if not (a.shape == b.shape == r.shape):
        raise ValueError(f"a, b and regions must have one shape, got {np.shape(a)}, {np.shape(b)}, {np.shape(regions)}")
    R = int(r.max()) + 1 if n_regions is None else int(n_regions)
    C = int(max(a.max(initial=0), b.max(initial=0))) + 1
    cnt_a = np.bincount(r * C + a, minlength=R * C).reshape(R, C)
    cnt_b = np.bincount(r * C + b, minlength=R * C).reshape(R, C)
    same = a == b
    inter = np.bincount(r[same] * C + a[same], minlength=R * C).reshape(R, C)
    union = cnt_a + cnt_b - inter
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), 0.0)
    n = present.sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, iou.sum(1) / np.maximum(n, 1), np.nan)


def localisation_inconsistency_map(a: np.ndarray, b: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """LI(r) = 1 − :func:`region_iou` broadcast to the pixels of each region.

    Args:
        a, b: (H, W) argmax maps.  regions: (H, W) int ids.
    Returns:
        (H, W) float32, constant over each region.
    """
    regions = np.asarray(regions).astype(np.int64)
    li = 1.0 - region_iou(a, b, regions)
    return np.nan_to_num(li, nan=0.0)[regions].astype(np.float32)


def flip_consistency_map(ci: np.ndarray, a: np.ndarray, b: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Pixel map whose region mean is L_con(r) = mean_r CI + LI(r).

    Args:
        ci: (H, W) class inconsistency.  a, b: (H, W) argmax maps of P and P'.  regions: (H, W) int ids.
    Returns:
        (H, W) float32.
    """
    return (np.asarray(ci, dtype=np.float32) + localisation_inconsistency_map(a, b, regions)).astype(np.float32)


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


def region_means(pixel: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Region means of (N, H, W) maps over (N, H, W) local region ids, all frames' regions concatenated
    (empty ids dropped). Returns (R_total,) float64."""
    pixel = np.asarray(pixel, dtype=np.float64)
    regions = np.asarray(regions).astype(np.int64)
    out = []
    for p, r in zip(pixel, regions):
        R = int(r.max()) + 1
        cnt = np.bincount(r.ravel(), minlength=R)
        tot = np.bincount(r.ravel(), weights=p.ravel(), minlength=R)
        out.append(tot[cnt > 0] / cnt[cnt > 0])
    return np.concatenate(out) if out else np.zeros(0)


def pool_stats(values: np.ndarray, normalise: str = "minmax") -> tuple[float, float]:
    """(lo, hi) of the affine normalisation x ↦ (x − lo)/(hi − lo) for region values.

    ``minmax``: (min, max); ``zscore``: (median, median + 1.4826·MAD); ``none``: (0, 1). Non-finite
    values are ignored; a constant component gives hi = lo + 1 (all zeros after normalisation).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if normalise == "none" or v.size == 0:
        return 0.0, 1.0
    if normalise == "minmax":
        lo, hi = float(v.min()), float(v.max())
    elif normalise == "zscore":
        lo = float(np.median(v))
        hi = lo + 1.4826 * float(np.median(np.abs(v - lo)))
    else:
        raise ValueError(f"unknown normalise {normalise!r}; valid: 'minmax', 'zscore', 'none'")
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def normalise_maps(pixel: np.ndarray, regions: np.ndarray, normalise: str = "minmax",
                   stats: tuple[float, float] | None = None) -> np.ndarray:
    """Affine-normalise (N, H, W) pixel maps by their region values (or by given ``stats`` = (lo, hi))."""
    lo, hi = stats if stats is not None else pool_stats(region_means(pixel, regions), normalise)
    return ((np.asarray(pixel, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)


# ============================================================================ need providers

def _torch():
    import torch

    return torch


def _images(frames: Sequence, device, size: tuple[int, int] | None = None) -> "torch.Tensor":  # noqa: F821
    """(B, 3, h, w) normalised network input of frames, RGB area-resized to the working ``size`` (None = as is)."""
    from viewal.data import resize_rgb
    from viewal.model import images_from_rgb

    return images_from_rgb(np.stack([resize_rgb(np.asarray(f.rgb), size) for f in frames])).to(device)


def _size(ctx: NeedContext) -> tuple[int, int] | None:
    size = ctx.options.get("size")
    return None if size is None else (int(size[0]), int(size[1]))


def _resize_maps(x: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    """(B, h, w) maps → (B, H, W): nearest (ids) or bilinear (scores)."""
    import cv2

    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if nearest and np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.int32)  # region ids: a dtype every OpenCV build resizes
    return np.stack([cv2.resize(np.ascontiguousarray(m), (hw[1], hw[0]), interpolation=interp) for m in x])


def _batches(ctx: NeedContext):
    n = len(ctx.frames)
    bs = max(1, int(ctx.batch_size))
    for s in range(0, n, bs):
        yield s, ctx.frames[s:s + bs]


def _deterministic_probs(model, images) -> "torch.Tensor":  # noqa: F821
    torch = _torch()
    was_training, was_mc = model.training, getattr(model, "mc_dropout", False)
    model.eval()
    if hasattr(model, "mc_dropout"):
        model.mc_dropout = False
    try:
        with torch.no_grad():
            return torch.softmax(model(images).float(), dim=1)
    finally:
        model.train(was_training)
        if hasattr(model, "mc_dropout"):
            model.mc_dropout = was_mc


def _ctx_superpixels(ctx: NeedContext) -> np.ndarray | None:
    for src in (getattr(ctx, "superpixels", None), ctx.options.get("superpixels"), ctx.cache.get("superpixels")):
        if src is not None:
            sp = np.asarray(src)
            if sp.ndim != 3 or len(sp) != len(ctx.frames):
                raise ValueError(f"superpixels passed to the providers must be (N={len(ctx.frames)}, H, W), got {sp.shape}")
            return sp
    return None


@register_provider("flip_consistency",
                   "(N, 3, H, W) float32: class inconsistency CI, argmax of P, argmax of P' (flip, flipped back)")
def _flip_consistency_provider(ctx: NeedContext) -> dict[str, np.ndarray]:
    """Deterministic predictions on each frame and on its horizontal flip; CI and both argmax maps."""
    torch = _torch()
    model = ctx.model.to(ctx.device)
    out = []
    for _, batch in _batches(ctx):
        hw = tuple(np.asarray(batch[0].rgb).shape[:2])
        x = _images(batch, ctx.device, _size(ctx))
        p = _deterministic_probs(model, x)
        pf = torch.flip(_deterministic_probs(model, torch.flip(x, dims=[3])), dims=[3])
        p_np, pf_np = p.cpu().numpy(), pf.cpu().numpy()
        ci = _resize_maps(class_inconsistency(p_np, pf_np), hw, nearest=False)
        a = _resize_maps(p_np.argmax(1).astype(np.float32), hw, nearest=True)
        b = _resize_maps(pf_np.argmax(1).astype(np.float32), hw, nearest=True)
        out.append(np.stack([ci, a, b], axis=1))
    return {"flip_consistency": np.concatenate(out).astype(np.float32)}


@register_provider("loss_pred",
                   "(N, H, W) float32 predicted loss of model.loss_head, constant over each superpixel "
                   "(region variant) or over the frame (when no superpixels reach the providers)")
def _loss_pred_provider(ctx: NeedContext) -> dict[str, np.ndarray]:
    torch = _torch()
    model = ctx.model.to(ctx.device)
    head = getattr(model, "loss_head", None)
    if head is None:
        raise ValueError("scorer needs 'loss_pred' but the model has no loss_head: train with "
                         "viewal.heads.attach_loss_head(model) and loss_prediction_extra_loss(...)")
    sp = _ctx_superpixels(ctx)
    if sp is None:
        warnings.warn("loss_pred: no superpixels reached the provider (NeedContext.options['superpixels']); "
                      "using the per-image loss prediction", stacklevel=2)
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s, batch in _batches(ctx):
                H, W = np.asarray(batch[0].rgb).shape[:2]
                x = _images(batch, ctx.device, _size(ctx))
                feats = model.encode(x)
                if sp is None:
                    pred = head(feats).float().cpu().numpy()
                    out.append(np.broadcast_to(pred[:, None, None], (len(batch), H, W)).astype(np.float32))
                else:
                    full = sp[s:s + len(batch)].astype(np.int64)
                    R = int(full.max()) + 1
                    # pool at the network's resolution (ids nearest-resized), paint back at the frame's
                    regs = torch.as_tensor(_resize_maps(full, tuple(x.shape[-2:]), nearest=True), device=ctx.device)
                    pred, _ = head.forward_regions(feats, regs, R)
                    pred = pred.float().cpu().numpy()
                    out.append(np.take_along_axis(pred, full.reshape(len(batch), -1), axis=1).reshape(len(batch), H, W))
    finally:
        model.train(was)
    return {"loss_pred": np.concatenate(out).astype(np.float32)}


@register_provider("rotation_score", "(N,) float32 PAL self-supervision score S_S (rotation loss over 4 rotations)")
def _rotation_score_provider(ctx: NeedContext) -> dict[str, np.ndarray]:
    return {"rotation_score": frame_rotation_scores(ctx.model, ctx.frames, batch_size=ctx.batch_size,
                                                    device=ctx.device, size=_size(ctx))}


def frame_rotation_scores(model, frames: Sequence, batch_size: int = 4, device="cpu",
                          size: tuple[int, int] | None = None) -> np.ndarray:
    """S_S of each frame: (N,) float32 (see :func:`viewal.heads.rotation_scores`)."""
    torch = _torch()
    from viewal.heads import rotation_scores

    if getattr(model, "rotation_head", None) is None:
        raise ValueError("PAL needs model.rotation_head: train with viewal.heads.attach_rotation_head(model) "
                         "and rotation_extra_loss(...)")
    model = model.to(device)
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(frames), max(1, batch_size)):
                out.append(rotation_scores(model, _images(frames[s:s + batch_size], device, size)).float().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out).astype(np.float32)


# ============================================================================ scorers

class _Normalising(Scorer):
    """Shared option handling: ``normalise`` ('minmax' | 'zscore' | 'none') and ``stats`` {component: (lo, hi)}."""

    def _norm(self, name: str, pixel: np.ndarray, regions: np.ndarray) -> np.ndarray:
        stats = (self.options.get("stats") or {}).get(name)
        return normalise_maps(pixel, regions, self.options.get("normalise", "minmax"), stats)

    def components(self, inputs: SceneInputs) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        """Raw (un-normalised) component pixel maps, name → (N, H, W)."""
        raise NotImplementedError


def _flip_con_maps(inputs: SceneInputs) -> np.ndarray:
    fc = np.asarray(inputs.extras["flip_consistency"])
    sp = np.asarray(inputs.superpixels)
    if fc.shape[0] != sp.shape[0] or fc.shape[1] != 3 or fc.shape[2:] != sp.shape[1:]:
        raise ValueError(f"flip_consistency extras must be (N, 3, H, W) matching superpixels {sp.shape}, got {fc.shape}")
    return np.stack([flip_consistency_map(fc[i, 0], fc[i, 1].astype(np.int64), fc[i, 2].astype(np.int64), sp[i])
                     for i in range(len(sp))])


def _loss_head_hook(options: dict, model):
    from viewal.heads import attach_loss_head, loss_prediction_extra_loss

    attach_loss_head(model, hidden=int(options.get("loss_hidden", 128)))
    return loss_prediction_extra_loss(weight=float(options.get("rank_weight", 1.0)),
                                      margin=float(options.get("margin", 1.0)), region="auto")


@register
class FlipConsistency(Scorer):
    """Seed 000's consistency score: pixel map CI(x) + LI(r(x)); region mean = L_con(r)."""

    name = "flip_consistency"
    needs = frozenset({"flip_consistency"})
    selection = "greedy"

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=_flip_con_maps(inputs))


@register
class LossPrediction(Scorer):
    """Yoo & Kweon's predicted loss (region variant when superpixels reach the provider).

    Options: ``rank_weight`` (λ of L_rank in training, default 1), ``margin`` (ξ, default 1), ``loss_hidden``.
    """

    option_names = frozenset({'loss_hidden', 'rank_weight', 'margin'})
    name = "loss_prediction"
    training = "loss_head"
    needs = frozenset({"loss_pred"})
    selection = "greedy"

    def prepare_model(self, model):
        return _loss_head_hook(self.options, model)

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=np.asarray(inputs.extras["loss_pred"], dtype=np.float32))


@register
class ConsistencyLoss(_Normalising):
    """Seed 000's acquisition: n(L_con) + λ · n(l̂). Options: ``lam`` (λ, default 1), ``normalise``, ``stats``
    (keys ``"con"``, ``"loss"``), and the training options of :class:`LossPrediction`."""

    option_names = frozenset({'stats', 'normalise', 'lam', 'loss_hidden', 'rank_weight', 'margin'})
    name = "consistency_loss"
    training = "loss_head"
    needs = frozenset({"flip_consistency", "loss_pred"})
    selection = "greedy"

    def prepare_model(self, model):
        return _loss_head_hook(self.options, model)

    def components(self, inputs: SceneInputs) -> dict[str, np.ndarray]:
        return {"con": _flip_con_maps(inputs), "loss": np.asarray(inputs.extras["loss_pred"], dtype=np.float32)}

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        comp = self.components(inputs)
        sp = inputs.superpixels
        lam = float(self.options.get("lam", 1.0))
        return Scores(pixel=self._norm("con", comp["con"], sp) + lam * self._norm("loss", comp["loss"], sp))


@register
class PAL(_Normalising):
    """PAL: n(S_S) + n(S_C) per pixel (weights ``w_ss``, ``w_sc``, default 1), and the diversity term S_D in
    :meth:`select_pool`.

    Options: ``w_ss``, ``w_sc``, ``w_sd`` (weights), ``rotation_weight`` (weight of the rotation loss in
    training, default 1), ``sub_queries`` (K, default 4), ``finetune_steps`` (20), ``finetune_lr`` (1e-3),
    ``finetune_batch`` (4), ``normalise``, ``stats``. The loop calls :meth:`select_pool` when a scorer
    has one (see ``docs/methods.md``); without it, selection is plain greedy on n(S_S) + n(S_C).
    """

    option_names = frozenset({'stats', 'normalise', 'rotation_weight', 'w_ss', 'w_sc', 'sub_queries', 'finetune_steps', 'finetune_lr', 'finetune_batch', 'w_sd', 'seed'})
    name = "pal"
    training = "rotation_head"
    needs = frozenset({"probs", "rotation_score"})
    selection = "greedy"

    def prepare_model(self, model):
        from viewal.heads import attach_rotation_head, rotation_extra_loss

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

    def select_pool(self, model, pool, frames: Sequence, regions_of, budget_pixels: int, *, adjacency=None,
                    device: str = "cpu", size: tuple[int, int] | None = None, batch_size: int = 4,
                    progress: bool = True):
        """PAL's sub-query selection on a pool already scored by this scorer (see :func:`pal_diversity_select`).

        Args:
            pool: ``viewal.selection.RegionPool`` whose ``score`` is this scorer's pooled n(S_S) + n(S_C).
            frames: (F,) the pool's frames in pool order.  regions_of: frame index → (H, W) region map
                (unused; kept so that every ``select_pool`` has the same signature).
        Returns:
            ``viewal.selection.Selection``.
        """
        o = self.options
        return pal_diversity_select(model, pool, frames, budget_pixels, sub_queries=int(o.get("sub_queries", 4)),
                                    finetune_steps=int(o.get("finetune_steps", 20)),
                                    finetune_lr=float(o.get("finetune_lr", 1e-3)),
                                    finetune_batch=int(o.get("finetune_batch", 4)), w_d=float(o.get("w_sd", 1.0)),
                                    adjacency=adjacency, device=device, size=size, batch_size=batch_size,
                                    seed=int(o.get("seed", 0)), progress=progress)


# ============================================================================ PAL selection with diversity

def pal_diversity_select(model, pool, frames: Sequence, budget_pixels: int, *, sub_queries: int = 4,
                         finetune_steps: int = 20, finetune_lr: float = 1e-3, finetune_batch: int = 4,
                         w_d: float = 1.0, adjacency=None, device: str = "cpu", size: tuple[int, int] | None = None,
                         batch_size: int = 4, seed: int = 0, progress: bool = True):
    """PAL's K sub-queries with rotation-only fine-tuning between them (the diversity term S_D).

    Sub-query k (k = 0..K−1) gets ⌈(budget − selected so far)/(K − k)⌉ pixels and takes the available regions
    with the highest score, greedily (cross-view dedup when ``adjacency`` is given): ``pool.score`` for k = 0,
    ``pool.score + w_d · n(S_D)`` afterwards. After each sub-query but the last, a copy of ``model`` (encoder
    + rotation head) is fine-tuned on the rotation task only on the frames chosen so far
    (:func:`viewal.heads.finetune_rotation`, from ``model`` each time), and S_D = S_S of the fine-tuned copy
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
    from tqdm.auto import tqdm

    from viewal.heads import finetune_rotation
    from viewal.selection import RegionPool, Selection, select_greedy

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
    bar = tqdm(range(sub_queries), desc="PAL sub-queries", disable=not progress, leave=False)
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
        imgs = _images([frames[i] for i in chosen], device, size)
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
        model: SegModel with ``rotation_head`` (trained with ``viewal.heads.rotation_extra_loss``).
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
    from viewal.model import iter_predict_frames
    from viewal.selection import RegionPool, labelled_regions, pool_frames

    frames = list(frames)
    regions = np.stack([np.asarray(r) for r in regions]).astype(np.int64)
    if len(regions) != len(frames):
        raise ValueError(f"regions has {len(regions)} frames, frames {len(frames)}")
    if getattr(model, "rotation_head", None) is None:
        raise ValueError("PAL needs model.rotation_head: train with viewal.heads.attach_rotation_head(model) "
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
