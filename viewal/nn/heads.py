"""Auxiliary heads on the segmenter's shared encoder: loss prediction (Yoo & Kweon) and rotation (PAL).

Both heads read the encoder's feature pyramid (``SegModel.encode(images) -> list[Tensor]``, smp order:
stage 0 is the input itself, then strides 2, 4, 8, 16, 32) and train alongside segmentation through the
``extra_loss`` hook of ``viewal.nn.train.fit`` (``extra_loss(model, batch, logits, features) -> Tensor``).
A head is attached to the model as a sub-module (:func:`attach_loss_head`, :func:`attach_rotation_head`)
so that it is saved, moved and optimised with the model, and the scorers find it on the model they get.

Loss prediction (docs/methods.md §2):
    per stage s: GAP → FC → ReLU;  concat over stages → FC → l̂ (one number per image).
    Region variant: the GAP is replaced by a masked average inside each superpixel, giving l̂ per region.
    Trained with the pairwise ranking loss  max(0, −sign(l_i − l_j)·(l̂_i − l̂_j) + ξ), ξ = 1, over all
    pairs (i < j) of the batch (images) or of the batch's labelled regions (region variant); the target
    loss l (mean cross-entropy over the labelled pixels of the image / region) is detached.

Rotation (docs/methods.md §3, PAL): 2×2 average pooling of the deepest stage → FC → ReLU → FC → 4 logits
(0/90/180/270°; ``grid=1`` gives plain GAP).
PAL's self-supervision score of an image is the rotation loss summed over its four rotations,
S_S(x) = Σ_k CE(g(rot_k x), k)  (= Σ_k KL(onehot_k ‖ g(rot_k x))).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "IGNORE", "per_image_seg_loss", "per_region_seg_loss", "ranking_loss", "region_weights",
    "masked_average_pool", "LossPredictionHead", "RotationHead", "attach_loss_head", "attach_rotation_head",
    "loss_prediction_extra_loss", "rotate_images", "rotation_logits", "rotation_scores",
    "rotation_extra_loss", "finetune_rotation", "combine_extra_losses",
]

IGNORE = 255


# --------------------------------------------------------------------------- targets and ranking loss

def per_image_seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the labelled pixels of each image.

    Args:
        logits: (B, C, H, W).  labels: (B, H, W) int, ``ignore_index`` = unlabelled.
    Returns:
        loss (B,) (0 where the image has no labelled pixel), valid (B,) bool.
    """
    ce = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none")  # (B,H,W)
    lab = (labels != ignore_index).flatten(1)
    n = lab.sum(1)
    loss = (ce.flatten(1) * lab).sum(1) / n.clamp(min=1)
    return loss, n > 0


def per_region_seg_loss(logits: torch.Tensor, labels: torch.Tensor, regions: torch.Tensor, n_regions: int,
                        ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the labelled pixels of each region.

    Args:
        logits: (B, C, H, W).  labels: (B, H, W).  regions: (B, H, W) int ids in 0..R-1.
    Returns:
        loss (B, R), valid (B, R) bool (region has at least one labelled pixel).
    """
    B = logits.shape[0]
    ce = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none").flatten(1)
    lab = (labels != ignore_index).flatten(1).to(ce.dtype)
    r = regions.long().flatten(1)
    tot = torch.zeros(B, n_regions, dtype=ce.dtype, device=ce.device).scatter_add_(1, r, ce * lab)
    cnt = torch.zeros(B, n_regions, dtype=ce.dtype, device=ce.device).scatter_add_(1, r, lab)
    return tot / cnt.clamp(min=1), cnt > 0


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """Yoo & Kweon's pairwise ranking loss over all pairs i < j.

    L = mean_{i<j, l_i ≠ l_j} max(0, −sign(l_i − l_j)·(l̂_i − l̂_j) + ξ).  ``target`` is detached here.

    Args:
        pred: (M,) predicted losses l̂.  target: (M,) true losses l.  valid: (M,) bool, entries to use.
    Returns:
        scalar tensor (0, connected to ``pred``, when fewer than two valid entries differ).
    """
    pred = pred.reshape(-1)
    target = target.detach().reshape(-1)
    if valid is not None:
        valid = valid.reshape(-1)
        pred, target = pred[valid], target[valid]
    if pred.numel() < 2:
        return pred.sum() * 0.0
    i, j = torch.triu_indices(pred.numel(), pred.numel(), offset=1, device=pred.device)
    sign = torch.sign(target[i] - target[j])
    keep = sign != 0
    if not bool(keep.any()):
        return pred.sum() * 0.0
    return F.relu(-sign[keep] * (pred[i][keep] - pred[j][keep]) + margin).mean()


# --------------------------------------------------------------------------- masked average pooling

def region_weights(regions: torch.Tensor, n_regions: int, size: tuple[int, int]) -> torch.Tensor:
    """Area weights of each region at a feature resolution.

    Args:
        regions: (B, H, W) int region ids in 0..R-1.  size: (h, w) of the feature map.
    Returns:
        (B, R, h, w) float: fraction of each feature cell covered by region r (area downsampling of the
        one-hot mask, so small regions keep a non-zero weight at every stage).
    """
    onehot = F.one_hot(regions.long(), n_regions).permute(0, 3, 1, 2).float()  # (B,R,H,W)
    if tuple(onehot.shape[-2:]) == tuple(size):
        return onehot
    return F.adaptive_avg_pool2d(onehot, size)


def masked_average_pool(feature: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of a feature map inside each region.

    Args:
        feature: (B, D, h, w).  weights: (B, R, h, w) from :func:`region_weights`.
    Returns:
        pooled (B, R, D), present (B, R) bool (region has non-zero weight).
    """
    num = torch.einsum("brhw,bdhw->brd", weights, feature)
    den = weights.sum((2, 3))
    return num / den.clamp(min=1e-12).unsqueeze(-1), den > 0


# --------------------------------------------------------------------------- heads

def _default_stages(encoder_channels: Sequence[int], n: int = 4) -> list[int]:
    # skip stage 0 (the input image itself) and zero-channel stages
    idx = [i for i, c in enumerate(encoder_channels) if i > 0 and c > 0]
    return idx[-n:]


class LossPredictionHead(nn.Module):
    """Yoo & Kweon's loss-prediction module on several encoder stages.

    Args:
        encoder_channels: channels of every stage of the encoder's feature list.
        stages: indices into the feature list (default: the last four).
        hidden: width of each stage's FC.
    """

    def __init__(self, encoder_channels: Sequence[int], stages: Sequence[int] | None = None, hidden: int = 128):
        super().__init__()
        self.stages = list(stages) if stages is not None else _default_stages(encoder_channels)
        if not self.stages:
            raise ValueError(f"no usable encoder stage in encoder_channels={list(encoder_channels)}")
        self.fcs = nn.ModuleList([nn.Linear(int(encoder_channels[s]), hidden) for s in self.stages])
        self.out = nn.Linear(hidden * len(self.stages), 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: the encoder's list; returns (B,) predicted loss per image."""
        hs = [F.relu(fc(features[s].mean((2, 3)))) for s, fc in zip(self.stages, self.fcs)]
        return self.out(torch.cat(hs, 1)).squeeze(1)

    def forward_regions(self, features: Sequence[torch.Tensor], regions: torch.Tensor, n_regions: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Region variant: masked average pooling inside each region instead of GAP.

        Args:
            features: the encoder's list.  regions: (B, H, W) int ids in 0..R-1 at image resolution.
        Returns:
            pred (B, R) predicted loss per region, present (B, R) bool (the region exists).
        """
        onehot = F.one_hot(regions.long(), n_regions).permute(0, 3, 1, 2).float()
        present = onehot.sum((2, 3)) > 0
        hs = []
        for s, fc in zip(self.stages, self.fcs):
            f = features[s]
            same = tuple(onehot.shape[-2:]) == tuple(f.shape[-2:])
            w = onehot if same else F.adaptive_avg_pool2d(onehot, f.shape[-2:])
            pooled, _ = masked_average_pool(f, w)
            hs.append(F.relu(fc(pooled)))
        return self.out(torch.cat(hs, -1)).squeeze(-1), present


class RotationHead(nn.Module):
    """PAL's self-supervision head: average pooling of the deepest stage → FC → ReLU → FC → 4 rotation logits.

    Args:
        in_channels: channels of the stage it reads.  stage: index into the feature list (default −1).
        grid: the pooling keeps a ``grid × grid`` layout (1 = global average pooling). A 2×2 layout keeps
            where things are, which is what a rotation changes; it works for any input size (rotated
            non-square frames included).
    """

    def __init__(self, in_channels: int, hidden: int = 256, stage: int = -1, grid: int = 2):
        super().__init__()
        self.stage = stage
        self.grid = int(grid)
        self.mlp = nn.Sequential(nn.Linear(int(in_channels) * self.grid ** 2, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 4))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: the encoder's list; returns (B, 4) logits."""
        return self.mlp(F.adaptive_avg_pool2d(features[self.stage], self.grid).flatten(1))


def _encoder_channels(model) -> list[int]:
    ch = getattr(model, "encoder_channels", None)
    if ch is None:
        raise ValueError("model has no 'encoder_channels' (expected a viewal.nn.model.SegModel)")
    return list(ch)


def attach_loss_head(model, stages: Sequence[int] | None = None, hidden: int = 128) -> LossPredictionHead:
    """Create a :class:`LossPredictionHead` for ``model`` and register it as ``model.loss_head``."""
    head = LossPredictionHead(_encoder_channels(model), stages, hidden)
    dev = next(model.parameters()).device
    model.loss_head = head.to(dev)
    return model.loss_head


def attach_rotation_head(model, hidden: int = 256, grid: int = 2) -> RotationHead:
    """Create a :class:`RotationHead` on the deepest stage and register it as ``model.rotation_head``."""
    head = RotationHead(_encoder_channels(model)[-1], hidden, grid=grid)
    dev = next(model.parameters()).device
    model.rotation_head = head.to(dev)
    return model.rotation_head


# --------------------------------------------------------------------------- training hooks

def loss_prediction_extra_loss(weight: float = 1.0, margin: float = 1.0, region: bool | str = False,
                               detach_features: bool = False, region_key: str = "superpixels",
                               max_regions: int | None = None) -> Callable:
    """``extra_loss`` for ``viewal.nn.train.fit``: ``weight`` · ranking loss of ``model.loss_head``.

    Image variant: targets are the per-image mean CE over labelled pixels. Region variant
    (``region=True``): batches must carry ``batch[region_key]`` (B, H, W) int superpixel ids; targets are
    per-region mean CE over labelled pixels; only regions with labelled pixels are ranked.
    ``region="auto"``: the region variant for batches that carry ``region_key``, the image variant otherwise.
    ``detach_features`` stops the ranking loss's gradient at the encoder (Yoo & Kweon do so late in training).
    """

    def extra_loss(model, batch, logits, features):
        head = getattr(model, "loss_head", None)
        if head is None:
            raise ValueError("model has no loss_head; call viewal.nn.heads.attach_loss_head(model) before fit")
        feats = [f.detach() for f in features] if detach_features else features
        labels = batch["label"].to(logits.device)
        use_regions = (region_key in batch) if region == "auto" else bool(region)
        if not use_regions:
            target, valid = per_image_seg_loss(logits, labels)
            return weight * ranking_loss(head(feats), target, margin, valid)
        if region_key not in batch:
            raise KeyError(f"region loss prediction needs batch[{region_key!r}] (superpixel ids)")
        regions = batch[region_key].to(logits.device).long()
        R = int(regions.max()) + 1
        target, valid = per_region_seg_loss(logits, labels, regions, R)
        pred, present = head.forward_regions(feats, regions, R)
        valid = valid & present
        if max_regions is not None and int(valid.sum()) > max_regions:
            idx = torch.nonzero(valid.flatten()).squeeze(1)
            keep = idx[torch.randperm(idx.numel(), device=idx.device)[:max_regions]]
            valid = torch.zeros_like(valid.flatten()).index_fill_(0, keep, True).view_as(valid)
        return weight * ranking_loss(pred, target, margin, valid)

    return extra_loss


def rotate_images(images: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate (B, C, H, W) images by k·90° counter-clockwise (k = 1, 3 swap H and W)."""
    return torch.rot90(images, int(k) % 4, dims=(2, 3))


def rotation_logits(model, images: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """Rotation-head logits of each image rotated by its own k.

    Args:
        images: (B, 3, H, W).  ks: (B,) int in 0..3.
    Returns:
        (B, 4) logits (at most two encoder passes: k ∈ {0, 2} keep the shape, k ∈ {1, 3} swap H and W).
    """
    head = getattr(model, "rotation_head", None)
    if head is None:
        raise ValueError("model has no rotation_head; call viewal.nn.heads.attach_rotation_head(model)")
    out = images.new_zeros(images.shape[0], 4)
    ks = ks.to(images.device)
    for parity in (0, 1):
        sel = torch.nonzero(ks % 2 == parity).squeeze(1)
        if sel.numel() == 0:
            continue
        x = torch.stack([rotate_images(images[i:i + 1], int(ks[i]))[0] for i in sel.tolist()])
        out[sel] = head(model.encode(x))
    return out


def rotation_scores(model, images: torch.Tensor) -> torch.Tensor:
    """PAL's S_S per image: Σ_{k=0..3} CE(g(rot_k x), k).

    Args:
        images: (B, 3, H, W) normalised as the model expects.
    Returns:
        (B,) float, higher = the rotation task is harder on this image (unlike the labelled data).
    """
    total = images.new_zeros(images.shape[0])
    for k in range(4):
        ks = torch.full((images.shape[0],), k, dtype=torch.long, device=images.device)
        total = total + F.cross_entropy(rotation_logits(model, images, ks), ks, reduction="none")
    return total


def rotation_extra_loss(weight: float = 1.0, generator: torch.Generator | None = None) -> Callable:
    """``extra_loss`` for ``viewal.nn.train.fit``: ``weight`` · CE of ``model.rotation_head`` on a random
    rotation (0/90/180/270°) of every image of the batch (labels are not used)."""

    def extra_loss(model, batch, logits, features):
        images = batch["image"].to(logits.device)
        ks = torch.randint(0, 4, (images.shape[0],), generator=generator).to(images.device)
        return weight * F.cross_entropy(rotation_logits(model, images, ks), ks)

    return extra_loss


def finetune_rotation(model, images: torch.Tensor, steps: int = 20, lr: float = 1e-3, batch_size: int = 4,
                      copy_model: bool = True, seed: int = 0, train_mode: bool = True):
    """Fine-tune the encoder and rotation head on the rotation task only (PAL's diversity step).

    Args:
        model: a SegModel with ``rotation_head``.  images: (M, 3, H, W) the frames chosen so far (no labels).
        steps: optimiser steps (Adam); each step uses ``batch_size`` images × all four rotations.
        copy_model: fine-tune a deep copy (default) and leave ``model`` untouched.
        train_mode: BatchNorm in training mode (batch statistics, running statistics updated) as in
            ordinary fine-tuning; False keeps the running statistics frozen (dropout is never used: the
            rotation head reads the encoder only).
    Returns:
        the fine-tuned model (in eval mode).
    """
    if getattr(model, "rotation_head", None) is None:
        raise ValueError("model has no rotation_head; call viewal.nn.heads.attach_rotation_head(model)")
    net = copy.deepcopy(model) if copy_model else model
    enc = getattr(net, "encoder", None)
    params = list(net.rotation_head.parameters()) + (list(enc.parameters()) if enc is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    net.train(train_mode)
    M = images.shape[0]
    for _ in range(int(steps)):
        idx = torch.randperm(M, generator=g)[:batch_size]
        x = images[idx]
        x4 = x.repeat(4, 1, 1, 1)
        ks = torch.arange(4).repeat_interleave(x.shape[0]).to(x.device)
        loss = F.cross_entropy(rotation_logits(net, x4, ks), ks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net


def combine_extra_losses(*hooks: Callable | None) -> Callable | None:
    """Sum several ``extra_loss`` hooks into one (``None`` entries are skipped; all ``None`` → ``None``)."""
    hooks = tuple(h for h in hooks if h is not None)
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def extra_loss(model, batch, logits, features):
        return sum(h(model, batch, logits, features) for h in hooks)

    return extra_loss
