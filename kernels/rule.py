"""The rule of 3D label propagation (``viewal.kernels.propagate``), apart from its kernels so that a run's
settings (``viewal.runs.learner.ALConfig.propagate_rule``) name it without loading Numba."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PROPAGATION_RULE", "PropagationRule"]


@dataclass(frozen=True)
class PropagationRule:
    """When a pixel without a human label takes the class its votes propagate to it.

    Attributes:
        min_agreement: the most-voted class must have at least this share of the pixel's votes (0..1); a tie
            for the most votes never propagates.
        min_support: at least this many votes (labelled source pixels landing on the pixel), >= 1.
        min_views: from at least this many distinct source frames, >= 1.

    ``PropagationRule()`` (:data:`PROPAGATION_RULE`) is the measured default (docs/propagation.md).
    """

    min_agreement: float = 0.75
    min_support: int = 1
    min_views: int = 1

    def __post_init__(self) -> None:
        a = self.min_agreement
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not (math.isfinite(a) and 0.0 <= a <= 1.0):
            raise ValueError(f"rule.min_agreement: expected a share in [0, 1], got {a!r}")
        for name in ("min_support", "min_views"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"rule.{name}: expected an integer >= 1, got {v!r}")
        object.__setattr__(self, "min_agreement", float(a))
        object.__setattr__(self, "min_support", int(self.min_support))
        object.__setattr__(self, "min_views", int(self.min_views))

    def to_dict(self) -> dict:
        return {"min_agreement": self.min_agreement, "min_support": self.min_support, "min_views": self.min_views}

    @classmethod
    def from_dict(cls, d: dict) -> PropagationRule:
        """The rule of a dict written by :meth:`to_dict` (absent keys: the defaults); unknown keys are refused,
        naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"rule: expected a dict of min_agreement, min_support, min_views, got {d!r}")
        unknown = sorted(set(d) - {"min_agreement", "min_support", "min_views"}, key=str)
        if unknown:
            raise ValueError(f"rule: unknown setting(s) {', '.join(map(repr, unknown))}; known: min_agreement, "
                             f"min_support, min_views")
        return cls(**d)


#: the one default rule
PROPAGATION_RULE = PropagationRule()
