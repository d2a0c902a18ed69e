"""Region selection: pure functions on arrays over a *global* superpixel index.

The pool is every region (superpixel, or the whole frame in whole-image mode) of every frame of the
unlabelled pool. Frame ``f`` owns the global ids ``offsets[f] .. offsets[f+1]-1``; region ``r`` of frame
``f`` (its id in the frame's region map) has global id ``offsets[f] + r``.

The package, one module per responsibility: :mod:`~viewal.selection.pool` (queries, the pool, pooling),
:mod:`~viewal.selection.overlap` (the cross-view adjacency), :mod:`~viewal.selection.rules` (the rules as pure
functions) and :mod:`~viewal.selection.selectors` (the rules behind one interface). Nothing here runs a network.

Selectors (``Scorer.selector()``; the rules as functions: :func:`select_viewal`, :func:`select_greedy`,
:func:`select_kcenter`, :func:`select_random_share`):

* :class:`ViewALSelector` (``"viewal"``) — ViewAL's selection (Siddiqui et al., CVPR 2020, Sec. 3.4): visit
  regions by pooled score (VE), highest first; for each region ``r`` neither labelled nor flagged, the
  candidates are ``r`` and every unflagged region whose overlap with ``r`` exceeds the threshold (0.25) in
  either direction; the candidate with the highest pooled view score (VD, compared as floats) is labelled;
  all candidates and every region overlapping the winner are flagged. Stops when the labelled pixels reach
  the budget.
* :class:`GreedySelector` (``"greedy"``) — regions by score, highest first, until the budget is reached;
  with ``dedup`` each pick flags the regions overlapping it (same dedup, no view choice).
* :class:`KCenterSelector` (``"kcenter"``) — k-centre greedy (core-set) on the pool's region features:
  :func:`kcenter_greedy`.
* PAL's sub-queries live with the PAL scorer (``viewal.scoring.scorers.pal.PALSelector``).
* :class:`RandomShareSelector` — any of the above for ``1 − share`` of the budget, then random regions for
  the rest (:func:`select_random_share`): uncertainty picks plus an exploration share.

Whole-image selection is the same machinery with one region per frame (region map all zeros,
:func:`whole_image_regions`); the overlap table of all-zero maps is a frame-level overlap.

Overlaps come as a sparse *symmetric* boolean adjacency over global ids (``scipy.sparse.csr_matrix``),
built from a coverage table's rows (``t_frame, t_sp, s_frame, s_sp, coverage``) by
:func:`overlap_adjacency`; selection never depends on the kernel's own table class.

Budget accounting: a region's cost is its pixel count; selection stops as soon as the selected
pixels reach ``budget_pixels``, so it is never over budget by more than one region. Ties are broken
deterministically (lower global id first; the anchor region ``r`` wins VD ties among its candidates).

How a loop uses it (per cycle; the adjacency can be built once per run when the pool's frames stay the
same, since labelled regions are excluded through ``RegionPool.available``, not by rebuilding)::

    pools, tables = [], []
    for scene, frames in pool_frames_by_scene:                 # unlabelled-pool frames of each scene
        sp = region maps (N, H, W)                             # superpixels, or whole_image_regions(...)
        inputs = build_scene_inputs(frames, sp, scorer.needs, **compute_needs(scorer.needs, ctx), rng=...)
        s = scorer(inputs)
        pools.append(build_pool(scene, fids, sp, s.pixel, s.view, labelled=ledger masks (N, H, W),
                                features=scorer.region_features(inputs)))
        tables.append((scene, fids, viewal.kernels.superpixel_overlap(sp, depths, Ks, poses)))
    pool = concat_pools(pools)
    context = SelectionContext(adjacency=lambda: overlap_adjacency(pool, tables), rng=...)
    sel = scorer.selector(dedup=False).select(pool, budget_pixels, context)
    queries = queries_from_selection(pool, sel, regions_of=lambda f: region map of pool frame f, cycle=c)
"""
from __future__ import annotations

from viewal.selection.overlap import (
    OVERLAP_THRESHOLD,
    adjacency_from_edges,
    empty_adjacency,
    overlap_adjacency,
    overlap_edges,
)
from viewal.selection.pool import (
    RegionPool,
    RegionQuery,
    Selection,
    build_pool,
    concat_pools,
    labelled_regions,
    pool_frames,
    queries_from_selection,
    region_sizes,
    whole_image_regions,
)
from viewal.selection.rules import (
    kcenter_greedy,
    region_features,
    select_greedy,
    select_kcenter,
    select_random_share,
    select_viewal,
)
from viewal.selection.selectors import (
    GreedySelector,
    KCenterSelector,
    RandomShareSelector,
    SelectionContext,
    Selector,
    ViewALSelector,
    with_random_share,
)

__all__ = [
    "RegionQuery", "RegionPool", "Selection", "OVERLAP_THRESHOLD", "whole_image_regions", "region_sizes",
    "pool_frames", "build_pool", "concat_pools", "labelled_regions", "overlap_edges", "adjacency_from_edges",
    "overlap_adjacency", "empty_adjacency", "select_viewal", "select_greedy", "select_random_share",
    "kcenter_greedy", "region_features", "select_kcenter", "queries_from_selection",
    "SelectionContext", "Selector", "GreedySelector", "ViewALSelector", "KCenterSelector",
    "RandomShareSelector", "with_random_share",
]
