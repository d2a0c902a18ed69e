"""DeepLabv3+ (segmentation-models-pytorch) with MC dropout, and Monte-Carlo inference that runs the
encoder once.

The network is smp's ``DeepLabV3Plus`` (output stride 16, ``encoder_weights=None``: nothing is
downloaded), wrapped thinly by :class:`SegModel`, which splits it into

* ``encode(images) -> features``: smp's encoder feature pyramid ``[f0, f1, ..., f5]``; ``f0`` is the
  (unpadded) input, ``f_k`` has stride 2**k (the last stage is dilated, so ``f5`` has stride 16);
* ``decode(features) -> logits (B, C, H, W)`` at the input size: ``Dropout2d(p)`` on the encoder output
  ``f5`` and on the low-level features ``f2`` (where ViewAL puts its MC dropout), then smp's decoder
  (ASPP + low-level fusion) and segmentation head.

Inputs whose height or width is not a multiple of 16 are padded (replicate, bottom/right) inside
``encode`` and the logits are cropped back in ``decode``; callers never see the padding.

Images are float32 (B, 3, H, W) RGB in [0, 1] (:func:`images_from_rgb`); ``encode`` normalises them
with the mean/std the encoder's weights expect (:func:`viewal.nn.pretrained.input_normalisation`: 0.5/0.5
for the TF-ported EfficientNet-Lite0, the ImageNet mean/std otherwise), so the normalisation travels
with the encoder and no caller has to know it.

MC dropout (:func:`mc_predict`): the model is put in eval mode (BatchNorm uses running statistics,
smp's ASPP dropout is off); only the two ``Dropout2d`` layers stay stochastic. The encoder runs once
per image; dropout + decoder run ``passes`` times. With a ``seed`` (or ``generator``) the masks are
drawn from that generator pass by pass (high-level mask, then low-level mask), exactly as ``passes``
calls of ``model(images)`` with ``model.mc_dropout = True`` and ``model.generator`` seeded alike.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SegModel", "build_model", "frame_images", "mc_predict", "Prediction", "predict_frames",
           "iter_predict_frames",
           "images_from_rgb", "load_encoder_weights", "ENCODERS", "IMAGENET_MEAN", "IMAGENET_STD",
           "OUTPUT_STRIDE", "DEFAULT_PASSES", "DEFAULT_ENCODER", "DEFAULT_INIT", "init_label"]

from viewal.core.io import load_torch_file
from viewal.core.progress import progress_bar
from viewal.nn.data import resize_rgb
from viewal.nn.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    canonical_encoder,
    input_normalisation,
    load_imagenet_encoder,
)

#: Encoders offered on the command line (any smp encoder name works in :func:`build_model`).
#: ``efficientnet-lite0`` (smp ``timm-tf_efficientnet_lite0``) is the default: it has an offline ImageNet start.
ENCODERS = ("efficientnet-lite0", "mobilenet_v2", "resnet18", "resnet34")
DEFAULT_ENCODER = "efficientnet-lite0"
DEFAULT_INIT = "imagenet"
OUTPUT_STRIDE = 16
DEFAULT_PASSES = 20  # ViewAL's T


class SegModel(nn.Module):
    """Thin wrapper around smp's ``DeepLabV3Plus`` with ViewAL's MC dropout placement.

    Attributes:
        net: the smp model (``net.encoder``, ``net.decoder``, ``net.segmentation_head``).
        encoder_name: smp encoder name, e.g. ``"timm-tf_efficientnet_lite0"`` or ``"mobilenet_v2"``.
        input_mean, input_std: (1, 3, 1, 1) buffers (not saved) of the encoder's input normalisation.
        num_classes: C.
        encoder_channels: channels of each encoder feature ``(3, c1, ..., c5)``.
        dropout: p of the two ``Dropout2d`` layers.
        mc_dropout: when True the dropout layers are active even in eval mode (MC sampling).
        generator: optional ``torch.Generator`` the dropout masks are drawn from (None: global RNG).
    """

    def __init__(self, net: nn.Module, encoder_name: str, num_classes: int, dropout: float = 0.25,
                 decoder_channels: int = 256, output_stride: int = OUTPUT_STRIDE) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.net = net
        self.encoder_name = canonical_encoder(encoder_name)
        mean, std = input_normalisation(self.encoder_name)
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.num_classes = int(num_classes)
        self.encoder_channels = tuple(int(c) for c in net.encoder.out_channels)
        self.decoder_channels = int(decoder_channels)
        self.output_stride = int(output_stride)
        self.dropout = float(dropout)
        self.mc_dropout = False
        self.generator: torch.Generator | None = None

    # ------------------------------------------------------------------ parameter groups
    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of ASPP + decoder + segmentation head (ViewAL trains these at 10x lr)."""
        return [p for n, p in self.net.named_parameters() if not n.startswith("encoder.")]

    # ------------------------------------------------------------------ dropout
    @property
    def dropout_active(self) -> bool:
        return self.dropout > 0 and (self.training or self.mc_dropout)

    def draw_masks(self, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """One pass's Dropout2d masks: ``(high (B, c5, 1, 1), low (B, c2, 1, 1))`` float32, values
        0 or 1/(1-p). High-level mask first, then low-level (the order every path uses)."""
        keep = 1.0 - self.dropout
        gen = generator if generator is not None else self.generator
        out = []
        for c in (self.encoder_channels[-1], self.encoder_channels[2]):
            probs = torch.full((batch, c, 1, 1), keep, dtype=torch.float32, device=device)
            out.append(torch.bernoulli(probs, generator=gen) / keep)
        return out[0], out[1]

    # ------------------------------------------------------------------ forward pieces
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, H, W) RGB in [0, 1] -> smp feature pyramid ``[images, f1, ..., f5]`` (f_k stride
        2**k, f5 stride 16); normalised for the encoder and padded internally to multiples of 16."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        ph, pw = (-h) % OUTPUT_STRIDE, (-w) % OUTPUT_STRIDE
        x = (images - self.input_mean) / self.input_std
        x = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        feats = list(self.net.encoder(x))
        feats[0] = images  # the identity stage carries the unpadded size to decode()
        return feats

    def decode(self, features: Sequence[torch.Tensor],
               masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """features from :meth:`encode` -> logits (B', C, H, W) at the input size.

        ``masks``: explicit Dropout2d masks ``(high (B', c5, 1, 1), low (B', c2, 1, 1))``; when None
        and dropout is active (training, or ``mc_dropout``) they are drawn here. The batch B' may be a
        multiple of the features' batch (passes stacked): features are then repeated.
        """
        feats = list(features)
        high, low = feats[-1], feats[2]
        if masks is None and self.dropout_active:
            masks = self.draw_masks(high.shape[0], device=high.device)
        if masks is not None:
            rep = masks[0].shape[0] // high.shape[0]
            if rep * high.shape[0] != masks[0].shape[0]:
                raise ValueError(f"mask batch {masks[0].shape[0]} is not a multiple of feature batch {high.shape[0]}")
            if rep > 1:  # passes stacked along the batch: only the features the decoder reads are repeated
                high, low = high.repeat(rep, 1, 1, 1), low.repeat(rep, 1, 1, 1)
            feats[-1] = high * masks[0]
            feats[2] = low * masks[1]
        out = self.net.segmentation_head(self.net.decoder(feats))
        h, w = features[0].shape[-2:]
        return out[..., :h, :w]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> logits (B, C, H, W)."""
        return self.decode(self.encode(images))


def init_label(init: str | Path | None) -> str:
    """``None``/``"random"`` -> ``"random"``; ``"imagenet"``; a path -> the path as text."""
    if init is None or str(init).lower() in ("random", "none", ""):
        return "random"
    return "imagenet" if str(init).lower() == "imagenet" else str(init)


def build_model(num_classes: int, encoder: str = DEFAULT_ENCODER, dropout: float = 0.25,
                encoder_weights: str | Path | None = None, *, decoder_channels: int = 256,
                aspp_dropout: float = 0.5, output_stride: int = OUTPUT_STRIDE) -> SegModel:
    """DeepLabv3+ (output stride 16 by default) with MC dropout.

    Args:
        num_classes: C.
        encoder: ``efficientnet-lite0`` (default, MobileNetV2-class, offline ImageNet start), an smp
            encoder name (``mobilenet_v2`` as ViewAL; ``resnet18``/``resnet34``).
        dropout: p of the MC ``Dropout2d`` layers (ViewAL: 0.25).
        encoder_weights: None or ``"random"`` (random init), ``"imagenet"`` (the offline ImageNet
            EfficientNet-Lite0, :mod:`viewal.nn.pretrained`), or a path to encoder weights written by
            ``viewal pretrain`` or a checkpoint of ``viewal train`` (its encoder part is used).
        decoder_channels: ASPP/decoder width (256 as DeepLabv3+; tests use a small value).
        aspp_dropout: smp's dropout after the ASPP projection (training only).
        output_stride: 16 (ViewAL's) or 8: the stride of the features the ASPP sees (the encoder's last
            stages dilated). 8 keeps twice the resolution per side for 2.4x the time per step here
            (docs/model.md).
    """
    import segmentation_models_pytorch as smp

    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride!r}")
    try:
        net = smp.DeepLabV3Plus(encoder_name=canonical_encoder(encoder), encoder_weights=None,
                                encoder_output_stride=int(output_stride),
                                decoder_channels=decoder_channels, decoder_aspp_dropout=aspp_dropout,
                                classes=num_classes)
    except KeyError as e:
        raise ValueError(f"unknown encoder {encoder!r} ({e}); e.g. {', '.join(ENCODERS)}") from None
    model = SegModel(net, encoder, num_classes, dropout, decoder_channels, output_stride)
    init = init_label(encoder_weights)
    if init == "imagenet":
        load_imagenet_encoder(model)
    elif init != "random":
        load_encoder_weights(model, encoder_weights)
    return model


def load_encoder_weights(model: SegModel, path: str | Path) -> None:
    """Load encoder weights from a ``viewal pretrain`` file or a ``viewal train`` checkpoint.

    Raises ValueError naming the file when its encoder differs from ``model.encoder_name``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights not found: {path}")
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or "encoder" not in obj:
        raise ValueError(f"{path}: not a viewal encoder-weights file or checkpoint (no 'encoder' entry)")
    if canonical_encoder(obj["encoder"]) != model.encoder_name:
        raise ValueError(f"{path}: weights are for encoder {obj['encoder']!r}, model has {model.encoder_name!r}")
    if "encoder_state" in obj:
        state = obj["encoder_state"]
    elif "state_dict" in obj:
        prefix = "net.encoder."
        state = {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    else:
        raise ValueError(f"{path}: has neither 'encoder_state' nor 'state_dict'")
    own = model.net.encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: encoder weights do not fit {model.encoder_name!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    own.update(state)
    nn.Module.load_state_dict(model.net.encoder, own)


def images_from_rgb(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """rgb (B, H, W, 3) or (H, W, 3) uint8 -> float32 (B, 3, H, W) in [0, 1] (the model normalises)."""
    x = torch.as_tensor(np.asarray(rgb))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"rgb must be (B, H, W, 3) or (H, W, 3), got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def frame_images(frames: Sequence, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 3, h, w) float32 network input of frames, RGB area-resized to the working ``size`` (None = as is)."""
    return images_from_rgb(np.stack([resize_rgb(np.asarray(f.rgb), size) for f in frames]))


# ---------------------------------------------------------------------------------------------- MC dropout

@dataclass
class Prediction:
    """What :func:`mc_predict` returns when extra outputs are requested.

    Attributes:
        probs: (B, C, H, W) float32 mean softmax over passes.
        passes: (T, B, C, H, W) float32 per-pass softmax, or None.
        features: (B, D) float32 deepest encoder features (f5), globally average-pooled, or None.
        pyramid: encoder features ``[f1, ..., f5]`` (each (B, c_k, H_k, W_k)), or None.
    """

    probs: torch.Tensor
    passes: torch.Tensor | None = None
    features: torch.Tensor | None = None
    pyramid: list[torch.Tensor] | None = None


@contextlib.contextmanager
def _sampling_mode(model: SegModel, generator: torch.Generator | None):
    was_training, was_mc, old_gen = model.training, model.mc_dropout, model.generator
    model.eval()
    model.mc_dropout = True
    model.generator = generator
    try:
        yield
    finally:
        model.train(was_training)
        model.mc_dropout = was_mc
        model.generator = old_gen


@torch.no_grad()
def mc_predict(model: SegModel, images: torch.Tensor, passes: int = DEFAULT_PASSES, *, return_passes: bool = False,
               return_features: bool = False, generator: torch.Generator | None = None, seed: int | None = None,
               chunk: int = 4) -> torch.Tensor | Prediction:
    """Mean softmax over ``passes`` MC-dropout samples, running the encoder once.

    Args:
        model: a :class:`SegModel` (its train/eval state is restored afterwards).
        images: (B, 3, H, W) float32 RGB in [0, 1] (:func:`images_from_rgb`).
        passes: T >= 1. With ``model.dropout == 0`` every pass equals a plain eval forward.
        return_passes: also return the per-pass softmax (T, B, C, H, W).
        return_features: also return pooled deepest features (B, D) and the encoder pyramid.
        generator / seed: source of the dropout masks (seed builds a fresh ``torch.Generator``);
            None uses the global RNG.
        chunk: passes decoded together in one batch (speed only; the result does not depend on it
            beyond float rounding).

    Returns:
        (B, C, H, W) float32 mean softmax, or a :class:`Prediction` when extra outputs are requested.
    """
    if not isinstance(model, SegModel):
        raise TypeError(f"model must be a SegModel, got {type(model).__name__}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if generator is None and seed is not None:
        generator = torch.Generator(device=images.device).manual_seed(int(seed))
    with _sampling_mode(model, generator):
        feats = model.encode(images)
        b = images.shape[0]
        total = None
        per_pass = [] if return_passes else None
        done = 0
        while done < passes:
            n = min(max(1, chunk), passes - done)
            if model.dropout > 0:
                ms = [model.draw_masks(b, generator, images.device) for _ in range(n)]
                masks = (torch.cat([m[0] for m in ms]), torch.cat([m[1] for m in ms]))
                logits = model.decode(feats, masks)
            else:
                logits = model.decode(feats).repeat(n, 1, 1, 1)
            p = torch.softmax(logits.float(), dim=1).view(n, b, *logits.shape[1:])
            s = p.sum(0)
            total = s if total is None else total + s
            if per_pass is not None:
                per_pass.append(p)
            done += n
        probs = total / passes
    if not (return_passes or return_features):
        return probs
    out = Prediction(probs=probs)
    if return_passes:
        out.passes = torch.cat(per_pass)
    if return_features:
        out.features = feats[-1].mean(dim=(2, 3)).float()
        out.pyramid = [f for f in feats[1:]]
    return out


def _frame_batch(frames: Sequence, size: tuple[int, int] | None) -> np.ndarray:
    import cv2

    rgbs = []
    for f in frames:
        rgb = f.rgb
        if size is not None and rgb.shape[:2] != tuple(size):
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        rgbs.append(rgb)
    shapes = {r.shape for r in rgbs}
    if len(shapes) > 1:
        raise ValueError(f"frames of one batch have different sizes {sorted(shapes)}; pass size=(H, W)")
    return np.stack(rgbs)


def iter_predict_frames(model: SegModel, frames: Sequence, passes: int = DEFAULT_PASSES, batch_size: int = 4,
                        device: str | torch.device = "cpu", *, size: tuple[int, int] | None = None,
                        return_passes: bool = False, return_features: bool = False, seed: int | None = None,
                        progress: bool = True, desc: str = "predict") -> Iterator[dict[str, np.ndarray | None]]:
    """Yield, batch by batch, ``{"probs": (b, C, H, W), "passes": (T, b, C, H, W) or None,
    "features": (b, D) or None}`` float32 numpy arrays.

    ``size``: working (H, W) for the network (RGB area-resized); probabilities are bilinearly
    resized back to each frame's own resolution. ``seed`` seeds one generator for the whole run.
    """
    model.to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed)) if seed is not None else None
    bar = progress_bar(total=len(frames), desc=desc, unit="frame", disable=not progress, leave=False)
    try:
        for s in range(0, len(frames), batch_size):
            batch = frames[s:s + batch_size]
            rgb = _frame_batch(batch, size)
            images = images_from_rgb(rgb).to(device)
            pred = mc_predict(model, images, passes, return_passes=return_passes, return_features=return_features,
                              generator=gen)
            if not isinstance(pred, Prediction):
                pred = Prediction(probs=pred)
            frame_hw = tuple(batch[0].rgb.shape[:2])

            def back(p: torch.Tensor, frame_hw=frame_hw) -> np.ndarray:  # (n, C, h, w) -> frame size, float32
                if tuple(p.shape[-2:]) != frame_hw:
                    p = F.interpolate(p, size=frame_hw, mode="bilinear", align_corners=False)
                    p = p / p.sum(1, keepdim=True)
                return p.cpu().numpy().astype(np.float32, copy=False)

            out = {"probs": back(pred.probs), "passes": None, "features": None}
            if pred.passes is not None:
                out["passes"] = np.stack([back(p) for p in pred.passes])
            if pred.features is not None:
                out["features"] = pred.features.cpu().numpy().astype(np.float32, copy=False)
            bar.update(len(batch))
            yield out
    finally:
        bar.close()


def predict_frames(model: SegModel, frames: Sequence, passes: int = DEFAULT_PASSES, batch_size: int = 4,
                   device: str | torch.device = "cpu", *, size: tuple[int, int] | None = None,
                   return_passes: bool | None = None, return_features: bool | None = None,
                   seed: int | None = None, progress: bool = True,
                   desc: str = "predict") -> np.ndarray | dict[str, np.ndarray | None]:
    """MC-dropout mean softmax of frames (H, W = the frames' own resolution).

    Returns (N, C, H, W) float32 numpy, or, when ``return_passes`` or ``return_features`` is given
    (True or False), a dict ``{"probs": (N, C, H, W), "passes": (T, N, C, H, W) or None,
    "features": (N, D) or None}``. See :func:`iter_predict_frames` for the other arguments.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("predict_frames: no frames")
    as_dict = return_passes is not None or return_features is not None
    parts = list(iter_predict_frames(model, frames, passes, batch_size, device, size=size,
                                     return_passes=bool(return_passes), return_features=bool(return_features),
                                     seed=seed, progress=progress, desc=desc))
    probs = np.concatenate([p["probs"] for p in parts])
    if not as_dict:
        return probs
    return {"probs": probs,
            "passes": np.concatenate([p["passes"] for p in parts], axis=1) if return_passes else None,
            "features": np.concatenate([p["features"] for p in parts]) if return_features else None}
