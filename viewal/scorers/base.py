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

__all__ = ["NEEDS", "SceneInputs", "Scores", "Scorer", "register", "get", "names", "pool_regions",
           "build_scene_inputs"]

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
    and view choice by ``Scores.view``), ``"kcenter"`` (set-level k-centre greedy on the features of
    :meth:`region_features`, e.g. core-set). Selection itself lives in ``viewal.selection.select``.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"probs"})
    selection: ClassVar[str] = "greedy"
    #: what :meth:`prepare_model` adds to training ("" = plain segmentation); models trained for scorers
    #: with the same value are interchangeable (the experiment shares its seed-set model among them)
    training: ClassVar[str] = ""
    #: option names this scorer reads (``scorer_options`` / ``--scorer-options``); others are refused
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options) -> None:
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            known = ", ".join(sorted(self.option_names)) or "none"
            raise ValueError(f"scorer {self.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"its options: {known}")
        self.options = options

    def score_pixels(self, inputs: SceneInputs) -> Scores:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare_model(self, model):
        """Called on every freshly built model before training: attach what this scorer needs the network
        to learn (e.g. a loss-prediction or rotation head) and return an ``extra_loss`` hook for
        ``viewal.train.fit`` (or ``None``: plain segmentation training)."""
        return None

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

    def select_pool(self, model, pool, frames, regions_of, budget_pixels: int, *, adjacency=None,
                    device: str = "cpu", size=None, batch_size: int = 4, progress: bool = True):
        """A scorer-specific selection over the whole scored pool (e.g. PAL's sub-queries with fine-tuning),
        returning a ``viewal.selection.Selection``; ``None`` (default) = the rule named by ``selection``."""
        return None

    def region_features(self, inputs: SceneInputs) -> np.ndarray | None:
        """(R, D) one feature vector per region (global order over the scene's frames) for set-level rules
        (``selection = "kcenter"``); ``None`` for scorers that rank by score."""
        return None

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


def build_scene_inputs(frames, superpixels: np.ndarray, needs=(), *, probs: np.ndarray | None = None,
                       mc_probs: np.ndarray | None = None, features: np.ndarray | None = None,
                       extras: dict[str, np.ndarray] | None = None,
                       rng: np.random.Generator | None = None) -> SceneInputs:
    """Assemble the :class:`SceneInputs` of one scene from its frames and the model's outputs.

    Only what ``needs`` names is filled in; geometry (``"views"``) is read from the frames' depth, ``K``
    and ``world_T_cam``. Ground-truth labels are never read (``Frame.labels`` is not touched), so no
    scorer can see them.

    Args:
        frames: (N,) ``viewal.datasets.Frame`` of one scene, in sequence order.
        superpixels: (N, H, W) int region ids per frame (or all zeros for whole-image regions).
        needs: the scorer's ``needs``.
        probs: (N, C, H, W); mc_probs: (T, N, C, H, W); features: (N, D) or (N, D, h, w); extras: plug-in needs.
        rng: generator for random scorers (default ``default_rng(0)``).
    """
    frames = list(frames)
    if not frames:
        raise ValueError("build_scene_inputs: frames is empty")
    scene_ids = {f.scene_id for f in frames}
    if len(scene_ids) != 1:
        raise ValueError(f"build_scene_inputs: frames span several scenes {sorted(scene_ids)}; pass one scene")
    sp = np.asarray(superpixels)
    if sp.ndim != 3 or len(sp) != len(frames):
        raise ValueError(f"superpixels must be (N={len(frames)}, H, W), got {sp.shape}")
    needs = set(needs)
    provided = {"probs": probs, "mc_probs": mc_probs, "features": features}
    for name, arr in provided.items():
        if name in needs and arr is None:
            raise ValueError(f"build_scene_inputs: the scorer needs {name!r} but it was not given")
    kw: dict = {name: (np.asarray(arr) if name in needs else None) for name, arr in provided.items()}
    if "probs" in needs and kw["probs"].shape[0] != len(frames):
        raise ValueError(f"probs has {kw['probs'].shape[0]} frames, expected {len(frames)}")
    if "views" in needs:
        kw["depths"] = np.stack([np.asarray(f.depth, dtype=np.float32) for f in frames])
        kw["Ks"] = np.stack([np.asarray(f.K, dtype=np.float64) for f in frames])
        kw["world_T_cams"] = np.stack([np.asarray(f.world_T_cam, dtype=np.float64) for f in frames])
    ex = {k: v for k, v in (extras or {}).items() if k in needs}
    missing = needs - set(NEEDS) - set(ex)
    if missing:
        raise ValueError(f"build_scene_inputs: needs {sorted(missing)} have no array in extras")
    return SceneInputs(scene_id=frames[0].scene_id, frame_ids=[f.frame_id for f in frames], superpixels=sp,
                       extras=ex, rng=rng if rng is not None else np.random.default_rng(0), **kw)
