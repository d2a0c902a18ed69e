"""SimSiam self-supervised pretraining of the segmentation encoder (docs/model.md "SimSiam pretraining";
Chen & He, CVPR 2021).

No ImageNet weights exist offline, so the encoder gets its start from the frames themselves: two
augmentations of each image (random resized crop, horizontal flip, colour jitter, random grey, Gaussian
blur) go through encoder → global average pool → projector MLP (z) → predictor MLP (p), and the loss is

    L = ½ D(p₁, sg(z₂)) + ½ D(p₂, sg(z₁)),   D(p, z) = −cos(p, z)

with sg the stop-gradient. A collapsed solution (all outputs equal) shows as a per-dimension standard
deviation of the l2-normalised z near 0; without collapse it stays near 1/√d (:func:`output_std`).

``viewal pretrain --data DIR --out FILE`` writes ``{"format": "viewal-encoder", "encoder": name,
"encoder_state": state_dict, "meta": {...}}``, which ``build_model(..., encoder_weights=FILE)`` and
``viewal train --init FILE`` accept.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from viewal.core.io import atomic_path
from viewal.core.progress import progress_bar, progress_write
from viewal.nn.data import UnlabelledDataset, parse_size
from viewal.nn.model import build_model
from viewal.nn.pretrained import IMAGENET_MEAN, IMAGENET_STD, input_normalisation

__all__ = ["SimSiam", "SimSiamConfig", "simsiam_loss", "output_std", "augment_batch", "pretrain",
           "save_encoder"]

ENCODER_FORMAT = "viewal-encoder"


@dataclass
class SimSiamConfig:
    """Settings of :func:`pretrain`.

    Attributes:
        encoder: smp encoder name (must match the model that will load the weights).
        epochs, batch_size: passes over the frames / images per step (>= 2: BatchNorm).
        lr: SGD lr (cosine decay to 0; the predictor keeps a fixed lr, as SimSiam), momentum 0.9,
            weight_decay 1e-4.
        size: working (H, W) of the augmented views; None = the frames' resolution.
        proj_dim, pred_dim: projector output / predictor bottleneck widths (SimSiam: 2048 / 512;
            smaller here for CPU).
        min_scale: smallest crop area fraction of the random resized crop.
        seed, num_threads, device.
    """

    encoder: str = "efficientnet-lite0"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    size: tuple[int, int] | None = (96, 128)
    proj_dim: int = 512
    pred_dim: int = 128
    min_scale: float = 0.2
    seed: int = 0
    num_threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.size = parse_size(self.size)
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {self.batch_size}")


class SimSiam(nn.Module):
    """Encoder (smp, shared with the segmentation model) + projector + predictor.

    ``forward(x (B, 3, H, W)) -> (p (B, d), z (B, d))``.
    """

    def __init__(self, encoder: nn.Module, feat_dim: int, proj_dim: int = 512, pred_dim: int = 128) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim), nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim), nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim, affine=False))
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) -> pooled deepest encoder features (B, feat_dim)."""
        return self.encoder(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projector(self.embed(x))
        return self.predictor(z), z


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """½ D(p₁, sg(z₂)) + ½ D(p₂, sg(z₁)), D = −cosine similarity averaged over the batch; in [−1, 1]."""
    def d(p, z):
        return -F.cosine_similarity(p, z.detach(), dim=1).mean()

    return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


def output_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of l2-normalised outputs z (B, d): ~1/√d without collapse, 0 collapsed."""
    zn = F.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean())


def augment_batch(rgbs: Sequence[np.ndarray], size: tuple[int, int], min_scale: float = 0.2,
                  generator: torch.Generator | None = None,
                  normalisation: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
                  ) -> torch.Tensor:
    """One SimSiam view of each image: uint8 (H, W, 3) images -> float32 (B, 3, h, w), normalised with
    ``normalisation`` = (mean, std), the encoder's own (:func:`viewal.nn.pretrained.input_normalisation`).

    Random resized crop (area fraction in [min_scale, 1], aspect 3/4..4/3) to ``size``, horizontal flip
    (p 0.5), colour jitter (brightness/contrast/saturation 0.4, hue 0.1; p 0.8), grey (p 0.2),
    Gaussian blur (p 0.5, σ in [0.1, 2] px at 224 px, scaled to ``size``).
    """
    import torchvision.transforms.v2.functional as TF

    g = generator

    def u(a=0.0, b=1.0):
        return float(a + (b - a) * torch.rand((), generator=g))

    h, w = size
    out = []
    for rgb in rgbs:
        img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)  # (3, H, W) uint8
        H, W = img.shape[-2:]
        for _ in range(10):
            area = u(min_scale, 1.0) * H * W
            ratio = math.exp(u(math.log(3 / 4), math.log(4 / 3)))
            ch, cw = int(round(math.sqrt(area / ratio))), int(round(math.sqrt(area * ratio)))
            if 0 < ch <= H and 0 < cw <= W:
                break
        else:
            ch, cw = H, W
        top, left = int(u() * (H - ch + 1)), int(u() * (W - cw + 1))
        top, left = min(top, H - ch), min(left, W - cw)
        x = TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)
        if u() < 0.5:
            x = TF.horizontal_flip(x)
        x = x.float() / 255.0
        if u() < 0.8:
            x = TF.adjust_brightness(x, u(0.6, 1.4))
            x = TF.adjust_contrast(x, u(0.6, 1.4))
            x = TF.adjust_saturation(x, u(0.6, 1.4))
            x = TF.adjust_hue(x, u(-0.1, 0.1))
        if u() < 0.2:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if u() < 0.5:
            sigma = u(0.1, 2.0) * min(h, w) / 224.0
            k = max(3, int(2 * math.ceil(3 * sigma) + 1))
            x = TF.gaussian_blur(x, [k, k], [sigma, sigma])
        out.append(x.clamp(0, 1))
    x = torch.stack(out)
    mean = torch.tensor(normalisation[0], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(normalisation[1], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def pretrain(frames: Sequence, config: SimSiamConfig | None = None, *, progress: bool = True,
             model: SimSiam | None = None, log_epochs: bool | None = None) -> tuple[SimSiam, list[dict]]:
    """Train SimSiam on the RGB of ``frames`` (labels unused).

    Returns:
        (the trained :class:`SimSiam` (its ``encoder`` is an smp encoder), history: one dict per epoch
        with ``loss`` (mean), ``std`` (mean :func:`output_std` over the epoch's batches), ``seconds``).
    """
    cfg = config or SimSiamConfig()
    frames = list(frames)
    if len(frames) < 2:
        raise ValueError(f"SimSiam needs at least 2 frames, got {len(frames)}")
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ds = UnlabelledDataset(frames, None)
    size = cfg.size or tuple(frames[0].rgb.shape[:2])
    if model is None:
        enc = build_model(1, cfg.encoder, dropout=0.0, decoder_channels=8).net.encoder
        model = SimSiam(enc, enc.out_channels[-1], cfg.proj_dim, cfg.pred_dim)
    device = torch.device(cfg.device)
    model.to(device)
    pred_params = list(model.predictor.parameters())
    pred_ids = {id(p) for p in pred_params}
    other = [p for p in model.parameters() if id(p) not in pred_ids]
    opt = torch.optim.SGD([{"params": other, "lr": cfg.lr, "fix_lr": False},
                           {"params": pred_params, "lr": cfg.lr, "fix_lr": True}],
                          lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, len(ds))
    norm = input_normalisation(cfg.encoder)
    steps_per_epoch = max(1, len(ds) // bs)  # drop_last: BatchNorm needs full batches
    total = cfg.epochs * steps_per_epoch
    history = []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(ds), generator=gen).tolist()
        losses, stds = [], []
        bar = progress_bar(range(steps_per_epoch), desc=f"simsiam {epoch}/{cfg.epochs}", disable=not progress,
                           leave=False)
        for s in bar:
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for gparam in opt.param_groups:
                gparam["lr"] = cfg.lr if gparam["fix_lr"] else lr
            rgbs = [ds[i] for i in perm[s * bs:(s + 1) * bs]]
            x1 = augment_batch(rgbs, size, cfg.min_scale, gen, norm).to(device)
            x2 = augment_batch(rgbs, size, cfg.min_scale, gen, norm).to(device)
            p1, z1 = model(x1)
            p2, z2 = model(x2)
            loss = simsiam_loss(p1, p2, z1, z2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            stds.append(output_std(z1))
            step += 1
            bar.set_postfix(loss=f"{losses[-1]:.3f}", std=f"{stds[-1]:.3f}")
        bar.close()
        rec = {"epoch": epoch, "loss": float(np.mean(losses)), "std": float(np.mean(stds)),
               "seconds": time.perf_counter() - t0}
        history.append(rec)
        if progress if log_epochs is None else log_epochs:
            progress_write(f"simsiam epoch {epoch}/{cfg.epochs}: loss {rec['loss']:.4f}, z std {rec['std']:.4f} "
                       f"(1/sqrt(d) = {1 / math.sqrt(cfg.proj_dim):.4f}; 0 = collapse) ({rec['seconds']:.1f} s)",
                       file=sys.stdout)
            sys.stdout.flush()
    model.eval()
    return model, history


def save_encoder(path: str | Path, encoder: nn.Module, encoder_name: str, meta: dict | None = None) -> Path:
    """Write encoder weights atomically in the format :func:`viewal.nn.model.load_encoder_weights` reads."""
    path = Path(path)
    obj = {"format": ENCODER_FORMAT, "version": 1, "encoder": encoder_name,
           "encoder_state": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path
