"""Baseline scorers (ViewAL's baselines, Siddiqui et al., CVPR 2020, Sec. 4): random, softmax entropy, margin,
least confidence, MC-dropout entropy,
BALD, core-set and CEAL.

The per-pixel maths are small pure functions on arrays; the class axis is axis ``-3`` everywhere, so
each works on one frame ``(C, H, W)`` or a stack ``(N, C, H, W)``; MC functions take the passes on
axis 0 (``(T, C, H, W)`` or ``(T, N, C, H, W)``). Entropies use the natural log (ranking does not depend
on the base). Pooling over regions is shared (``viewal.selection.pool_frames``), never done here.
"""
from __future__ import annotations

import numpy as np

from viewal.selection import KCenterSelector, region_features

from .base import SceneInputs, Scorer, Scores, register

__all__ = ["entropy_map", "margin_map", "confidence_map", "mc_entropy_map", "bald_map", "ceal_threshold",
           "ceal_pseudo_labels", "RandomScorer", "EntropyScorer", "MarginScorer", "ConfidenceScorer",
           "MCEntropyScorer", "BALDScorer", "CoresetScorer", "CEALScorer"]

EPS = 1e-12
IGNORE = 255


def _probs(p: np.ndarray, name: str = "probs", min_ndim: int = 3) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims (…, C, H, W), got shape {p.shape}")
    return p


def entropy_map(probs: np.ndarray) -> np.ndarray:
    """Softmax entropy H(P) = −Σ_c p_c log(p_c + 1e-12).

    probs: (C, H, W) or (N, C, H, W) class distributions → (H, W) or (N, H, W) float32 (nats; log C max).
    """
    p = _probs(probs)
    return (-(p * np.log(p + EPS)).sum(axis=-3)).astype(np.float32)


def margin_map(probs: np.ndarray) -> np.ndarray:
    """Margin score 1 − (p₁ − p₂), p₁ ≥ p₂ the two largest class probabilities.

    probs: (C, H, W) or (N, C, H, W), C ≥ 2 → (H, W) or (N, H, W) float32 in [0, 1].
    """
    p = _probs(probs)
    if p.shape[-3] < 2:
        raise ValueError(f"margin needs at least 2 classes, got probs of shape {p.shape}")
    top2 = -np.partition(-p, 1, axis=-3)
    p1 = np.take(top2, 0, axis=-3)
    p2 = np.take(top2, 1, axis=-3)
    return (1.0 - (p1 - p2)).astype(np.float32)


def confidence_map(probs: np.ndarray) -> np.ndarray:
    """Least confidence 1 − p₁. probs: (C, H, W) or (N, C, H, W) → (H, W) or (N, H, W) float32."""
    p = _probs(probs)
    return (1.0 - p.max(axis=-3)).astype(np.float32)


def mc_entropy_map(mc_probs: np.ndarray) -> np.ndarray:
    """MC-dropout entropy: entropy of the mean over passes, H(mean_t P_t).

    mc_probs: (T, C, H, W) or (T, N, C, H, W) → (H, W) or (N, H, W) float32.
    """
    p = _probs(mc_probs, "mc_probs", 4)
    return entropy_map(p.mean(axis=0))


def bald_map(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information H(mean_t P_t) − mean_t H(P_t) (≥ 0 up to rounding).

    mc_probs: (T, C, H, W) or (T, N, C, H, W) → (H, W) or (N, H, W) float32.
    """
    p = _probs(mc_probs, "mc_probs", 4)
    h_mean = -(p.mean(axis=0) * np.log(p.mean(axis=0) + EPS)).sum(axis=-3)
    mean_h = (-(p * np.log(p + EPS)).sum(axis=-3)).mean(axis=0)
    return np.maximum(h_mean - mean_h, 0.0).astype(np.float32)


def ceal_threshold(cycle: int, delta0: float = 0.05, decay: float = 0.005) -> float:
    """CEAL's entropy threshold for cycle ``cycle`` (0-based): δ_t = max(δ₀ − decay·t, 0), tightening."""
    if cycle < 0:
        raise ValueError(f"cycle must be >= 0, got {cycle}")
    return max(float(delta0) - float(decay) * int(cycle), 0.0)


def ceal_pseudo_labels(probs: np.ndarray, cycle: int, delta0: float = 0.05, decay: float = 0.005,
                       exclude: np.ndarray | None = None, ignore_index: int = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """CEAL's high-confidence pseudo-labels: argmax class where the entropy is below the cycle's threshold.

    Args:
        probs: (C, H, W) or (N, C, H, W) mean class distributions on unlabelled frames.
        cycle: active-learning cycle (0-based); the threshold :func:`ceal_threshold` shrinks with it.
        delta0, decay: threshold schedule (entropy in nats).
        exclude: (H, W) / (N, H, W) bool pixels never pseudo-labelled (e.g. already labelled by the oracle).
        ignore_index: value of pixels without a pseudo-label.
    Returns:
        labels (…, H, W) int64 (``ignore_index`` elsewhere), mask (…, H, W) bool of pseudo-labelled pixels.
        The pseudo-labels are training targets for the cycle only; they are never recorded as labels.
    """
    p = _probs(probs)
    thr = ceal_threshold(cycle, delta0, decay)
    ent = entropy_map(p)
    mask = ent < thr
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != mask.shape:
            raise ValueError(f"exclude has shape {ex.shape}, expected {mask.shape}")
        mask &= ~ex
    labels = np.where(mask, p.argmax(axis=-3), ignore_index).astype(np.int64)
    return labels, mask


# --------------------------------------------------------------------------------------------- scorers

@register
class RandomScorer(Scorer):
    """Uniformly random regions: every region gets one U(0, 1) value from ``inputs.rng`` (all its pixels
    share it, so pooled region scores stay uniform whatever the region size; with whole-image regions
    each frame gets one value). Needs only the region map."""

    name = "random"
    needs = frozenset()

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        sp = np.asarray(inputs.superpixels)
        out = np.empty(sp.shape, dtype=np.float32)
        for i in range(len(sp)):
            u = inputs.rng.random(int(sp[i].max()) + 1)
            out[i] = u[sp[i]]
        return Scores(pixel=out)


@register
class EntropyScorer(Scorer):
    """Softmax entropy of the mean class distribution."""

    name = "entropy"
    needs = frozenset({"probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=entropy_map(inputs.probs))


@register
class MarginScorer(Scorer):
    """1 − (p₁ − p₂): small margin between the top two classes = informative."""

    name = "margin"
    needs = frozenset({"probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=margin_map(inputs.probs))


@register
class ConfidenceScorer(Scorer):
    """Least confidence 1 − p₁."""

    name = "confidence"
    needs = frozenset({"probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=confidence_map(inputs.probs))


@register
class MCEntropyScorer(Scorer):
    """Entropy of the mean of the MC-dropout passes."""

    name = "mc_entropy"
    needs = frozenset({"mc_probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=mc_entropy_map(inputs.mc_probs))


@register
class BALDScorer(Scorer):
    """BALD: mutual information between prediction and model parameters over MC-dropout passes."""

    name = "bald"
    needs = frozenset({"mc_probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=bald_map(inputs.mc_probs))


@register
class CoresetScorer(Scorer):
    """Core-set (k-centre greedy on pooled encoder features): a set-level rule, ``selection = "kcenter"``.

    How the loop calls it: pixel scores are all zero (nothing to rank); the loop stores
    :meth:`region_features` (one feature vector per region, global order of ``viewal.selection.pool_frames``)
    in the pool (``RegionPool.features``), and :class:`~viewal.selection.KCenterSelector` takes the labelled
    regions' features as the initial centres.
    With ``features`` of shape (N, D) (one pooled vector per frame), use whole-image regions
    (``viewal.selection.whole_image_regions``): ViewAL's and Sener's setting. With feature maps
    (N, D, h, w) regions are pooled by masked averaging (superpixel core-set).
    """

    name = "coreset"
    needs = frozenset({"features"})
    selection = "kcenter"

    def selector(self, dedup: bool = False) -> KCenterSelector:
        """k-centre greedy (no dedup: distance in feature space already spreads the picks)."""
        return KCenterSelector()

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=np.zeros(np.asarray(inputs.superpixels).shape, dtype=np.float32))

    def region_features(self, inputs: SceneInputs) -> np.ndarray:
        if inputs.features is None:
            raise ValueError("coreset: SceneInputs.features is missing (the loop must provide the 'features' need)")
        return region_features(inputs.features, inputs.superpixels)


@register
class CEALScorer(Scorer):
    """CEAL: entropy selection; its high-confidence pseudo-labels (threshold tightening each cycle) come from
    :func:`ceal_pseudo_labels`, which the loop calls on the unlabelled frames when training (options
    ``delta0``, ``decay`` are passed there through :meth:`pseudo_labels`)."""

    option_names = frozenset({"delta0", "decay"})
    name = "ceal"
    needs = frozenset({"probs"})

    def score_pixels(self, inputs: SceneInputs) -> Scores:
        return Scores(pixel=entropy_map(inputs.probs))

    def pseudo_labels(self, probs: np.ndarray, cycle: int, exclude: np.ndarray | None = None):
        """:func:`ceal_pseudo_labels` with this scorer's ``delta0``/``decay`` options."""
        return ceal_pseudo_labels(probs, cycle, delta0=self.options.get("delta0", 0.05),
                                  decay=self.options.get("decay", 0.005), exclude=exclude)
