"""The one scorer interface, its registry, and the region pooling every scorer shares.

A scorer turns what the model (and, for ViewAL, the scene geometry) gives about the frames of **one
scene** into per-pixel informativeness maps. It never sees ground-truth labels: the
:class:`SceneInputs` it receives has no label field.

What a scorer needs is declared, not special-cased: ``needs`` is a set of names from the needs registry
(``viewal.scoring.needs``, below this module); the active-learning loop computes exactly those through their
providers and fills the matching fields of :class:`SceneInputs` (or ``extras`` for needs registered by
plug-ins). How a scorer's pooled scores become a selection is its :meth:`Scorer.selector`, so the loop
makes the same ``selector.select(pool, budget, context)`` call for every scorer.

Pooling over regions (superpixels, or whole images) is shared: ``viewal.selection.pool_frames`` (and
:func:`pool_regions` for one frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from viewal.datasets.base import stack_scene
from viewal.kernels.depth_test import DEPTH_TEST, DepthTest, refuse_depth_test_options
from viewal.scoring.needs import NEED_FIELDS, NEEDS, known_needs, register_need
from viewal.selection import GreedySelector, Selector, pool_frames

__all__ = ["NEEDS", "SceneInputs", "Scores", "Scorer", "register", "get", "names", "pool_regions",
           "build_scene_inputs", "register_need"]


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

    :meth:`selector` gives the :class:`~viewal.selection.Selector` that picks regions from the pooled
    scores: greedy (highest first, optional cross-view dedup) by default; ViewAL's selection with
    cross-view dedup and view choice by ``Scores.view``; k-centre greedy on :meth:`region_features`
    (core-set); PAL's sub-queries. ``selection`` names it (a label for reports; the loop never reads it).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"probs"})
    selection: ClassVar[str] = "greedy"
    #: what :meth:`prepare_model` adds to training ("" = plain segmentation); models trained for scorers
    #: with the same value are interchangeable (the experiment shares its seed-set model among them)
    training: ClassVar[str] = ""
    #: option names this scorer reads (``scorer_options`` / ``--scorer-options``); others are refused
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, depth_test: DepthTest = DEPTH_TEST, **options) -> None:
        """``depth_test``: the run's depth test (``ALConfig.depth_test``), for scorers that cross-project
        between views; ``options``: this scorer's own options (:attr:`option_names`)."""
        if not isinstance(depth_test, DepthTest):
            raise TypeError(f"scorer {self.name!r}: depth_test must be a viewal.kernels.DepthTest, "
                            f"got {type(depth_test).__name__}")
        unknown = sorted(set(options) - set(self.option_names))
        refuse_depth_test_options({k: options[k] for k in unknown}, f"scorer {self.name!r}")
        if unknown:
            known = ", ".join(sorted(self.option_names)) or "none"
            raise ValueError(f"scorer {self.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"its options: {known}")
        self.depth_test = depth_test
        self.options = options

    def score_pixels(self, inputs: SceneInputs) -> Scores:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare_model(self, model):
        """Called on every freshly built model before training: attach what this scorer needs the network
        to learn (e.g. a loss-prediction or rotation head) and return an ``extra_loss`` hook for
        ``viewal.nn.train.fit`` (or ``None``: plain segmentation training)."""
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

    def selector(self, dedup: bool = False) -> Selector:
        """How this scorer's pooled scores are turned into a selection. Default: greedy, with cross-view
        dedup when ``dedup`` (``ALConfig.dedup``)."""
        return GreedySelector(dedup=bool(dedup))

    def region_features(self, inputs: SceneInputs) -> np.ndarray | None:
        """(R, D) one feature vector per region (global order over the scene's frames) for set-level
        selectors (k-centre); ``None`` for scorers that rank by score."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={sorted(self.needs)})"


_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a scorer available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    unknown = set(cls.needs) - set(known_needs())
    if unknown:
        raise ValueError(f"scorer {cls.name!r} declares unknown needs {sorted(unknown)}; known: {known_needs()}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # importing the modules registers their scorers
    import importlib

    for mod in ("viewal.scoring.scorers.baselines", "viewal.scoring.scorers.viewal_scorer",
                "viewal.scoring.scorers.consistency", "viewal.scoring.scorers.pal"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def names() -> list[str]:
    """Names of all registered scorers."""
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str, *, depth_test: DepthTest = DEPTH_TEST, **options) -> Scorer:
    """Instantiate a scorer by name, with the run's depth test and its own options; an unknown name
    raises an error listing the valid ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](depth_test=depth_test, **options)


def pool_regions(pixel: np.ndarray, regions: np.ndarray, n_regions: int | None = None) -> np.ndarray:
    """Mean of pixel scores per region of one frame (``viewal.selection.pool_frames`` on a stack of one).

    Args:
        pixel: (H, W) float scores.
        regions: (H, W) int region ids in 0..R-1 (a superpixel map, or all zeros for whole-image pooling).
        n_regions: R (default ``regions.max() + 1``).
    Returns:
        (R,) float64 mean score per region (NaN for empty ids); ``-inf`` pixels make their region ``-inf``.
    """
    regions = np.asarray(regions)
    score, _, _ = pool_frames(np.asarray(pixel)[None], regions[None])
    R = len(score) if n_regions is None else int(n_regions)
    return np.concatenate([score, np.full(max(0, R - len(score)), np.nan)])[:R]


def build_scene_inputs(frames, superpixels: np.ndarray, needs=(), *, probs: np.ndarray | None = None,
                       mc_probs: np.ndarray | None = None, features: np.ndarray | None = None,
                       depths: np.ndarray | None = None, Ks: np.ndarray | None = None,
                       world_T_cams: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
                       rng: np.random.Generator | None = None, **more: np.ndarray) -> SceneInputs:
    """Assemble the :class:`SceneInputs` of one scene from its frames and what the need providers gave.

    Only what ``needs`` names is filled in; geometry (``"views"``) not given is stacked from the frames
    (``viewal.datasets.base.stack_scene``, the ``views`` provider). Ground-truth labels are never read
    (``Frame.labels`` is not touched), so no scorer can see them.

    Args:
        frames: (N,) ``viewal.datasets.Frame`` of one scene, in sequence order.
        superpixels: (N, H, W) int region ids per frame (or all zeros for whole-image regions).
        needs: the scorer's ``needs``.
        probs: (N, C, H, W); mc_probs: (T, N, C, H, W); features: (N, D) or (N, D, h, w).
        depths: (N, H, W); Ks: (N, 3, 3); world_T_cams: (N, 4, 4) (the ``views`` need).
        extras, more: plug-in needs by name (``**compute_needs(...)`` passes them as keywords).
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
        geo = {"depths": depths, "Ks": Ks, "world_T_cams": world_T_cams}
        if any(v is None for v in geo.values()):
            geo = stack_scene(frames)
        kw.update({k: np.asarray(geo[k]) for k in NEED_FIELDS["views"]})
    ex = {k: v for k, v in {**more, **(extras or {})}.items() if k in needs}
    missing = needs - set(NEEDS) - set(ex)
    if missing:
        raise ValueError(f"build_scene_inputs: needs {sorted(missing)} have no array in extras")
    return SceneInputs(scene_id=frames[0].scene_id, frame_ids=[f.frame_id for f in frames], superpixels=sp,
                       extras=ex, rng=rng if rng is not None else np.random.default_rng(0), **kw)
