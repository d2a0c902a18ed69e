"""The depth test of a run: one typed, frozen settings object (``DepthTest``) with one default (``DEPTH_TEST``).

A pixel of one view corresponds to a pixel of another when its back-projected point, moved into the other
camera, passes this test against the other view's depth. The same object decides the view entropy /
divergence (:func:`viewal.kernels.view_entropy_divergence`), the superpixel overlap table
(:func:`viewal.kernels.superpixel_overlap`) and ``viewal visualize``'s point cloud; a run stores it in its
ledger (``ALConfig.depth_test``) and ``viewal experiment`` builds it from its flags (:data:`FLAGS`).
Pure Python (no NumPy, no Numba).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ._math import AGGREGATIONS, DEFAULT_AGGREGATION, MODES, VIEWAL_WORLD_DISTANCE

__all__ = ["BACKENDS", "DEPTH_TEST", "FLAGS", "DepthTest", "refuse_depth_test_options"]

BACKENDS = ("numpy", "cpu", "cuda")

#: the ``viewal experiment`` flag of each field
FLAGS = {"mode": "--depth-test", "depth_tol": "--depth-tol", "world_distance": "--depth-distance",
         "aggregation": "--aggregation", "backend": "--kernel-backend"}


def _number(v: Any) -> float | None:
    """``v`` as a finite float, or None when it is not a finite real number (bools are not numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class DepthTest:
    """How the multi-view kernels decide that two pixels of two views see the same surface point.

    Attributes:
        mode: ``"z"`` — keep if ``|p_z - D_j(u', v')| <= abs_tol + rel_tol * p_z`` (``depth_tol``);
            ``"viewal"`` — ViewAL's test: keep if the back-projected ``D_j(u', v')`` lies closer than
            ``world_distance`` to the point (strictly).
        depth_tol: ``(abs_tol metres, rel_tol)`` of mode ``"z"``; abs_tol >= 0, 0 <= rel_tol < 1.
        world_distance: mode ``"viewal"``'s threshold in metres (> 0; ViewAL's published constant 1.0, its
            shipped coverage tables match 0.1).
        aggregation: how view entropy collects a pixel's correspondences: ``"gather"`` (one pixel per
            view, docs/methods.md) or ``"splat"`` (ViewAL's: every point of every view that lands on the
            pixel). None = the mode's own (gather for ``"z"``, splat for ``"viewal"``), resolved when the
            object is built, so the stored settings say what ran. (``dataclasses.replace(t, mode=...)``
            keeps ``t``'s aggregation.) The overlap table does not use it.
        backend: ``"numpy"`` (reference), ``"cpu"`` (Numba, parallel) or ``"cuda"`` (Numba CUDA). How a run
            executes, not what it computes (backends agree within 1e-5): a resume may change it.

    ``DepthTest()`` (:data:`DEPTH_TEST`) is the one default: mode ``"z"``, tolerances (0.05 m, 0.02),
    gather, CPU. Bad values raise ValueError naming the field and its flag.
    """

    mode: str = "z"
    depth_tol: tuple[float, float] = (0.05, 0.02)
    world_distance: float = VIEWAL_WORLD_DISTANCE
    aggregation: str | None = None
    backend: str = "cpu"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"{_name('mode')}: unknown depth-test mode {self.mode!r}; valid: {', '.join(MODES)}")
        try:
            tol = tuple(_number(t) for t in self.depth_tol)
        except TypeError:
            tol = ()
        if len(tol) != 2 or None in tol:
            raise ValueError(f"{_name('depth_tol')}: expected two finite numbers (abs_tol metres, rel_tol), "
                             f"got {self.depth_tol!r}")
        if not (tol[0] >= 0 and 0 <= tol[1] < 1):
            raise ValueError(f"{_name('depth_tol')}: need abs_tol >= 0 and 0 <= rel_tol < 1, got {self.depth_tol!r}")
        dist = _number(self.world_distance)
        if dist is None or dist <= 0:
            raise ValueError(f"{_name('world_distance')}: must be a positive number of metres, "
                             f"got {self.world_distance!r}")
        agg = DEFAULT_AGGREGATION[self.mode] if self.aggregation is None else self.aggregation
        if agg not in AGGREGATIONS:
            raise ValueError(f"{_name('aggregation')}: unknown aggregation {self.aggregation!r}; valid: "
                             f"{', '.join(AGGREGATIONS)} or None (the mode's own)")
        if self.backend not in BACKENDS:
            raise ValueError(f"{_name('backend')}: unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        object.__setattr__(self, "depth_tol", tol)
        object.__setattr__(self, "world_distance", dist)
        object.__setattr__(self, "aggregation", agg)

    def to_dict(self) -> dict:
        """JSON-ready settings (stored in the ledger): ``DepthTest.from_dict(t.to_dict()) == t``."""
        return {"mode": self.mode, "depth_tol": list(self.depth_tol), "world_distance": self.world_distance,
                "aggregation": self.aggregation, "backend": self.backend}

    @classmethod
    def from_dict(cls, d: Any) -> DepthTest:
        """Settings from a dict such as :meth:`to_dict` wrote; absent keys take the defaults, unknown keys
        are refused (naming them and the known ones)."""
        if isinstance(d, DepthTest):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"depth_test: expected a dict of settings, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known), key=str)
        if unknown:
            raise ValueError(f"depth_test: unknown setting(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(known)}")
        return cls(**d)

    def computes(self) -> dict:
        """What the test computes (:meth:`to_dict` without the backend, which changes no number)."""
        d = self.to_dict()
        del d["backend"]
        return d


def refuse_depth_test_options(options: dict, where: str) -> None:
    """Refuse scorer options that name a depth-test setting (``mode``, ``depth_tol``, ``world_distance``,
    ``aggregation``, ``backend``): they were the view-entropy scorer's options before the run had one depth
    test; now they are the run's (``ALConfig.depth_test``, flags :data:`FLAGS`)."""
    moved = [k for k in FLAGS if k in options]
    if moved:
        flags = ", ".join(f"{k} -> {FLAGS[k]}" for k in moved)
        raise ValueError(f"{where}: {', '.join(map(repr, moved))} set the run's depth test, not a scorer option; "
                         f"use viewal experiment's flags ({flags}) or ALConfig(depth_test=DepthTest(...))")


def _name(field: str) -> str:
    return f"depth_test.{field} ({FLAGS[field]})"


#: the one default depth test (every kernel's default, ``ALConfig``'s and the CLI's)
DEPTH_TEST = DepthTest()
