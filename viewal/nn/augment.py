"""Max-entropy augmentation (Cho, Kim and Yoon, docs/methods.md §4): a spatial transformer learns per-image affine warps
that make the (frozen) segmenter uncertain; the segmenter is then fine-tuned on the warped images.

Pieces (pure functions first):

* :func:`affine_grid` / :func:`warp_images` / :func:`warp_labels` — one sampling grid for both: images
  bilinear, labels nearest neighbour with out-of-image pixels set to 255 (ignored), so image and labels
  stay aligned. θ maps *output* normalised coordinates to *input* ones (``torch.nn.functional.affine_grid``
  convention, ``align_corners=False``).
* :func:`max_entropy_loss` — L_ME = mean over in-image pixels of −log(log C − H(x) + ε), H the softmax
  entropy of the segmenter on the warped image. L_ME grows with H (to −log ε at the uniform
  distribution); the STN *maximises* it (its optimiser minimises −L_ME).
* :class:`LocalisationNet` — small CNN → θ (B, 2, 3), initialised to the identity (last layer zero).
  Remedies for the collapse to the identity the seed reports are options: ``bound`` (θ = I + bound·tanh(raw),
  a bounded deviation) and ``reg_weight`` (penalty reg·‖θ − I‖², a regularised output), and the adversarial
  discriminator is optional (``discriminator=False`` by default; λ_adv = 2 when on).
* :class:`MaxEntropyAugmenter` — trains the STN (segmenter frozen) and is then used as a training
  augmentation: ``augmenter(batch) -> batch`` with ``image`` and ``label`` warped.
  :func:`max_entropy_augmenter` builds and trains one in a call.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from viewal.core.progress import progress_bar
from viewal.nn.data import as_items
from viewal.nn.heads import combine_extra_losses, per_image_seg_loss
from viewal.nn.model import frame_images
from viewal.nn.train import FitState, TrainConfig, fit

__all__ = [
    "IGNORE", "identity_theta", "affine_grid", "warp_images", "warp_labels", "entropy_map",
    "max_entropy_loss", "LocalisationNet", "Discriminator", "MaxEntropyAugmenter", "max_entropy_augmenter",
    "inside_mask", "item_images", "train_with_max_entropy", "max_entropy_finetune",
]

IGNORE = 255


def identity_theta(batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, 2, 3) identity affine matrices."""
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype).expand(batch, 2, 3).clone()


def affine_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) in normalised input coordinates for output size (H, W)."""
    B = theta.shape[0]
    return F.affine_grid(theta, [B, 1, int(size[0]), int(size[1])], align_corners=False)


def warp_images(images: torch.Tensor, theta: torch.Tensor, padding_mode: str = "zeros",
                mode: str = "bilinear") -> torch.Tensor:
    """Warp (B, C, H, W) images by θ (B, 2, 3); out-of-image pixels are 0 (``zeros``).

    ``mode``: ``"bilinear"`` (default, differentiable in θ) or ``"nearest"`` (the same pixel choice as
    :func:`warp_labels`).
    """
    if mode == "nearest":
        B, C, H, W = images.shape
        ix, iy, inside = _nearest_index(affine_grid(theta.float(), (H, W)), (H, W))
        idx = (iy * W + ix).reshape(B, 1, -1).expand(B, C, -1)
        out = torch.gather(images.reshape(B, C, -1), 2, idx).reshape(B, C, H, W)
        return out * inside[:, None].to(out.dtype)
    grid = affine_grid(theta.to(images.dtype), images.shape[-2:])
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def _nearest_index(grid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    H, W = size
    # align_corners=False: pixel centre i ↔ normalised (2i + 1)/W − 1
    ix = torch.floor(((grid[..., 0] + 1) * W) / 2)
    iy = torch.floor(((grid[..., 1] + 1) * H) / 2)
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    return ix.clamp(0, W - 1).long(), iy.clamp(0, H - 1).long(), inside


def warp_labels(labels: torch.Tensor, theta: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Nearest-neighbour warp of (B, H, W) integer labels by θ; out-of-image → ``ignore_index``.

    Uses the same grid as :func:`warp_images`: output pixel (y, x) takes the label of the input pixel
    that contains the grid point.
    """
    B, H, W = labels.shape
    grid = affine_grid(theta.float(), (H, W))
    ix, iy, inside = _nearest_index(grid, (H, W))
    flat = labels.reshape(B, -1)
    out = torch.gather(flat, 1, (iy * W + ix).reshape(B, -1)).reshape(B, H, W)
    return torch.where(inside, out, torch.full_like(out, ignore_index))


def inside_mask(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool: output pixels whose grid point falls inside the input image."""
    return _nearest_index(affine_grid(theta.float(), size), size)[2]


def entropy_map(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy (natural log) per pixel: (B, C, H, W) logits → (B, H, W)."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def max_entropy_loss(logits: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-4) -> torch.Tensor:
    """L_ME = mean over pixels of −log(log C − H(x) + ε).

    Args:
        logits: (B, C, H, W) of the segmenter on the warped images.
        mask: (B, H, W) bool pixels to average over (in-image pixels); default all.
    Returns:
        scalar, increasing in the entropy (its maximum, −log ε, is at the uniform distribution); the STN
        maximises it.
    """
    C = logits.shape[1]
    per_px = -torch.log((math.log(C) - entropy_map(logits)).clamp(min=0.0) + eps)
    if mask is None:
        return per_px.mean()
    m = mask.to(per_px.dtype)
    return (per_px * m).sum() / m.sum().clamp(min=1.0)


class LocalisationNet(nn.Module):
    """STN localisation network: image (B, 3, H, W) → θ (B, 2, 3), exactly the identity at initialisation.

    Args:
        bound: if set, θ = I + bound · tanh(raw) (each entry deviates at most ``bound`` from the identity);
            otherwise θ = I + raw.
        width: channels of the small CNN.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, bound: float | None = 0.3):
        super().__init__()
        self.bound = bound
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(width * 2, 6)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.fc(self.features(images)).view(-1, 2, 3)
        dev = torch.tanh(raw) * self.bound if self.bound is not None else raw
        return identity_theta(images.shape[0], images.device, images.dtype) + dev


class Discriminator(nn.Module):
    """Real vs augmented image classifier (one logit per image)."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width * 2, width * 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 4, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)


class MaxEntropyAugmenter:
    """Spatial-transformer augmentation trained to maximise the frozen segmenter's entropy.

    Args:
        bound: bounded localisation output (see :class:`LocalisationNet`); ``None`` = unbounded.
        reg_weight: penalty reg·mean‖θ − I‖² added to the STN loss (0 = off).
        discriminator: add the adversarial discriminator (real vs warped), weight ``adv_weight`` (λ = 2).
        apply_prob: probability that a training batch image is warped (else left as is).
        lr: Adam learning rate of the STN (and discriminator).
    """

    def __init__(self, bound: float | None = 0.3, reg_weight: float = 0.0, discriminator: bool = False,
                 adv_weight: float = 2.0, apply_prob: float = 0.5, lr: float = 1e-3, width: int = 16,
                 seed: int = 0):
        torch.manual_seed(seed)
        self.stn = LocalisationNet(3, width, bound)
        self.disc = Discriminator(3, width) if discriminator else None
        self.reg_weight = float(reg_weight)
        self.adv_weight = float(adv_weight)
        self.apply_prob = float(apply_prob)
        self.lr = float(lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict] = []

    # ---- training the STN
    def fit(self, model, images: Iterable[torch.Tensor], steps: int = 100, progress: bool = False) -> list[dict]:
        """Train the STN with ``model`` frozen (its parameters get no update; BN/dropout in eval mode).

        Args:
            model: segmenter, ``model(images) -> logits (B, C, H, W)``.
            images: an iterable of (B, 3, H, W) batches, cycled until ``steps`` updates.
        Returns:
            per-step history dicts (``loss_me``, ``entropy``, ``theta_dev``, and ``loss_d`` with a discriminator).
        """
        was_training = model.training
        model.eval()
        req = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        dev = next(model.parameters()).device
        self.stn.to(dev).train()
        opt = torch.optim.Adam(self.stn.parameters(), lr=self.lr)
        if self.disc is not None:
            self.disc.to(dev).train()
            opt_d = torch.optim.Adam(self.disc.parameters(), lr=self.lr)
        batches = list(images) if not isinstance(images, list) else images
        if not batches:
            raise ValueError("images: no batch to train the STN on")
        it = range(int(steps))
        if progress:
            it = progress_bar(it, desc="max-entropy STN", leave=False)
        try:
            for step in it:
                x = batches[step % len(batches)].to(dev)
                theta = self.stn(x)
                xw = warp_images(x, theta)
                mask = inside_mask(theta, x.shape[-2:])
                logits = model(xw)
                loss_me = max_entropy_loss(logits, mask)
                dev_theta = (theta - identity_theta(x.shape[0], dev, theta.dtype))
                loss = -loss_me + self.reg_weight * dev_theta.pow(2).sum((1, 2)).mean()
                rec = {"loss_me": float(loss_me.detach()),
                       "entropy": float((entropy_map(logits.detach()) * mask).sum() / mask.sum().clamp(min=1)),
                       "theta_dev": float(dev_theta.detach().abs().mean())}
                if self.disc is not None:
                    # STN tries to make warped images look real
                    loss = loss + self.adv_weight * F.binary_cross_entropy_with_logits(
                        self.disc(xw), torch.ones(x.shape[0], device=dev))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.disc is not None:
                    d_real = self.disc(x)
                    d_fake = self.disc(xw.detach())
                    loss_d = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                                    + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                    opt_d.zero_grad()
                    loss_d.backward()
                    opt_d.step()
                    rec["loss_d"] = float(loss_d)
                self.history.append(rec)
        finally:
            for p, r in zip(model.parameters(), req):
                p.requires_grad_(r)
            model.train(was_training)
        self.stn.eval()
        return self.history

    # ---- using it
    @torch.no_grad()
    def theta(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3) warps the STN predicts for (B, 3, H, W) images."""
        self.stn.eval()
        return self.stn(images.to(next(self.stn.parameters()).device))

    @torch.no_grad()
    def theta_deviation(self, images: torch.Tensor) -> float:
        """Mean |θ − I| over the 6 entries and the images (the figure METHODS asks to report)."""
        th = self.theta(images)
        return float((th - identity_theta(th.shape[0], th.device, th.dtype)).abs().mean())

    @torch.no_grad()
    def warp(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        """Warp images (B, 3, H, W) and optional labels (B, H, W) with the learnt θ."""
        th = self.theta(images).to(images.device)
        xw = warp_images(images, th)
        return xw, (warp_labels(labels, th) if labels is not None else None)

    def extra_loss(self, weight: float = 1.0):
        """A ``viewal.nn.train.fit`` ``extra_loss``: ``weight`` · cross-entropy of the segmenter on the batch warped
        by the STN (every image; labels warped nearest, out-of-image ignored). Fine-tuning with it trains on the
        original and the augmented images together, without changing ``fit``."""
        def hook(model, batch, logits, features):
            x = batch["image"]
            th = self.theta(x).to(x.device)
            xw = warp_images(x, th)
            lw = warp_labels(batch["label"].to(x.device), th)
            loss, valid = per_image_seg_loss(model(xw), lw)
            if not bool(valid.any()):
                return loss.sum() * 0.0
            return weight * loss[valid].mean()

        return hook

    def __call__(self, batch: dict) -> dict:
        """Training augmentation: warp ``batch['image']`` and ``batch['label']`` of a random subset.

        Args:
            batch: dict with ``image`` (B, 3, H, W) float and ``label`` (B, H, W) int (255 = unlabelled);
                other keys with per-pixel layout (B, H, W) or (B, C, H, W) are dropped for warped images'
                consistency only if they are ``superpixels`` or ``negative`` (warped nearest too).
        Returns:
            a new dict (input untouched).
        """
        out = dict(batch)
        x = batch["image"]
        B = x.shape[0]
        pick = torch.rand(B, generator=self.generator) < self.apply_prob
        if not bool(pick.any()):
            return out
        idx = torch.nonzero(pick).squeeze(1).to(x.device)
        th = self.theta(x[idx]).to(x.device)
        img = x.clone()
        img[idx] = warp_images(x[idx], th)
        out["image"] = img
        if "label" in batch and batch["label"] is not None:
            lab = batch["label"].clone()
            lab[idx] = warp_labels(batch["label"][idx], th).to(lab.dtype)
            out["label"] = lab
        if "superpixels" in batch:
            sp = batch["superpixels"].clone()
            sp[idx] = warp_labels(batch["superpixels"][idx], th, ignore_index=0).to(sp.dtype)
            out["superpixels"] = sp
        if "negative" in batch:
            neg = batch["negative"].clone()
            n = batch["negative"][idx]
            Bn, C, H, W = n.shape
            warped = warp_labels(n.reshape(Bn * C, H, W).to(torch.uint8),
                                 th.repeat_interleave(C, 0), ignore_index=0)
            neg[idx] = warped.reshape(Bn, C, H, W).to(neg.dtype)
            out["negative"] = neg
        return out


def max_entropy_augmenter(model, images: Sequence[torch.Tensor] | torch.Tensor, *, steps: int = 100,
                          batch_size: int = 4, bound: float | None = 0.3, reg_weight: float = 0.0,
                          discriminator: bool = False, adv_weight: float = 2.0, apply_prob: float = 0.5,
                          lr: float = 1e-3, seed: int = 0, progress: bool = False) -> MaxEntropyAugmenter:
    """Build a :class:`MaxEntropyAugmenter` and train its STN on ``images`` with ``model`` frozen.

    Args:
        model: the trained segmenter.
        images: (M, 3, H, W) tensor (normalised as the model expects) or a sequence of such batches.
    Returns:
        the trained augmenter; ``augmenter(batch)`` warps a training batch, ``augmenter.history`` has the
        per-step ``loss_me``, ``entropy``, ``theta_dev``.
    """
    aug = MaxEntropyAugmenter(bound=bound, reg_weight=reg_weight, discriminator=discriminator,
                              adv_weight=adv_weight, apply_prob=apply_prob, lr=lr, seed=seed)
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (M, 3, H, W), got {tuple(images.shape)}")
        batches = list(torch.split(images, batch_size))
    else:
        batches = list(images)
    aug.fit(model, batches, steps=steps, progress=progress)
    return aug


def item_images(items: Sequence, size: tuple[int, int] | None) -> torch.Tensor:
    """(M, 3, h, w) normalised images of training items' frames at the working size."""
    return frame_images([it[0] for it in as_items(items)], size)


def train_with_max_entropy(model, train_items: Sequence, val_items: Sequence, config=None, *, extra_loss=None,
                           progress: bool = True, desc: str = "train", **options):
    """The ``--augment max_entropy`` training option: fit → :func:`max_entropy_finetune` (train the STN with
    the segmenter frozen, then fine-tune the segmenter on original + warped images).

    Args:
        model, train_items, val_items, config, extra_loss: as ``viewal.nn.train.fit``.
        options: as :func:`max_entropy_finetune`.
    Returns:
        (fit result of the last fit, augmenter, stats) as :func:`max_entropy_finetune`.
    """
    cfg = config or TrainConfig()
    res1 = fit(model, train_items, val_items, cfg, extra_loss=extra_loss, progress=progress, desc=f"{desc} base")
    state = FitState(model, train_items, val_items, cfg, extra_loss=extra_loss, progress=progress, desc=desc,
                     result=res1)
    return max_entropy_finetune(state, **options)


def max_entropy_finetune(state: FitState, *, stn_steps: int = 100, stn_batch: int = 4,
                         finetune_epochs: int | None = None, bound: float | None = 0.3, reg_weight: float = 0.0,
                         discriminator: bool = False, adv_weight: float = 2.0, aug_weight: float = 1.0,
                         lr: float = 1e-3, keep_best: bool = True):
    """Max-entropy augmentation of a trained ``model``: train the STN (segmenter frozen) → fine-tune the
    segmenter on original + warped images.

    Args:
        state: the fit so far (``viewal.nn.train.FitState``): its model (trained further in place), labelled
            items, validation frames, config, ``extra_loss``, progress and label, and ``result``, the
            ``FitResult`` of the fit that trained the model (its best validation mIoU decides ``keep_best``).
        stn_steps, stn_batch: STN optimisation (Adam, ``lr``) on the labelled frames' images.
        finetune_epochs: epochs of the fine-tuning fit (default max(1, config.epochs // 5)); its loss is
            CE(original) + ``aug_weight`` · CE(warped) (+ ``extra_loss``).
        bound, reg_weight, discriminator, adv_weight: see :class:`MaxEntropyAugmenter`.
        keep_best: when validation frames exist and the fine-tuned model's best validation mIoU is lower than
            ``base_result``'s, restore the weights ``model`` came with (``stats["kept"]`` says which).
    Returns:
        (fit result kept, augmenter, stats) with stats ``theta_dev`` (mean |θ − I| on the training
        images), ``entropy_identity`` / ``entropy_warped`` (mean prediction entropy of the frozen segmenter
        before/after the warp), ``val_miou_base``, ``val_miou_finetuned``, ``kept``.
    """
    import copy as _copy

    model, train_items, val_items, cfg, extra_loss = state.model, state.items, state.val, state.config, state.extra_loss
    progress, desc, res1 = state.progress, state.desc, state.result
    base_state = _copy.deepcopy(model.state_dict())
    images = item_images(train_items, cfg.size)
    dev = torch.device(cfg.device)
    aug = max_entropy_augmenter(model, images, steps=stn_steps, batch_size=stn_batch, bound=bound,
                                reg_weight=reg_weight, discriminator=discriminator, adv_weight=adv_weight, lr=lr,
                                seed=cfg.seed, progress=progress)
    model.eval()
    with torch.no_grad():
        x = images[: min(len(images), 16)].to(dev)
        th = aug.theta(x).to(dev)
        h_id = float(entropy_map(model(x)).mean())
        m = inside_mask(th, x.shape[-2:])
        h_w = float((entropy_map(model(warp_images(x, th))) * m).sum() / m.sum().clamp(min=1))
    stats = {"theta_dev": aug.theta_deviation(images.to(dev)), "entropy_identity": h_id, "entropy_warped": h_w,
             "val_miou_base": res1.best_miou, "stn_steps": stn_steps, "bound": bound, "reg_weight": reg_weight,
             "discriminator": discriminator}
    ft_epochs = finetune_epochs if finetune_epochs is not None else max(1, cfg.epochs // 5)
    cfg2 = cfg.with_epochs(int(ft_epochs))
    res2 = fit(model, train_items, val_items, cfg2,
               extra_loss=combine_extra_losses(extra_loss, aug.extra_loss(aug_weight)), progress=progress,
               desc=f"{desc} max-entropy")
    stats["val_miou_finetuned"] = res2.best_miou
    stats["kept"] = "finetuned"
    if keep_best and val_items and res1.best_miou == res1.best_miou and not res2.best_miou >= res1.best_miou:
        model.load_state_dict(base_state)
        stats["kept"] = "base"
        model.eval()
        return res1, aug, stats
    return res2, aug, stats
