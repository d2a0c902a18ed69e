"""The one scorer interface, its registry, and the region pooling every scorer shares.

A scorer turns what the model (and, for ViewAL, the scene geometry) gives about the frames of **one
scene** into per-pixel informativeness maps. It never sees ground-truth labels: the
:class:`SceneInputs` it receives has no label field.

What a scorer needs is declared, not special-cased: ``needs`` is a set of names from
:data:`NEEDS`; the active-learning loop computes exactly those (through the providers registered in
``viewal.needs``) and fills the matching fields of :class:`SceneInputs` (or ``extras`` for needs
registered by plug-ins).

Pooling over regions (superpixels, or whole images) is shared: :func:`pool_regions`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

__all__ = ["NEEDS", "SceneInputs", "Scores", "Scorer", "register", "get", "names", "pool_regions"]

#: Known needs. ``probs``: mean MC softmax (N, C, H, W); ``mc_probs``: per-pass softmax (T, N, C, H, W);
#: ``features``: pooled encoder features (N, D); ``views``: depths (N, H, W), Ks (N, 3, 3),
#: world_T_cams (N, 4, 4). Plug-ins may register further needs (they arrive in ``extras``).
NEEDS = ("probs", "mc_probs", "features", "views")


@dataclass
class SceneInputs:
    """Everything a scorer may read about the N unlabelled-pool frames of one scene.

    Fields are ``None`` unless the scorer declared the corresponding need.

    Attributes:
        scene_id: scene of the frames.
        frame_ids: (N,) frame ids, in sequence order.
        superpixels: (N, H, W) int32 region id per pixel (ids local to each frame).
        probs: (N, C, H, W) float32 mean softmax over MC passes.
        mc_probs: (T, N, C, H, W) float32 per-pass softmax.
        features: (N, D) float32 pooled encoder features.
        depths: (N, H, W) float32 metres (0 = invalid); Ks (N, 3, 3); world_T_cams (N, 4, 4).
        extras: further needs by name.
        rng: generator for scorers that draw random numbers (seeded by the loop).
    """

    scene_id: str
    frame_ids: list[str]
    superpixels: np.ndarray
    probs: np.ndarray | None = None
    mc_probs: np.ndarray | None = None
    features: np.ndarray | None = None
    depths: np.ndarray | None = None
    Ks: np.ndarray | None = None
    world_T_cams: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


@dataclass
class Scores:
    """Per-pixel maps returned by a scorer for one scene.

    Attributes:
        pixel: (N, H, W) float32, higher = more informative (ranks regions).
        view: (N, H, W) float32 or None: among views of the same 3D region, the one with the highest
            pooled ``view`` score is sent to the oracle (ViewAL: view divergence). ``None`` = use ``pixel``.
    """

    pixel: np.ndarray
    view: np.ndarray | None = None


class Scorer:
    """Base class: subclasses set ``name`` and ``needs`` and implement :meth:`score_pixels`.

    ``selection`` tells the loop how regions are picked from the pooled scores: ``"greedy"``
    (highest first, optional cross-view dedup), ``"viewal"`` (ViewAL's selection with cross-view dedup
    and view choice by ``Scores.view``). Scorers with a set-level rule (e.g. core-set) override
    :meth:`select` instead.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"probs"})
    selection: ClassVar[str] = "greedy"

    def __init__(self, **options) -> None:
        self.options = options

    def score_pixels(self, inputs: SceneInputs) -> Scores:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, inputs: SceneInputs) -> Scores:
        out = self.score_pixels(inputs)
        pix = np.asarray(out.pixel, dtype=np.float32)
        if pix.shape != inputs.superpixels.shape:
            raise ValueError(f"scorer {self.name!r} returned pixel scores of shape {pix.shape}, "
                             f"expected {inputs.superpixels.shape}")
        # non-finite guard (as baal's heuristics): NaN never wins a ranking
        pix = np.where(np.isfinite(pix), pix, -np.inf).astype(np.float32)
        view = None if out.view is None else np.where(np.isfinite(out.view), out.view, -np.inf).astype(np.float32)
        return Scores(pixel=pix, view=view)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={sorted(self.needs)})"


_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a scorer available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    unknown = set(cls.needs) - set(NEEDS) - set(_EXTRA_NEEDS)
    if unknown:
        raise ValueError(f"scorer {cls.name!r} declares unknown needs {sorted(unknown)}; "
                         f"known: {sorted(set(NEEDS) | set(_EXTRA_NEEDS))}")
    _REGISTRY[cls.name] = cls
    return cls


#: needs registered by plug-ins (name -> description); providers live in ``viewal.needs``.
_EXTRA_NEEDS: dict[str, str] = {}


def register_need(name: str, description: str) -> None:
    _EXTRA_NEEDS[name] = description


def _load_builtin() -> None:
    # importing the modules registers their scorers
    import importlib

    for mod in ("viewal.scorers.baselines", "viewal.scorers.viewal_scorer", "viewal.scorers.seeds"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def names() -> list[str]:
    """Names of all registered scorers."""
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str, **options) -> Scorer:
    """Instantiate a scorer by name; an unknown name raises an error listing the valid ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


def pool_regions(pixel: np.ndarray, regions: np.ndarray, n_regions: int | None = None) -> np.ndarray:
    """Mean of pixel scores per region.

    Args:
        pixel: (H, W) float scores.
        regions: (H, W) int region ids in 0..R-1 (a superpixel map, or all zeros for whole-image pooling).
        n_regions: R (default ``regions.max() + 1``).
    Returns:
        (R,) float64 mean score per region (NaN for empty ids); ``-inf`` pixels make their region ``-inf``.
    """
    r = np.asarray(regions).ravel()
    s = np.asarray(pixel, dtype=np.float64).ravel()
    R = int(r.max()) + 1 if n_regions is None else int(n_regions)
    cnt = np.bincount(r, minlength=R).astype(np.float64)
    with np.errstate(invalid="ignore"):
        tot = np.bincount(r, weights=s, minlength=R)
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
