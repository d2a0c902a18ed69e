"""Selectors: how each scorer picks regions from its scored pool (``Scorer.selector()``), behind one method,
``select(pool, budget_pixels, context)``, so that the loop makes the same call whatever the scorer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from viewal.selection.pool import RegionPool, Selection
from viewal.selection.rules import select_greedy, select_kcenter, select_random_share, select_viewal

__all__ = ["SelectionContext", "Selector", "GreedySelector", "ViewALSelector", "KCenterSelector",
           "RandomShareSelector", "with_random_share"]


@dataclass
class SelectionContext:
    """What a :class:`Selector` may use besides the pooled scores (the loop fills it the same way for every
    scorer; a selector reads what it needs).

    Attributes:
        adjacency: (R, R) overlap adjacency over the pool (:func:`~viewal.selection.overlap_adjacency`), or a
            zero-argument callable returning it (computed on first use, so that selectors without dedup never
            pay for the overlap tables); None: no overlaps known.
        rng: random generator of this cycle's selection (random shares); None: the selection uses none.
        network: for selectors that run the network (PAL's sub-queries): the model and the pool's frames in
            pool order with the inference settings, as a ``viewal.scoring.needs.NeedContext`` (``options["size"]``:
            the working (H, W)); None for every rule of this package, which reads scores only.
        progress: show progress bars.
    """

    adjacency: Any = None
    rng: np.random.Generator | None = None
    network: Any = None
    progress: bool = True

    def overlaps(self):
        """The overlap adjacency (computed now when it was given as a callable); ValueError when none."""
        adj = self.adjacency
        if adj is None:
            raise ValueError("this selection needs the overlap adjacency (SelectionContext.adjacency)")
        if callable(adj) and not hasattr(adj, "shape"):
            adj = self.adjacency = adj()
        return adj


class Selector:
    """How regions are picked from a scored pool: one method, :meth:`select`. Each scorer owns one
    (``Scorer.selector``), so the loop makes the same call whatever the scorer."""

    name: ClassVar[str] = ""

    @property
    def needs_overlaps(self) -> bool:
        """True when :meth:`select` reads the overlap adjacency (``context.overlaps()``): the scoring then
        computes each scene's overlap table alongside its scores."""
        return False

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        raise NotImplementedError  # pragma: no cover - interface

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True)
class GreedySelector(Selector):
    """Highest pooled score first until the budget (:func:`select_greedy`); ``dedup``: each pick flags the
    regions overlapping it (the context's adjacency), no view choice."""

    dedup: bool = False
    name: ClassVar[str] = "greedy"

    @property
    def needs_overlaps(self) -> bool:
        return self.dedup

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        return select_greedy(pool, budget_pixels, context.overlaps() if self.dedup else None)


class ViewALSelector(Selector):
    """ViewAL's selection: view entropy ranks, view divergence picks the view, cross-view dedup always
    (:func:`select_viewal`)."""

    name: ClassVar[str] = "viewal"
    needs_overlaps: ClassVar[bool] = True

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        return select_viewal(pool, context.overlaps(), budget_pixels)


class KCenterSelector(Selector):
    """k-centre greedy (core-set) on ``pool.features``, the labelled regions' features as initial centres
    (:func:`kcenter_greedy`)."""

    name: ClassVar[str] = "kcenter"

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        if pool.features is None:
            raise ValueError("k-centre selection needs region features (RegionPool.features, from "
                             "Scorer.region_features)")
        labelled = ~np.asarray(pool.available, dtype=bool) & (pool.sizes > 0)
        centres = pool.features[labelled] if labelled.any() else None
        return select_kcenter(pool, budget_pixels, pool.features, centres)


@dataclass(frozen=True)
class RandomShareSelector(Selector):
    """``inner`` picks ``(1 − share)`` of the budget, random regions the rest (:func:`select_random_share`;
    ``context.rng`` draws them; when ``inner`` dedups, the random picks avoid the 3D regions it asked).

    Uncertainty sampling in segmentation trades classes: it spends its labels where the model is unsure
    (small objects) and starves the large classes it is confident about, whose IoU then falls
    (``docs/label_efficiency_warm.md``). A random share keeps every class sampled as the pool has it."""

    inner: Selector
    share: float
    name: ClassVar[str] = "random_share"

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float, np.floating)) \
                or not 0 <= self.share <= 1:
            raise ValueError(f"RandomShareSelector: share must be a number in [0, 1], got {self.share!r}")

    @property
    def needs_overlaps(self) -> bool:
        return self.inner.needs_overlaps

    def select(self, pool: RegionPool, budget_pixels: int, context: SelectionContext) -> Selection:
        if context.rng is None:
            raise ValueError("RandomShareSelector needs a random generator (SelectionContext.rng)")
        inner_budget = int(round((1.0 - float(self.share)) * int(budget_pixels)))
        first = self.inner.select(pool, inner_budget, context) if inner_budget > 0 else \
            Selection(ids=np.zeros(0, np.int64), anchors=np.zeros(0, np.int64), score=np.zeros(0), view=np.zeros(0))
        return select_random_share(pool, first, budget_pixels, context.rng,
                                   context.overlaps() if self.inner.needs_overlaps else None)


def with_random_share(selector: Selector, share: float) -> Selector:
    """``selector`` itself when ``share`` is 0, else a :class:`RandomShareSelector` around it."""
    return selector if share == 0 else RandomShareSelector(selector, float(share))


