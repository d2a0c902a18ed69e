"""Selection: ViewAL's rule with cross-view dedup on hand-built overlap tables, greedy, k-centre, budget, ties."""
import numpy as np
import pytest

from twins import select_viewal_naive
from viewal.selection import (
    RegionPool,
    adjacency_from_edges,
    build_pool,
    concat_pools,
    empty_adjacency,
    kcenter_greedy,
    labelled_regions,
    overlap_adjacency,
    overlap_edges,
    pool_frames,
    queries_from_selection,
    region_features,
    select_greedy,
    select_kcenter,
    select_random_share,
    select_viewal,
    whole_image_regions,
)


def make_pool(score, view, sizes, available=None, n_frames=1):
    score = np.asarray(score, float)
    R = len(score)
    offs = np.linspace(0, R, n_frames + 1).astype(np.int64)
    return RegionPool(scene_ids=["s"] * n_frames, frame_ids=[str(i) for i in range(n_frames)], offsets=offs,
                      score=score, view=np.asarray(view, float), sizes=np.asarray(sizes, np.int64),
                      available=np.ones(R, bool) if available is None else np.asarray(available, bool))


def adj_from_cov(cov, n, thr=0.25):
    keys = [k for k, c in cov.items() if c > thr]
    rows = np.array([k[0] for k in keys], np.int64)
    cols = np.array([k[1] for k in keys], np.int64)
    return adjacency_from_edges(rows, cols, n)


def two_region_frames(n_frames=3, h=4, w=4):
    """Frames with region 0 = left half (the object), region 1 = right half (background)."""
    reg = np.zeros((n_frames, h, w), np.int32)
    reg[:, :, w // 2:] = 1
    return reg


# ---------------------------------------------------------------------------------------------- ViewAL

def test_three_views_of_one_object_most_divergent_view_wins_and_others_flagged():
    # global ids: frame f region r -> 2f + r; regions 0 (object) of all frames see the same 3D object
    reg = two_region_frames()
    ve = np.zeros(reg.shape, np.float32)
    vd = np.zeros(reg.shape, np.float32)
    for f, (e_obj, e_bg, d_obj) in enumerate([(0.9, 0.1, 0.2), (0.8, 0.2, 0.7), (0.85, 0.3, 0.4)]):
        ve[f][reg[f] == 0], ve[f][reg[f] == 1] = e_obj, e_bg
        vd[f][reg[f] == 0] = d_obj
    pool = build_pool("s", ["0", "1", "2"], reg, ve, vd)
    np.testing.assert_allclose(pool.score, [0.9, 0.1, 0.8, 0.2, 0.85, 0.3], rtol=1e-6)
    # kernel-style table (frame, sp) pairs incl. self rows; object regions overlap at 0.6 both ways
    rows = [(t, 0, s, 0, 0.6) for t in range(3) for s in range(3) if s != t]
    rows += [(f, r, f, r, 1.0) for f in range(3) for r in range(2)]   # self rows
    rows += [(0, 1, 1, 1, 0.2)]                                          # background: below threshold
    fields = ["t_frame", "t_sp", "s_frame", "s_sp", "coverage"]
    table = {k: np.array([r[i] for r in rows]) for i, k in enumerate(fields)}
    A = overlap_adjacency(pool, [("s", ["0", "1", "2"], table)])
    assert A.nnz == 6 and (A != A.T).nnz == 0

    sel = select_viewal(pool, A, budget_pixels=8)       # one region of 8 pixels
    assert sel.ids.tolist() == [2]                       # frame 1's object view (highest VD), not frame 0's
    assert sel.anchors.tolist() == [0]                   # ... asked on the turn of the highest-VE region
    assert sel.pixels == 8

    sel = select_viewal(pool, A, budget_pixels=10 ** 6)  # everything selectable
    assert sel.ids.tolist() == [2, 5, 3, 1]              # object once, then backgrounds by VE
    assert not {0, 4} & set(sel.ids.tolist())            # the other views of the object: flagged, never chosen
    assert sel.pixels == 32


def test_view_divergence_compared_as_float_not_int():
    # VD 0.3 (anchor) vs 0.7 (other view): casting to int32 would make both 0 and keep the anchor
    pool = make_pool(score=[0.9, 0.5], view=[0.3, 0.7], sizes=[10, 10])
    A = adj_from_cov({(0, 1): 0.5}, 2)
    assert select_viewal(pool, A, 10).ids.tolist() == [1]


def test_overlap_either_direction_and_strict_threshold():
    # (0,1): 0.1 one way, 0.3 the other -> neighbours; (0,2): exactly 0.25 -> not neighbours
    cov = {(0, 1): 0.1, (1, 0): 0.3, (0, 2): 0.25, (2, 0): 0.25}
    rows, cols = overlap_edges(np.array([0, 0, 0, 0]), np.array([0, 1, 0, 2]), np.array([0, 0, 0, 0]),
                               np.array([1, 0, 2, 0]), np.array([0.1, 0.3, 0.25, 0.25]), frame_offsets=np.array([0]))
    A = adjacency_from_edges(rows, cols, 3)
    assert A[0, 1] and A[1, 0] and not A[0, 2] and not A[2, 0]
    pool = make_pool(score=[0.9, 0.1, 0.2], view=[0.0, 1.0, 1.0], sizes=[5, 5, 5])
    assert select_viewal(pool, A, 15).ids.tolist() == [1, 2]
    assert select_viewal_naive(pool.score, pool.view, pool.sizes, pool.available, cov, 15) == [1, 2]


def test_winner_neighbours_flagged_even_if_not_candidates():
    # chain A(0) - B(1) - C(2): A and C do not overlap. Anchor A, winner B (highest VD):
    # C overlaps the winner -> flagged although it has the second-highest VE.
    pool = make_pool(score=[0.9, 0.1, 0.8, 0.5], view=[0.1, 0.9, 0.0, 0.0], sizes=[4, 4, 4, 4])
    A = adj_from_cov({(0, 1): 0.5, (1, 2): 0.5}, 4)
    sel = select_viewal(pool, A, 8)
    assert sel.ids.tolist() == [1, 3]


def test_flagged_candidates_are_not_chosen_as_winner():
    # region 1 is flagged by the first pick (neighbour of winner 2); later anchor 3 overlaps 1 with a huge VD,
    # but 1 is flagged, so anchor 3 keeps itself.
    pool = make_pool(score=[0.9, 0.0, 0.1, 0.8], view=[0.0, 5.0, 1.0, 0.0], sizes=[1, 1, 1, 1])
    A = adj_from_cov({(0, 2): 0.9, (2, 1): 0.9, (3, 1): 0.9}, 4)
    # first turn: anchor 0, candidates {0, 2}: winner 2 -> flag 0, 2 and winner's neighbours {0, 1}
    sel = select_viewal(pool, A, 2)
    assert sel.ids.tolist() == [2, 3]


def test_labelled_regions_excluded():
    pool = make_pool(score=[0.9, 0.8, 0.7], view=[0, 9.0, 0], sizes=[1, 1, 1], available=[True, False, True])
    A = adj_from_cov({(0, 1): 0.9}, 3)
    sel = select_viewal(pool, A, 100)
    assert sel.ids.tolist() == [0, 2]  # labelled 1 is neither a candidate nor selected


def test_budget_accounting_never_over_by_more_than_one_region():
    rng = np.random.default_rng(3)
    for _trial in range(20):
        R = 300
        sizes = rng.integers(1, 50, R)
        pool = make_pool(rng.random(R), rng.random(R), sizes)
        A = adj_from_cov({(int(a), int(b)): 1.0 for a, b in rng.integers(0, R, (400, 2))}, R)
        budget = int(rng.integers(1, 2000))
        for sel in (select_viewal(pool, A, budget), select_greedy(pool, budget), select_greedy(pool, budget, A)):
            assert sel.pixels == sizes[sel.ids].sum()
            assert len(set(sel.ids.tolist())) == len(sel)
            if sel.pixels >= budget:
                assert sel.pixels - sizes[sel.ids[-1]] < budget      # the last region crossed the budget
            # below the budget only when the pool ran out
    assert len(select_viewal(pool, A, 0)) == 0


def test_fast_loop_matches_plain_python_twin():
    rng = np.random.default_rng(0)
    for _trial in range(15):
        R = int(rng.integers(5, 200))
        score = rng.random(R).round(1)         # rounding: many ties, exercises tie-breaking
        view = rng.random(R).round(1)
        score[rng.random(R) < 0.05] = -np.inf
        sizes = rng.integers(1, 20, R)
        avail = rng.random(R) > 0.1
        cov = {(int(a), int(b)): float(c) for a, b, c in zip(rng.integers(0, R, 3 * R), rng.integers(0, R, 3 * R),
                                                                rng.random(3 * R))}
        A = adj_from_cov(cov, R)
        budget = int(rng.integers(1, sizes.sum() + 10))
        pool = make_pool(score, view, sizes, avail)
        assert select_viewal(pool, A, budget).ids.tolist() == \
            select_viewal_naive(score, view, sizes, avail, cov, budget)
        assert select_greedy(pool, budget, A).ids.tolist() == \
            select_viewal_naive(score, view, sizes, avail, cov, budget, choose_view=False)


def test_greedy_without_dedup_and_deterministic_ties():
    pool = make_pool(score=[0.5, 0.9, 0.5, 0.9, np.nan], view=[0] * 5, sizes=[1] * 5)
    sel = select_greedy(pool, 10)
    assert sel.ids.tolist() == [1, 3, 0, 2, 4]      # ties by lower id, NaN last
    sel2 = select_greedy(pool, 10)
    assert sel.ids.tolist() == sel2.ids.tolist()
    # dedup: 1 and 3 overlap -> 3 skipped
    A = adj_from_cov({(1, 3): 0.4}, 5)
    assert select_greedy(pool, 10, A).ids.tolist() == [1, 0, 2, 4]


def test_determinism_same_inputs_same_queries():
    rng = np.random.default_rng(11)
    reg = rng.integers(0, 6, (4, 8, 8)).astype(np.int32)
    reg[:, 0, :6] = np.arange(6)  # every id present
    pix = rng.random(reg.shape).astype(np.float32)
    out = []
    for _ in range(2):
        pool = build_pool("s", list("abcd"), reg, pix, pix[::-1].copy())
        A = adjacency_from_edges(np.array([0, 7, 13]), np.array([6, 14, 20]), pool.n_regions)
        sel = select_viewal(pool, A, 60)
        qs = queries_from_selection(pool, sel, reg)
        out.append([(q.frame_id, q.region_id, q.mask.tobytes()) for q in qs])
    assert out[0] == out[1]


# ---------------------------------------------------------------------------------------------- pooling, converter

def test_pool_frames_means_sizes_offsets():
    reg = np.array([[[0, 0, 1], [2, 2, 1]], [[0, 1, 1], [0, 1, 1]]], np.int32)
    pix = np.array([[[1, 3, 5], [2, 4, 7]], [[1, 2, 3], [4, 5, 6]]], np.float32)
    score, sizes, offs = pool_frames(pix, reg)
    assert offs.tolist() == [0, 3, 5]
    assert sizes.tolist() == [2, 2, 2, 2, 4]
    np.testing.assert_allclose(score, [2, 6, 3, 2.5, 4])
    pix[0, 0, 0] = -np.inf
    assert pool_frames(pix, reg)[0][0] == -np.inf


def test_labelled_regions_and_build_pool_availability():
    reg = np.array([[[0, 0, 1, 1]]], np.int32)
    lab = np.array([[[True, False, False, False]]])
    assert labelled_regions(reg, lab).tolist() == [True, False]            # any labelled pixel (default)
    assert labelled_regions(reg, lab, min_fraction=0.6).tolist() == [False, False]
    assert labelled_regions(reg, lab, min_fraction=0.5).tolist() == [True, False]
    lab3 = np.array([[[False, False, False, True]]])
    assert labelled_regions(reg, lab3).tolist() == [False, True]
    assert labelled_regions(reg, lab3, min_fraction=0.75).tolist() == [False, False]
    pool = build_pool("s", ["f"], reg, np.ones(reg.shape), labelled=lab)
    assert pool.available.tolist() == [False, True]


def test_concat_pools_and_frame_offsets_map_tables_across_scenes():
    reg = two_region_frames(2)
    p1 = build_pool("a", ["0", "1"], reg, np.ones(reg.shape))
    p2 = build_pool("b", ["0", "1"], reg, np.zeros(reg.shape))
    pool = concat_pools([p1, p2])
    assert pool.n_regions == 8 and pool.offsets.tolist() == [0, 2, 4, 6, 8]
    assert pool.frame_offsets("b", ["1", "x", "0"]).tolist() == [6, -1, 4]
    assert pool.frame_of([0, 3, 4, 7]).tolist() == [0, 1, 2, 3]
    assert pool.local_id([0, 3, 4, 7]).tolist() == [0, 1, 0, 1]
    # table of scene b computed on frames ["1", "x", "0"]; rows touching "x" (index 1) are dropped
    table = (np.array([0, 1, 2]), np.array([1, 0, 0]), np.array([2, 0, 2]), np.array([0, 0, 1]),
             np.array([0.9, 0.9, 0.9]))
    A = overlap_adjacency(pool, [("b", ["1", "x", "0"], table)])
    assert A.nnz == 4 and A[7, 4] and A[4, 7] and A[4, 5] and A[5, 4]
    bad = (np.array([0]), np.array([5]), np.array([0]), np.array([0]), np.array([0.9]))
    with pytest.raises(ValueError, match="beyond the region count"):
        overlap_adjacency(pool, [("b", ["1"], bad)])


def test_whole_image_selection_one_region_per_frame():
    rng = np.random.default_rng(0)
    pix = rng.random((5, 6, 7)).astype(np.float32)
    reg = whole_image_regions(5, 6, 7)
    pool = build_pool("s", list("abcde"), reg, pix)
    sel = select_greedy(pool, 42 * 2)
    assert len(sel) == 2 and sel.pixels == 84
    assert sel.ids.tolist() == np.argsort(-pix.mean(axis=(1, 2)))[:2].tolist()
    q = queries_from_selection(pool, sel, reg)
    assert all(x.mask.all() and x.region_id == 0 for x in q)


# ---------------------------------------------------------------------------------------------- k-centre

def test_kcenter_greedy_known_order_and_budget():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    ids, d = kcenter_greedy(X, np.ones(4), budget_pixels=2, centres=np.array([[0.0]]))
    assert ids.tolist() == [3, 1]          # farthest from the centre, then tie (1 and 10 both at 1) -> lower id
    np.testing.assert_allclose(d, [11, 1])
    ids, _ = kcenter_greedy(X, np.ones(4), budget_pixels=10, available=np.array([True, True, False, True]))
    assert sorted(ids.tolist()) == [0, 1, 3]
    pool = make_pool([0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1])
    sel = select_kcenter(pool, 2, X, centres=np.array([[0.0]]))
    assert sel.ids.tolist() == [3, 1] and sel.pixels == 2


def test_region_features_masked_pooling():
    reg = np.array([[[0, 0, 1, 1], [0, 0, 1, 1]]], np.int32)
    fmap = np.zeros((1, 2, 2, 4), np.float32)
    fmap[0, 0, :, :2], fmap[0, 0, :, 2:] = 1.0, 3.0
    fmap[0, 1] = 5.0
    np.testing.assert_allclose(region_features(fmap, reg), [[1, 5], [3, 5]])
    np.testing.assert_allclose(region_features(np.array([[2.0, 4.0]]), reg), [[2, 4], [2, 4]])


def test_selectors_name_what_they_miss():
    from viewal.scoring.scorers.pal import PALSelector
    from viewal.selection import KCenterSelector, SelectionContext, ViewALSelector

    pool = make_pool([1.0], [1.0], [1])
    with pytest.raises(ValueError, match="overlap adjacency"):
        ViewALSelector().select(pool, 1, SelectionContext())
    with pytest.raises(ValueError, match="features"):
        KCenterSelector().select(pool, 1, SelectionContext())
    with pytest.raises(ValueError, match="shape"):
        select_viewal(pool, empty_adjacency(3), 1)
    with pytest.raises(ValueError, match="2 rows, pool has 1"):
        select_kcenter(pool, 1, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="SelectionContext.network"):
        PALSelector().select(pool, 1, SelectionContext())


# ---------------------------------------------------------------------------------------------- with the real kernels

def _kernels():
    import viewal.kernels as k

    return k if hasattr(k, "superpixel_overlap") and hasattr(k, "view_entropy_divergence") else None


@pytest.mark.skipif(_kernels() is None, reason="viewal.kernels not built yet")
def test_end_to_end_with_kernel_overlap_table():
    """Three identical views of a plane (same pose): superpixel r of every frame is the same 3D region,
    so ViewAL asks each 3D region once, in the view with the highest VD."""
    import viewal.scoring.scorers as scorers
    from viewal.scoring.scorers import SceneInputs

    k = _kernels()
    DepthTest = k.DepthTest
    N, C, H, W = 3, 3, 12, 16
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
    depths = np.full((N, H, W), 2.0, np.float32)
    poses = np.stack([np.eye(4)] * N)
    sp = np.stack([(np.arange(H)[:, None] // 6 * 2 + np.arange(W)[None, :] // 8).astype(np.int32)] * N)  # 4 regions
    table = k.superpixel_overlap(sp, depths, np.stack([K] * N), poses, depth_test=DepthTest(backend="numpy"))
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C), size=(N, H, W)).transpose(0, 3, 1, 2).astype(np.float32)
    inp = SceneInputs("s", ["0", "1", "2"], sp, probs=probs, depths=depths, Ks=np.stack([K] * N), world_T_cams=poses)
    sc = scorers.get("view_entropy", depth_test=DepthTest(backend="numpy"))(inp)
    pool = build_pool("s", ["0", "1", "2"], sp, sc.pixel, sc.view)
    A = overlap_adjacency(pool, [("s", ["0", "1", "2"], table)])
    assert A.nnz == 4 * 6                          # each region overlaps its 2 copies in the other frames
    sel = select_viewal(pool, A, budget_pixels=10 ** 6)
    assert sorted(pool.local_id(sel.ids).tolist()) == [0, 1, 2, 3]    # every 3D region asked exactly once
    for g in sel.ids:                              # ... in its most divergent view
        copies = pool.offsets[:-1] + pool.local_id(g)
        assert pool.view[g] == pool.view[copies].max()


# ------------------------------------------------------------------------------------------ random share

def test_random_share_keeps_the_scorers_picks_then_draws_disjoint_random_regions():
    from viewal.selection import GreedySelector, RandomShareSelector, SelectionContext

    rng = np.random.default_rng(5)
    R = 400
    sizes = rng.integers(1, 30, R)
    avail = rng.random(R) > 0.2
    pool = make_pool(rng.random(R), rng.random(R), sizes, avail)
    budget = int(sizes[avail].sum() // 4)

    def mixed(stream):
        return RandomShareSelector(GreedySelector(), 0.5).select(pool, budget,
                                                                 SelectionContext(rng=np.random.default_rng(stream)))

    sel = mixed(1)
    top = select_greedy(pool, round(0.5 * budget))
    k = len(top)
    assert sel.ids[:k].tolist() == top.ids.tolist()           # the scorer's share comes first, as it alone picks
    rest = sel.ids[k:]
    assert len(rest) > 0 and avail[rest].all() and not set(rest.tolist()) & set(top.ids.tolist())
    assert len(set(sel.ids.tolist())) == len(sel) and sel.pixels == sizes[sel.ids].sum()
    assert budget <= sel.pixels and sel.pixels - sizes[sel.ids[-1]] < budget   # over by at most one region
    # the random share is not the scorer's next picks: its regions' scores are spread like the pool's
    below = pool.score[avail & ~np.isin(np.arange(R), top.ids)]
    assert np.median(pool.score[rest]) < np.quantile(below, 0.75)
    assert (sel.anchors[k:] == rest).all() and np.allclose(sel.score, pool.score[sel.ids])
    # the generator decides the random share: same stream, same picks; another stream, other picks
    again, other = mixed(1), mixed(2)
    assert again.ids.tolist() == sel.ids.tolist() and other.ids[k:].tolist() != rest.tolist()
    assert other.ids[:k].tolist() == top.ids.tolist()


def test_random_share_with_dedup_never_asks_a_3d_region_the_scorer_asked():
    from viewal.selection import RandomShareSelector, SelectionContext, ViewALSelector

    rng = np.random.default_rng(8)
    R = 120
    sizes = np.ones(R, np.int64)
    pool = make_pool(rng.random(R), rng.random(R), sizes)
    cov = {(int(a), int(b)): 1.0 for a, b in rng.integers(0, R, (150, 2)) if a != b}
    A = adj_from_cov(cov, R)
    A = ((A + A.T) > 0).tocsr()
    sel = RandomShareSelector(ViewALSelector(), 0.5).select(pool, 40, SelectionContext(adjacency=A,
                                                                                       rng=np.random.default_rng(0)))
    first = select_viewal(pool, A, 20)
    k = len(first)
    assert sel.ids[:k].tolist() == first.ids.tolist()
    blocked = set(A[first.ids].indices.tolist()) | set(first.ids.tolist())
    assert not blocked & set(sel.ids[k:].tolist()) and len(sel.ids) > k
    # the same random draw without the scorer's overlaps does pick some of those regions
    loose = select_random_share(pool, first, 40, np.random.default_rng(0))
    assert blocked & set(loose.ids[k:].tolist())


def test_random_share_settings_are_checked():
    from viewal.selection import GreedySelector, RandomShareSelector, SelectionContext, with_random_share

    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="share must be a number in"):
            RandomShareSelector(GreedySelector(), bad)
    pool = make_pool([0.3, 0.2], [0, 0], [1, 1])
    with pytest.raises(ValueError, match="needs a random generator"):
        RandomShareSelector(GreedySelector(), 0.5).select(pool, 2, SelectionContext())
    g = GreedySelector(dedup=True)
    assert with_random_share(g, 0) is g
    assert with_random_share(g, 0.25).needs_overlaps and with_random_share(GreedySelector(), 0.25).share == 0.25
    # share 1: random regions only
    sel = RandomShareSelector(GreedySelector(), 1.0).select(pool, 2, SelectionContext(rng=np.random.default_rng(0)))
    assert sorted(sel.ids.tolist()) == [0, 1]
