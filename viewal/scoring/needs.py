"""What scorers need, registered by name: the one needs registry, below the scorers.

A scorer declares ``needs`` (e.g. ``{"probs", "views"}``); :func:`compute_needs` calls the provider
registered for each need on the frames of one scene and returns a flat dict of arrays that fills
:class:`viewal.scoring.scorers.SceneInputs`. Providers share a per-scene ``cache`` so that one MC pass over the
frames serves ``probs``, ``mc_probs`` and ``features`` together.

Built-in needs (:data:`NEEDS`) fill the named fields of ``SceneInputs``; plug-ins register further
needs with :func:`register_provider` (or :func:`register_need` for the name alone) and their arrays
arrive in ``SceneInputs.extras``. This module imports nothing from ``viewal.scoring.scorers``: scorers
import it, never the other way round.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from viewal.datasets.base import stack_scene
from viewal.nn.model import SegModel, predict_frames
from viewal.nn.predictor import as_predictor

__all__ = ["NEEDS", "NEED_FIELDS", "NeedContext", "register_need", "known_needs", "register_provider",
           "compute_needs", "providers"]

#: Built-in needs. ``probs``: mean MC softmax (N, C, H, W); ``mc_probs``: per-pass softmax (T, N, C, H, W);
#: ``features``: pooled encoder features (N, D); ``views``: depths (N, H, W), Ks (N, 3, 3),
#: world_T_cams (N, 4, 4). Plug-ins may register further needs (they arrive in ``extras``).
NEEDS = ("probs", "mc_probs", "features", "views")

#: ``SceneInputs`` fields filled by each built-in need
NEED_FIELDS = {"probs": ("probs",), "mc_probs": ("mc_probs",), "features": ("features",),
               "views": ("depths", "Ks", "world_T_cams")}

#: needs registered by plug-ins: name -> description
_EXTRA_NEEDS: dict[str, str] = {}


def register_need(name: str, description: str) -> None:
    """Make ``name`` a need scorers may declare (its provider: :func:`register_provider`)."""
    _EXTRA_NEEDS[name] = description


def known_needs() -> list[str]:
    """Every need a scorer may declare: the built-in ones and those registered by plug-ins."""
    return sorted(set(NEEDS) | set(_EXTRA_NEEDS))


@dataclass
class NeedContext:
    """What providers may use for one scene.

    Attributes:
        model: the segmentation model (``viewal.nn.model.SegModel``), in eval mode, or the user's own
            (``viewal.nn.predictor``: an ``OwnModule`` or a ``Predictor``), which gives probabilities only.
        frames: the scene's pool frames (``viewal.datasets.Frame``), in sequence order.
        mc_passes: number of MC-dropout passes T.
        batch_size, device: inference settings.
        options: further settings by name (``"superpixels"`` (N, H, W), ``"size"`` the working (H, W)).
        seed: seeds the MC-dropout masks of the scene (``viewal.core.seeding.stream_seed`` of run seed,
            cycle and scene), so that a resumed run draws the masks an uninterrupted one drew; None:
            torch's global RNG.
        cache: shared between providers of one scene.
    """

    model: Any
    frames: Sequence[Any]
    mc_passes: int = 20
    batch_size: int = 8
    device: str = "cpu"
    options: dict = field(default_factory=dict)
    seed: int | None = None
    cache: dict = field(default_factory=dict)


Provider = Callable[[NeedContext], dict[str, np.ndarray]]
_PROVIDERS: dict[str, Provider] = {}


def register_provider(need: str, description: str = "") -> Callable[[Provider], Provider]:
    """Decorator: ``provider(ctx) -> {field or extras name: array}`` for ``need`` (registered as a need
    when it is not one yet)."""

    def deco(fn: Provider) -> Provider:
        _PROVIDERS[need] = fn
        if need not in NEEDS:
            register_need(need, description or fn.__doc__ or need)
        return fn

    return deco


def providers() -> list[str]:
    return sorted(_PROVIDERS)


def _mc(ctx: NeedContext) -> dict[str, np.ndarray]:
    """One MC-dropout sweep over the scene: mean probs, per-pass probs, pooled features (cached)."""
    if "mc" not in ctx.cache:
        wanted = ctx.cache.get("needs", set())
        if not isinstance(ctx.model, SegModel):  # a network of the user's, a callable or files on disk
            ctx.cache["mc"] = as_predictor(ctx.model).predict(
                ctx.frames, passes=ctx.mc_passes, seed=ctx.seed, batch_size=ctx.batch_size, device=ctx.device,
                size=ctx.options.get("size"), return_passes="mc_probs" in wanted)
            return ctx.cache["mc"]
        # one sweep serves probs, mc_probs and features
        ctx.cache["mc"] = predict_frames(ctx.model, ctx.frames, passes=ctx.mc_passes, batch_size=ctx.batch_size,
                                         device=ctx.device, size=ctx.options.get("size"),
                                         return_passes="mc_probs" in wanted,
                                         return_features="features" in wanted, seed=ctx.seed)
    return ctx.cache["mc"]


@register_provider("probs")
def _probs(ctx: NeedContext) -> dict[str, np.ndarray]:
    """(N, C, H, W) float32 mean MC-dropout softmax."""
    return {"probs": _mc(ctx)["probs"]}


@register_provider("mc_probs")
def _mc_probs(ctx: NeedContext) -> dict[str, np.ndarray]:
    """(T, N, C, H, W) float32 per-pass softmax."""
    return {"mc_probs": _mc(ctx)["passes"]}


@register_provider("features")
def _features(ctx: NeedContext) -> dict[str, np.ndarray]:
    """(N, D) float32 pooled deepest encoder features."""
    return {"features": _mc(ctx)["features"]}


@register_provider("views")
def _views(ctx: NeedContext) -> dict[str, np.ndarray]:
    """Scene geometry: depths (N, H, W) float32, Ks (N, 3, 3), world_T_cams (N, 4, 4)."""
    return stack_scene(ctx.frames)


def compute_needs(needs: Sequence[str], ctx: NeedContext) -> dict[str, np.ndarray]:
    """Compute every need through its provider; returns one flat dict of arrays (``SceneInputs`` field
    names for the built-in needs, the need's own name for plug-in ones)."""
    out: dict[str, Any] = {}
    ctx.cache["needs"] = set(needs)
    for need in sorted(needs):
        if need not in _PROVIDERS:
            raise ValueError(f"no provider for need {need!r}; registered: {providers()}")
        out.update(_PROVIDERS[need](ctx))
    return out
