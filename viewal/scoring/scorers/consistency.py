"""Consistency scorers: flip consistency, loss prediction and their combination (``docs/methods.md``
§1 "Flip consistency", §2 "Loss prediction and consistency_loss").

Pure functions first (numpy, shapes in docstrings), then the need providers (model → arrays, registered in
``viewal.scoring.needs``), then the scorers (registered in ``viewal.scoring.scorers``). The normalisation shared
with PAL (:func:`pool_stats`, :func:`normalise_maps`, :class:`NormalisingScorer`) lives here too.

Definitions (natural log throughout; ε = 1e-8):

* CI(x) = ½[KL(P(x)‖P'(x)) + KL(P'(x)‖P(x))], P on the image, P' on its horizontal flip, flipped back.
  P and P' are deterministic predictions (dropout off).
* IoU inside region r of the argmax masks A (of P) and B (of P'): the **mean over the classes present in
  A or B inside r** of |A_c ∩ B_c ∩ r| / |(A_c ∪ B_c) ∩ r|. LI(r) = 1 − IoU(r) ∈ [0, 1].
* L_con(r) = mean_{x∈r} CI(x) + LI(r). The scorer's pixel map is CI(x) + LI(r(x)), so the region mean
  pooling of the loop yields L_con(r) exactly.
* Loss prediction: l̂(r) from ``model.loss_head`` (``viewal.nn.heads``), region variant (masked average
  pooling in each superpixel) when the loop passes superpixels to the providers, else per image.
* consistency_loss = n(L_con) + λ · n(l̂), n = the normalisation below.

Normalisation n (option ``normalise``): components are pooled per region, then mapped affinely so that
their region values span [0, 1] — ``"minmax"`` (default) uses the min and max over the scene's regions
(the scorer sees one scene at a time), ``"zscore"`` uses (x − median)/(1.4826·MAD) over the scene's
regions, ``"none"`` leaves values as they are. ``stats={"con": (lo, hi), "loss": (lo, hi), ...}`` overrides
the per-scene statistics with pool-level ones the loop can compute (e.g. with ``components`` over all
scenes and :func:`pool_stats`). Affine maps commute with mean pooling, so normalising the pixel maps gives
the normalised region scores.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from viewal.nn.heads import attach_loss_head, loss_prediction_extra_loss
from viewal.nn.model import frame_images as model_frame_images
from viewal.scoring.needs import NeedContext, register_provider
from viewal.scoring.scorers.base import SceneInputs, Scorer, Scores, register
from viewal.selection import pool_frames

if TYPE_CHECKING:
    import torch

__all__ = [
    "EPS", "kl_map", "class_inconsistency", "flip_back", "region_iou", "localisation_inconsistency_map",
    "flip_consistency_map", "normalise_maps", "pool_stats", "NormalisingScorer", "frame_images", "working_size",
    "FlipConsistency", "LossPrediction", "ConsistencyLoss",
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


def _region_values(pixel: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(R_total,) float64 region means of (N, H, W) maps over local region ids, empty ids dropped."""
    score, sizes, _ = pool_frames(np.asarray(pixel, dtype=np.float64), np.asarray(regions).astype(np.int64))
    return score[sizes > 0]


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
    lo, hi = stats if stats is not None else pool_stats(_region_values(pixel, regions), normalise)
    return ((np.asarray(pixel, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)


# ============================================================================ need providers

def frame_images(frames: Sequence, device, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 3, h, w) network input of frames at the working ``size`` (``viewal.nn.model.frame_images``) on ``device``."""
    return model_frame_images(frames, size).to(device)


def working_size(ctx: NeedContext) -> tuple[int, int] | None:
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


def _deterministic_probs(model, images) -> torch.Tensor:  # noqa: F821
    import torch

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
                raise ValueError(f"superpixels passed to the providers must be (N={len(ctx.frames)}, H, W), "
                                 f"got {sp.shape}")
            return sp
    return None


@register_provider("flip_consistency",
                   "(N, 3, H, W) float32: class inconsistency CI, argmax of P, argmax of P' (flip, flipped back)")
def _flip_consistency_provider(ctx: NeedContext) -> dict[str, np.ndarray]:
    """Deterministic predictions on each frame and on its horizontal flip; CI and both argmax maps."""
    import torch

    model = ctx.model.to(ctx.device)
    out = []
    for _, batch in _batches(ctx):
        hw = tuple(np.asarray(batch[0].rgb).shape[:2])
        x = frame_images(batch, ctx.device, working_size(ctx))
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
    import torch

    model = ctx.model.to(ctx.device)
    head = getattr(model, "loss_head", None)
    if head is None:
        raise ValueError("scorer needs 'loss_pred' but the model has no loss_head: train with "
                         "viewal.nn.heads.attach_loss_head(model) and loss_prediction_extra_loss(...)")
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
                x = frame_images(batch, ctx.device, working_size(ctx))
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


# ============================================================================ scorers

class NormalisingScorer(Scorer):
    """Base of scorers that sum normalised components (consistency_loss, PAL). Shared option handling:
    ``normalise`` ('minmax' | 'zscore' | 'none') and ``stats`` {component: (lo, hi)}."""

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
        raise ValueError(f"flip_consistency extras must be (N, 3, H, W) matching superpixels {sp.shape}, "
                         f"got {fc.shape}")
    return np.stack([flip_consistency_map(fc[i, 0], fc[i, 1].astype(np.int64), fc[i, 2].astype(np.int64), sp[i])
                     for i in range(len(sp))])


def _loss_head_hook(options: dict, model):
    attach_loss_head(model, hidden=int(options.get("loss_hidden", 128)))
    return loss_prediction_extra_loss(weight=float(options.get("rank_weight", 1.0)),
                                      margin=float(options.get("margin", 1.0)), region="auto")


@register
class FlipConsistency(Scorer):
    """Kim and Lee's consistency score (flip consistency): pixel map CI(x) + LI(r(x)); region mean = L_con(r)."""

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
class ConsistencyLoss(NormalisingScorer):
    """Kim and Lee's acquisition: n(L_con) + λ · n(l̂). Options: ``lam`` (λ, default 1), ``normalise``, ``stats``
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
