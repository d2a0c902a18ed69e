"""Your own network: per-pixel class probabilities from any model, the one thing viewal's 3D part needs.

View entropy and divergence, region selection with cross-view dedup, propagation, the ledger and the
labelling files need only (N, C, H, W) class probabilities of a scene's frames, with their depth and poses.
Three ways bring them in (``docs/own_model.md``), each a :class:`Predictor`:

* :class:`OwnModule` / :class:`ModulePredictor`: any ``nn.Module`` mapping (B, 3, H, W) images, normalised
  as the module expects (``mean``/``std``), to (B, C, H, W) logits. Its dropout layers give MC samples (they
  alone are switched to train mode, the masks seeded per scene); without dropout it gives one deterministic
  pass. viewal can train it (``ActiveLearner(..., model=m)``) or keep its weights (``fit=False``).
* :class:`CallablePredictor`: ``fn(frames) -> (N, C, H, W)`` probabilities, or (T, N, C, H, W) MC samples
  (``samples=True``): viewal never touches the network, so any framework works.
* :class:`FilePredictor`: one file per frame on disk (:func:`write_probabilities`), e.g. from a cluster that
  runs inference elsewhere.

Whatever a predictor returns is checked (:func:`check_probabilities`) before anything is scored: shape,
class count, NaN, and rows that do not sum to 1 are refused with an error naming the frame.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from viewal.core.io import atomic_path
from viewal.nn.model import SegModel, frame_images, predict_frames
from viewal.nn.pretrained import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["Predictor", "OwnModule", "ModulePredictor", "CallablePredictor", "FilePredictor", "as_predictor",
           "check_probabilities", "write_probabilities", "weights_digest", "probability_path", "has_dropout",
           "module_device", "PROBABILITY_KEY", "SUM_TOLERANCE", "MODEL_FREE_NEEDS"]

#: the array name inside a probability file (:func:`write_probabilities`)
PROBABILITY_KEY = "probs"
#: how far a pixel's class probabilities may sum from 1 (float16 files round to about 1e-3 per class)
SUM_TOLERANCE = 1e-2
#: what a scorer may need from a predictor: probabilities, their MC samples, and the scene's geometry
MODEL_FREE_NEEDS = frozenset({"probs", "mc_probs", "views"})

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def has_dropout(module: nn.Module) -> bool:
    """True when ``module`` holds a dropout layer with p > 0 (what MC sampling switches on)."""
    return any(isinstance(m, _DROPOUT) and float(m.p) > 0 for m in module.modules())


def module_device(module: nn.Module) -> torch.device | None:
    """The device of ``module``'s parameters (None when it has none); several devices are refused."""
    devices = {p.device for p in module.parameters()} | {b.device for b in module.buffers()}
    if len(devices) > 1:
        raise ValueError(f"the model's parameters are on several devices {sorted(map(str, devices))}; viewal "
                         f"runs a model on one device")
    return next(iter(devices)) if devices else None


def weights_digest(model) -> str:
    """SHA-1 of a model's state dict (names, dtypes, shapes, values): what a stored score was made with."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_probabilities(p, *, frames: int, num_classes: int, hw: tuple[int, int], samples: bool = False,
                        what: str = "probabilities") -> np.ndarray:
    """``p`` as float32, after checking it is what a scorer can use.

    Args:
        p: (N, C, H, W) class probabilities, or (T, N, C, H, W) MC samples when ``samples``; numpy or torch.
        frames: N; num_classes: C; hw: (H, W) of the frames; what: names the source in errors.

    Raises:
        ValueError naming ``what``: another shape or class count, NaN or infinite values, negative values,
        or a pixel whose probabilities do not sum to 1 (within :data:`SUM_TOLERANCE`; logits are refused here).
    """
    if isinstance(p, torch.Tensor):
        p = p.detach().cpu().numpy()
    p = np.asarray(p)
    want = ((-1,) if samples else ()) + (int(frames), int(num_classes), int(hw[0]), int(hw[1]))
    shape = "(T, N, C, H, W)" if samples else "(N, C, H, W)"
    if p.ndim != len(want) or any(w != -1 and s != w for s, w in zip(p.shape, want)):
        expect = ", ".join("T" if w == -1 else str(w) for w in want)
        extra = ""
        if p.ndim == len(want) and p.shape[-3] != num_classes:
            extra = f": {p.shape[-3]} classes, the dataset has {num_classes}"
        raise ValueError(f"{what}: shape {tuple(p.shape)}, expected {shape} = ({expect}){extra}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"{what}: dtype {p.dtype}, expected floating-point probabilities")
    p = p.astype(np.float32, copy=False)
    if not np.isfinite(p).all():
        raise ValueError(f"{what}: {int((~np.isfinite(p)).sum())} NaN or infinite values")
    if (p < 0).any():
        raise ValueError(f"{what}: negative values (min {float(p.min()):.3g}); expected probabilities, not logits")
    s = p.sum(axis=-3)
    off = np.abs(s - 1.0)
    if (off > SUM_TOLERANCE).any():
        i = np.unravel_index(int(np.argmax(off)), off.shape)
        raise ValueError(f"{what}: class probabilities must sum to 1 per pixel; at {tuple(int(x) for x in i)} they "
                         f"sum to {float(s[i]):.4g} (softmax the logits first)")
    return p


class Predictor:
    """Class probabilities of frames, from some model. Subclasses implement :meth:`predict_batch`.

    Attributes:
        num_classes: C.
        samples: True when :meth:`predict` can give T differing MC samples (scorers that need them, BALD and
            MC entropy, refuse a predictor without).
        trainable: True when viewal can train the underlying network (:class:`OwnModule`).
    """

    num_classes: int
    samples: bool = False
    trainable: bool = False
    kind: str = "predictor"

    def predict(self, frames: Sequence, *, passes: int = 1, seed: int | None = None, batch_size: int = 8,
                device: str = "cpu", size: tuple[int, int] | None = None, return_passes: bool = False,
                progress: bool = False) -> dict[str, np.ndarray | None]:
        """``{"probs": (N, C, H, W) mean over samples, "passes": (T, N, C, H, W) or None, "features": None}``
        float32, at the frames' own resolution, checked (:func:`check_probabilities`)."""
        frames = list(frames)
        if not frames:
            raise ValueError(f"{self.kind}: no frames to predict")
        hw = tuple(np.asarray(frames[0].rgb).shape[:2])
        parts = []
        for s in range(0, len(frames), max(1, int(batch_size))):
            batch = frames[s:s + batch_size]
            out = self.predict_batch(batch, passes=passes, seed=None if seed is None else seed + s,
                                     device=device, size=size)
            what = f"{self.kind} output for {batch[0].key}" + (f" .. {batch[-1].key}" if len(batch) > 1 else "")
            if self.samples or out.shape[0] != 1:
                parts.append(check_probabilities(out, frames=len(batch), num_classes=self.num_classes, hw=hw,
                                                 samples=True, what=what))
            else:  # one sample: named in the shape the source gave
                parts.append(check_probabilities(out[0], frames=len(batch), num_classes=self.num_classes, hw=hw,
                                                 what=what)[None])
        t = parts[0].shape[0]
        if any(p.shape[0] != t for p in parts):
            raise ValueError(f"{self.kind}: batches gave different numbers of samples {[p.shape[0] for p in parts]}")
        samples = np.concatenate(parts, axis=1)
        return {"probs": samples.mean(0), "passes": samples if return_passes else None, "features": None}

    def predict_batch(self, frames: Sequence, *, passes: int, seed: int | None, device: str,
                      size: tuple[int, int] | None) -> np.ndarray:  # pragma: no cover - interface
        """(T, b, C, H, W) probabilities of one batch of frames (T = 1 without samples)."""
        raise NotImplementedError

    def key(self) -> str:
        """What this predictor's probabilities are made with (stored scores made with another are not reused)."""
        raise NotImplementedError  # pragma: no cover - interface


# ------------------------------------------------------------------------------------------------ a module

class OwnModule(nn.Module):
    """A user's segmentation network as viewal trains, evaluates and scores it.

    Args:
        module: maps (B, 3, H, W) float images, normalised as it expects, to (B, C, H, W) logits (a dict
            output with ``"out"``, as torchvision's segmentation models return, is read too).
        num_classes: C (checked on the first output).
        mean, std: its input normalisation (RGB, applied to images in [0, 1]); ImageNet's by default.

    ``forward(images)`` takes viewal's images, RGB in [0, 1], and returns the logits.
    """

    def __init__(self, module: nn.Module, num_classes: int, *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(module).__name__}")
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std must be 3 RGB values (std > 0), got {tuple(mean)} and {tuple(std)}")
        self.module = module
        self.num_classes = int(num_classes)
        self.register_buffer("input_mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1), persistent=False)

    @property
    def has_dropout(self) -> bool:
        return has_dropout(self.module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) RGB in [0, 1] -> logits (B, C, H, W); another output shape is refused."""
        mean, std = self.input_mean.to(images.device), self.input_std.to(images.device)
        out = self.module((images - mean) / std)
        if isinstance(out, dict):
            out = out.get("out")
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the model returned {type(out).__name__}, expected a (B, C, H, W) logits tensor")
        b, _, h, w = images.shape
        if out.ndim != 4 or out.shape[0] != b or out.shape[1] != self.num_classes or tuple(out.shape[-2:]) != (h, w):
            raise ValueError(f"the model maps images {tuple(images.shape)} to {tuple(out.shape)}; expected logits "
                             f"({b}, {self.num_classes}, {h}, {w}): one channel per class of the dataset, at the "
                             f"input's size")
        return out


@contextlib.contextmanager
def _mc_mode(module: nn.Module, seed: int | None) -> Iterator[None]:
    """Eval mode with only the dropout layers active, dropout masks drawn from ``seed`` (torch's global RNG
    is restored afterwards)."""
    was = [(m, m.training) for m in module.modules()]  # each layer's mode, restored as found
    module.eval()
    for m in module.modules():
        if isinstance(m, _DROPOUT):
            m.train()
    devices = [d for d in {p.device for p in module.parameters()} if d.type == "cuda"]
    try:
        with torch.random.fork_rng(devices=[d.index or 0 for d in devices]):
            if seed is not None:
                torch.manual_seed(int(seed))
            yield
    finally:
        for m, mode in was:
            m.training = mode


class ModulePredictor(Predictor):
    """MC samples (or one plain pass) of an :class:`OwnModule`."""

    trainable = True
    kind = "model"

    def __init__(self, own: OwnModule) -> None:
        self.own = own
        self.num_classes = own.num_classes
        self.samples = own.module.dropout > 0 if isinstance(own.module, SegModel) else own.has_dropout

    def predict(self, frames, *, passes=1, seed=None, batch_size=8, device="cpu", size=None, return_passes=False,
                progress=False):
        inner = self.own.module
        if not isinstance(inner, SegModel):
            return super().predict(frames, passes=passes, seed=seed, batch_size=batch_size, device=device, size=size,
                                   return_passes=return_passes, progress=progress)
        # viewal's own DeepLabv3+ (e.g. trained elsewhere): its MC dropout, exactly as viewal scores it
        self._check_device(device)
        frames = list(frames)
        out = predict_frames(inner, frames, passes=passes, batch_size=batch_size, device=device, size=size,
                             return_passes=return_passes, return_features=False, seed=seed, progress=progress)
        hw = tuple(np.asarray(frames[0].rgb).shape[:2])
        check_probabilities(out["probs"], frames=len(frames), num_classes=self.num_classes, hw=hw, what="model output")
        return out

    def _check_device(self, device) -> None:
        where, want = module_device(self.own.module), torch.device(device)
        if where is not None and (where.type != want.type or (want.index is not None and where != want)):
            raise ValueError(f"the model is on {where}, the run's device is {str(device)!r}: move the model "
                             f"(model.to({str(device)!r})) or set device={str(where)!r}")

    def predict_batch(self, frames, *, passes, seed, device, size):
        hw = tuple(np.asarray(frames[0].rgb).shape[:2])
        self._check_device(device)
        images = frame_images(frames, size).to(device)
        t = max(1, int(passes)) if self.samples else 1
        out = []
        with torch.no_grad(), _mc_mode(self.own, seed):
            for _ in range(t):
                p = torch.softmax(self.own(images).float(), dim=1)
                if tuple(p.shape[-2:]) != hw:
                    p = F.interpolate(p, size=hw, mode="bilinear", align_corners=False)
                    p = p / p.sum(1, keepdim=True)
                out.append(p.cpu().numpy())
        return np.stack(out)

    def key(self) -> str:
        return "module:" + weights_digest(self.own)


# ------------------------------------------------------------------------------------------------ a callable

class CallablePredictor(Predictor):
    """``fn(frames) -> probabilities``: (N, C, H, W), or (T, N, C, H, W) MC samples when ``samples``.

    ``frames`` are viewal frames (``.rgb`` (H, W, 3) uint8, ``.depth``, ``.key``, ...); numpy or torch
    outputs are read. ``key``: names what the probabilities are made with (e.g. a checkpoint's hash), so that
    scores stored in a killed cycle are reused only with the same model; None: the function's name."""

    kind = "predict"

    def __init__(self, fn: Callable, num_classes: int, *, samples: bool = False, key: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"predict must be callable (frames -> probabilities), got {type(fn).__name__}")
        self.fn, self.num_classes, self.samples = fn, int(num_classes), bool(samples)
        self._key = key if key is not None else f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"

    def predict_batch(self, frames, *, passes, seed, device, size):
        out = self.fn(list(frames))
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        out = np.asarray(out)
        if out.ndim == 4 and not self.samples:
            return out[None]
        if out.ndim != 5 and self.samples:
            raise ValueError(f"predict: samples=True expects (T, N, C, H, W) MC samples, got shape {out.shape}")
        if out.ndim != 4 and not self.samples:
            raise ValueError(f"predict: expected (N, C, H, W) probabilities, got shape {out.shape} (pass "
                             f"samples=True for (T, N, C, H, W) MC samples)")
        return out

    def key(self) -> str:
        return "callable:" + str(self._key)


# ------------------------------------------------------------------------------------------------ files

def probability_path(directory: str | Path, scene_id: str, frame_id: str) -> Path:
    """Where the probabilities of frame ``scene_id/frame_id`` live: ``DIR/<scene_id>/<frame_id>.npz``."""
    return Path(directory) / str(scene_id) / f"{frame_id}.npz"


def write_probabilities(directory: str | Path, scene_id: str, frame_id: str, probs) -> Path:
    """Write one frame's probabilities in the layout :class:`FilePredictor` reads (atomically).

    ``probs``: (C, H, W) probabilities, or (T, C, H, W) MC samples, at the frame's resolution; stored as
    float16 under the key ``probs`` of a compressed ``.npz``."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    if p.ndim not in (3, 4):
        raise ValueError(f"write_probabilities {scene_id}/{frame_id}: expected (C, H, W) or (T, C, H, W), "
                         f"got shape {p.shape}")
    path = probability_path(directory, scene_id, frame_id)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **{PROBABILITY_KEY: p.astype(np.float16)})
    return path


class FilePredictor(Predictor):
    """Probabilities read from disk, one ``.npz`` per frame (:func:`write_probabilities`, ``docs/own_model.md``).

    Args:
        directory: the folder; ``DIR/<scene_id>/<frame_id>.npz`` holds ``probs``, (C, H, W) or (T, C, H, W)
            (every file with the same T), float16 or float32.
        num_classes: C of the dataset (every file is checked against it).
    """

    kind = "probability files"

    def __init__(self, directory: str | Path, num_classes: int) -> None:
        self.directory = Path(directory)
        self.num_classes = int(num_classes)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"probabilities {self.directory}: no such folder")
        first = next(self.directory.glob("*/*.npz"), None)
        if first is None:
            raise FileNotFoundError(f"probabilities {self.directory}: no <scene>/<frame>.npz file in it "
                                    f"(docs/own_model.md)")
        self.samples = self._read(first).ndim == 4

    def _read(self, path: Path) -> np.ndarray:
        try:
            with np.load(path, allow_pickle=False) as z:
                if PROBABILITY_KEY not in z.files:
                    raise ValueError(f"{path}: no array {PROBABILITY_KEY!r} (has {z.files})")
                return np.asarray(z[PROBABILITY_KEY])
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable .npz ({e})") from None

    def frame_probabilities(self, frame) -> np.ndarray:
        """(T, C, H, W) float32 samples of one frame (T = 1 for a (C, H, W) file), checked."""
        path = probability_path(self.directory, frame.scene_id, frame.frame_id)
        if not path.is_file():
            raise FileNotFoundError(f"probabilities of frame {frame.key}: {path} is missing")
        p = self._read(path)
        if p.ndim not in (3, 4) or (p.ndim == 4) != self.samples:
            raise ValueError(f"{path}: shape {p.shape}; every file of {self.directory} must be (C, H, W), or every "
                             f"one (T, C, H, W)")
        if p.ndim == 3:
            p = p[None]
        hw = tuple(np.asarray(frame.rgb).shape[:2])
        return check_probabilities(p[:, None], frames=1, num_classes=self.num_classes, hw=hw, samples=True,
                                   what=str(path))[:, 0]

    def predict_batch(self, frames, *, passes, seed, device, size):
        return np.stack([self.frame_probabilities(f) for f in frames], axis=1)

    def key(self) -> str:
        h = hashlib.sha1()
        for f in sorted(self.directory.glob("*/*.npz")):
            st = f.stat()
            h.update(f"{f.relative_to(self.directory)}:{st.st_size}:{st.st_mtime_ns}".encode())
        return "files:" + json.dumps([str(self.directory.resolve()), h.hexdigest()])


def as_predictor(model) -> Predictor:
    """The :class:`Predictor` of what a learner holds: an :class:`OwnModule` or a predictor."""
    if isinstance(model, Predictor):
        return model
    if isinstance(model, OwnModule):
        return ModulePredictor(model)
    raise TypeError(f"no predictor for {type(model).__name__}")
