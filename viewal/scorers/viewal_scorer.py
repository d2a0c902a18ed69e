"""ViewAL's scorer (Siddiqui et al., CVPR 2020, Sec. 3): view entropy ranks regions, view divergence picks the view.

Per pixel, ``viewal.kernels.view_entropy_divergence`` cross-projects the scene's mean MC-dropout
distributions between its views (depth test, occlusion) and returns VE and VD maps; this scorer only
wires its inputs, and its selector (``viewal.selection.ViewALSelector``) applies ViewAL's selection with
cross-view dedup (``viewal.selection.select_viewal``) on the pooled maps: region score = mean VE over
the superpixel, view score = mean VD.

No options of its own: the depth test (mode, tolerances or distance, aggregation, backend) is the run's
(``ALConfig.depth_test``, a :class:`viewal.kernels.DepthTest` given to the scorer when it is built), passed
unchanged to the kernel, as to the overlap table.
"""
from __future__ import annotations

import numpy as np

from viewal.selection import ViewALSelector

from .base import SceneInputs, Scorer, Scores, register

__all__ = ["ViewEntropyScorer"]


@register
class ViewEntropyScorer(Scorer):
    """ViewAL: pixel score = view entropy VE, view score = view divergence VD."""

    name = "view_entropy"
    needs = frozenset({"probs", "views"})
    selection = "viewal"

    def selector(self, dedup: bool = False) -> ViewALSelector:
        """ViewAL's VE-then-VD selection, always with cross-view dedup (``dedup`` is implied)."""
        return ViewALSelector()

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        from viewal import kernels

        missing = [n for n in ("probs", "depths", "Ks", "world_T_cams") if getattr(inputs, n) is None]
        if missing:
            raise ValueError(f"view_entropy: SceneInputs is missing {missing} (needs 'probs' and 'views')")
        fn = getattr(kernels, "view_entropy_divergence", None)
        if fn is None:
            raise RuntimeError("view_entropy: viewal.kernels.view_entropy_divergence is not available in this build")
        ve, vd = fn(np.asarray(inputs.probs, dtype=np.float32), np.asarray(inputs.depths, dtype=np.float32),
                    np.asarray(inputs.Ks, dtype=np.float64), np.asarray(inputs.world_T_cams, dtype=np.float64),
                    depth_test=self.depth_test)
        return Scores(pixel=np.asarray(ve, dtype=np.float32), view=np.asarray(vd, dtype=np.float32))
