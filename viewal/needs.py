"""Providers of what scorers need, registered by name (the loop has no per-scorer special cases).

A scorer declares ``needs`` (e.g. ``{"probs", "views"}``); :func:`compute_needs` calls the provider
registered for each need on the frames of one scene and returns a dict of arrays that fills
:class:`viewal.scorers.SceneInputs`. Providers share a per-scene ``cache`` so that one MC pass over the
frames serves ``probs``, ``mc_probs`` and ``features`` together.

Plug-ins register further needs with :func:`register_provider` (and
``viewal.scorers.register_need`` so that scorers may declare them); their arrays arrive in
``SceneInputs.extras``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from viewal.scorers.base import NEEDS, register_need

__all__ = ["NeedContext", "register_provider", "compute_needs", "providers"]


@dataclass
class NeedContext:
    """What providers may use for one scene.

    Attributes:
        model: the segmentation model (``viewal.model.SegModel``), in eval mode.
        frames: the scene's pool frames (``viewal.datasets.Frame``), in sequence order.
        mc_passes: number of MC-dropout passes T.
        batch_size, device: inference settings.
        options: further settings (e.g. kernel ``mode``/``backend``/``depth_tol``) by name.
        seed: seeds the MC-dropout masks of the scene (``viewal.seeding.stream_seed`` of run seed,
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
    """Decorator: ``provider(ctx) -> {field or extras name: array}`` for ``need``."""

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
        from viewal.model import predict_frames

        wanted = ctx.cache.get("needs", set())
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
    from viewal.datasets.base import stack_scene

    return stack_scene(ctx.frames)


def compute_needs(needs: Sequence[str], ctx: NeedContext) -> dict[str, np.ndarray]:
    """Compute every need; returns ``{"probs": ..., "extras": {...}}``-style flat dict of arrays."""
    out: dict[str, Any] = {}
    ctx.cache["needs"] = set(needs)
    for need in sorted(needs):
        if need not in _PROVIDERS:
            raise ValueError(f"no provider for need {need!r}; registered: {providers()}")
        out.update(_PROVIDERS[need](ctx))
    return out
