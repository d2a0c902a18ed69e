"""The seed set: the whole frames labelled before the first cycle, and where their labels come from.

A model that knows nothing yet cannot rank regions, so the first labels are whole frames. Sources
(``ALConfig.seed_set``):

* ``"oracle"``: frames picked by the rule, labelled at once from the dataset's ground truth (simulation);
* ``"ask"``: frames picked by the rule, recorded as pending whole-frame queries of cycle 0 for people;
* ``"labels"``: the pool frames the user already labelled (the dataset's own label maps) are the seed set;
* ``"auto"``: ``"oracle"`` when every pool frame has labels, ``"labels"`` when some have, ``"ask"`` when none
  has (resolved once, when a run starts, and stored with it).

Rules (``ALConfig.seed_rule``) that pick the frames: ``"random"`` (uniform, seeded) and ``"spread"`` (spread
over scenes and viewpoints: farthest-point sampling on camera centre and viewing direction, one scene at a
time, so every scene gets a frame before any gets a second).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from viewal.core.config import SEED_RULES, SEED_SETS

__all__ = ["SEED_SETS", "SEED_RULES", "seed_count", "seed_frame_indices", "spread_indices", "resolve_seed_set"]



def seed_count(n_pool: int, fraction: float) -> int:
    """Number of seed frames: ``round(fraction * n_pool)``, at least 1."""
    return max(1, int(round(fraction * n_pool)))


def spread_indices(centres: np.ndarray, directions: np.ndarray, scene_ids: Sequence[str], n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Farthest-point sampling of ``n`` frames over viewpoints, scenes first.

    Args:
        centres: (N, 3) camera centres (metres); directions: (N, 3) unit viewing directions.
        scene_ids: N scene names; frames of different scenes are infinitely far apart, so the first picks
            cover the scenes (in a seeded random order) before any scene gets a second frame.
        n: frames to pick (<= N); rng: seeds the first pick.
    Returns:
        (n,) int64 indices in pick order. Distance between frames of one scene: ``|c_i - c_j| + |d_i - d_j|``
        (a metre of travel weighs as much as a turn of about 57 degrees).
    """
    centres = np.asarray(centres, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    N = len(centres)
    if not 1 <= n <= N:
        raise ValueError(f"spread_indices: n must lie in 1..{N}, got {n}")
    scenes = np.asarray([str(s) for s in scene_ids])
    picked = [int(rng.integers(N))]
    dist = np.full(N, np.inf)
    while len(picked) < n:
        last = picked[-1]
        d = np.linalg.norm(centres - centres[last], axis=1) + np.linalg.norm(directions - directions[last], axis=1)
        d[scenes != scenes[last]] = np.inf
        dist = np.minimum(dist, d)
        dist[picked] = -1.0
        best = np.flatnonzero(dist == dist.max())
        picked.append(int(best[rng.integers(len(best))]))  # ties (e.g. unseen scenes): a seeded choice
    return np.asarray(picked, dtype=np.int64)


def seed_frame_indices(frames: Sequence, fraction: float, seed: int, rule: str = "random") -> list[int]:
    """Indices (sorted) of the pool frames in the seed set.

    Args:
        frames: the pool's frames (``scene_id``; ``world_T_cam`` (4, 4) read for ``"spread"`` only).
        fraction: share of the frames (:func:`seed_count`); seed: the run seed; rule: ``"random"`` or ``"spread"``.
    """
    if rule not in SEED_RULES:
        raise ValueError(f"seed_rule must be one of {', '.join(SEED_RULES)}, got {rule!r}")
    n = seed_count(len(frames), fraction)
    rng = np.random.default_rng(seed)
    if rule == "random":
        return sorted(int(i) for i in rng.choice(len(frames), size=n, replace=False))
    poses = np.stack([np.asarray(f.world_T_cam, dtype=np.float64) for f in frames])
    picks = spread_indices(poses[:, :3, 3], poses[:, :3, 2], [f.scene_id for f in frames], n, rng)
    return sorted(int(i) for i in picks)


def resolve_seed_set(seed_set: str, has_labels: Sequence[bool], stored: str | None = None) -> str:
    """The concrete source of a run's seed set.

    ``stored`` is the value stored with a run being resumed (``"auto"`` there: a run made before the setting
    existed, whose seed set came from the ground truth): with ``"auto"`` asked, the stored one is kept.
    Otherwise ``"auto"`` becomes ``"oracle"`` (every pool frame has labels), ``"labels"`` (some) or ``"ask"``
    (none); any other value is returned as it is."""
    if seed_set not in SEED_SETS:
        raise ValueError(f"seed_set must be one of {', '.join(SEED_SETS)}, got {seed_set!r}")
    if seed_set != "auto":
        return seed_set
    if stored is not None:
        return "oracle" if stored == "auto" else stored
    n = sum(bool(h) for h in has_labels)
    return "oracle" if n == len(has_labels) else ("labels" if n else "ask")
