"""ViewAL's scorer (Siddiqui et al., CVPR 2020, Sec. 3): view entropy ranks regions, view divergence picks the view.

Per pixel, ``viewal.kernels.view_entropy_divergence`` cross-projects the scene's mean MC-dropout
distributions between its views (depth test, occlusion) and returns VE and VD maps; this scorer only
wires its inputs, and its selector (``viewal.selection.ViewALSelector``) applies ViewAL's selection with
cross-view dedup (``viewal.selection.select_viewal``) on the pooled maps: region score = mean VE over
the superpixel, view score = mean VD.

The depth test (mode, tolerances or distance, aggregation, backend) is the run's (``ALConfig.depth_test``, a
:class:`viewal.kernels.DepthTest` given to the scorer when it is built), passed unchanged to the kernel, as to
the overlap table.

Options: ablations of ViewAL's selection (never passed to the kernel; ``docs/label_efficiency.md`` runs
them): ``rank`` — what ranks the regions, ``"ve"`` (ViewAL) or ``"vd"`` (view divergence ranks and still
picks the view); ``selection`` — ``"viewal"`` (VE-then-VD with dedup, ViewAL) or ``"greedy"`` (the ranked
region itself is asked, no view choice; cross-view dedup only with ``--dedup``). So
``{"selection": "greedy"}`` with ``--dedup`` is "VE only" (no view divergence), and without ``--dedup``
"dedup off".
"""
from __future__ import annotations

import numpy as np

from viewal import kernels
from viewal.selection import GreedySelector, ViewALSelector

from .base import SceneInputs, Scorer, Scores, register

__all__ = ["ViewEntropyScorer"]


@register
class ViewEntropyScorer(Scorer):
    """ViewAL: pixel score = view entropy VE, view score = view divergence VD."""

    name = "view_entropy"
    #: ablations of ViewAL's selection (module docstring)
    ablation_options = {"rank": ("ve", "vd"), "selection": ("viewal", "greedy")}
    option_names = frozenset(ablation_options)
    needs = frozenset({"probs", "views"})
    selection = "viewal"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        for k, valid in self.ablation_options.items():
            if k in options and options[k] not in valid:
                raise ValueError(f"scorer 'view_entropy': option {k!r} must be one of {valid}, got {options[k]!r}")

    def selector(self, dedup: bool = False) -> ViewALSelector | GreedySelector:
        """ViewAL's VE-then-VD selection, always with cross-view dedup (``dedup`` is implied); with the
        option ``selection="greedy"``, greedy selection with ``dedup`` as given."""
        if self.options.get("selection", "viewal") == "greedy":
            return GreedySelector(dedup=dedup)
        return ViewALSelector()

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        missing = [n for n in ("probs", "depths", "Ks", "world_T_cams") if getattr(inputs, n) is None]
        if missing:
            raise ValueError(f"view_entropy: SceneInputs is missing {missing} (needs 'probs' and 'views')")
        fn = getattr(kernels, "view_entropy_divergence", None)
        if fn is None:
            raise RuntimeError("view_entropy: viewal.kernels.view_entropy_divergence is not available in this build")
        ve, vd = fn(np.asarray(inputs.probs, dtype=np.float32), np.asarray(inputs.depths, dtype=np.float32),
                    np.asarray(inputs.Ks, dtype=np.float64), np.asarray(inputs.world_T_cams, dtype=np.float64),
                    depth_test=self.depth_test)
        ve, vd = np.asarray(ve, dtype=np.float32), np.asarray(vd, dtype=np.float32)
        if self.options.get("rank", "ve") == "vd":
            return Scores(pixel=vd, view=vd)
        return Scores(pixel=ve, view=vd)
