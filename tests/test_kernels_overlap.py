"""Superpixel overlap table: reference vs Numba CPU, hand-computed cases, storage, real ScanNet sample."""
from __future__ import annotations

import numpy as np
import pytest

from twins import room_scene
from viewal.kernels import DepthTest, OverlapTable, superpixel_overlap


def grid_superpixels(n: int, h: int, w: int, cell: tuple[int, int] = (6, 8)) -> np.ndarray:
    """(N, H, W) int32 ids of a regular grid of cells, ids row-major from 0."""
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cols = -(-w // cell[1])
    sp = (v // cell[0]) * cols + u // cell[1]
    return np.repeat(sp[None], n, axis=0).astype(np.int32)


def assert_tables_equal(a: OverlapTable, b: OverlapTable, atol: float = 1e-6) -> None:
    for f in ("t_frame", "t_sp", "s_frame", "s_sp"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_allclose(a.coverage, b.coverage, atol=atol)
    np.testing.assert_array_equal(a.n_superpixels, b.n_superpixels)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", ["z", "viewal"])
def test_cpu_matches_reference(seed, mode):
    _, depths, Ks, poses = room_scene(n=5, seed=seed)
    sp = grid_superpixels(5, 24, 32)
    sp[1] = np.random.default_rng(seed).permutation(sp[1].max() + 1)[sp[1]]  # ids not spatially ordered
    ref = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend="numpy"))
    out = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend="cpu"))
    assert_tables_equal(ref, out)
    cross = out.t_frame != out.s_frame
    assert cross.sum() > 10
    assert np.all((out.coverage > 0) & (out.coverage <= 1 + 1e-6))
    self_rows = ~cross
    assert np.all(out.t_sp[self_rows] == out.s_sp[self_rows]) and np.all(out.coverage[self_rows] == 1)
    assert self_rows.sum() == 5 * 16


def test_identical_views_cover_the_valid_fraction():
    _, depths, Ks, poses = room_scene(n=1, seed=2, hole_frac=0.2)
    D2, K2, T2 = (np.concatenate([a, a]) for a in (depths, Ks, poses))
    sp = grid_superpixels(2, 24, 32)
    tab = superpixel_overlap(sp, D2, K2, T2, depth_test=DepthTest(mode="z", backend="cpu"))
    d = tab.as_dict()
    valid = depths[0] > 0
    for r in range(16):
        frac = valid[sp[0] == r].mean()
        assert d.get((1, r, 0, r), 0.0) == pytest.approx(frac, abs=1e-6)
        assert d.get((0, r, 1, r), 0.0) == pytest.approx(frac, abs=1e-6)
    # identical views: a pixel only lands on itself, so no cross pair between different superpixels
    cross = tab.t_frame != tab.s_frame
    assert np.all(tab.t_sp[cross] == tab.s_sp[cross])


def test_all_invalid_depth_gives_only_self_rows():
    _, depths, Ks, poses = room_scene(n=3, seed=3)
    sp = grid_superpixels(3, 24, 32)
    tab = superpixel_overlap(sp, np.zeros_like(depths), Ks, poses, depth_test=DepthTest(backend="cpu"))
    assert len(tab) == 3 * 16 and np.all(tab.t_frame == tab.s_frame) and np.all(tab.coverage == 1)


def test_to_pairs_save_load(tmp_path):
    _, depths, Ks, poses = room_scene(n=3, seed=4)
    sp = grid_superpixels(3, 24, 32)
    sp[2] = np.minimum(sp[2], 9)  # frame 2 has only 10 superpixels
    tab = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(backend="cpu"))
    np.testing.assert_array_equal(tab.n_superpixels, [16, 16, 10])
    np.testing.assert_array_equal(tab.offsets(), [0, 16, 32, 42])
    tg, sg, cov = tab.to_pairs()
    np.testing.assert_array_equal(tg, tab.offsets()[tab.t_frame] + tab.t_sp)
    assert tg.max() < 42 and sg.max() < 42
    tg2, sg2, _ = tab.to_pairs(np.array([100, 116, 132]))
    np.testing.assert_array_equal(tg2, tg + 100)
    A = tab.to_sparse()
    assert A.shape == (42, 42) and A[tg[0], sg[0]] == pytest.approx(cov[0])
    with pytest.raises(ValueError, match="offsets"):
        tab.to_pairs(np.zeros(7))
    path = tmp_path / "sub" / "scene.npz"
    tab.save(path)
    assert_tables_equal(OverlapTable.load(path), tab, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["scene.npz"]  # no temporary left behind
    np.savez(tmp_path / "bad.npz", coverage=np.zeros(3))
    with pytest.raises(ValueError, match="bad.npz"):
        OverlapTable.load(tmp_path / "bad.npz")


def test_bad_superpixels():
    _, depths, Ks, poses = room_scene(n=2, seed=0)
    sp = grid_superpixels(2, 24, 32)
    with pytest.raises(ValueError, match="superpixels"):
        superpixel_overlap(sp[:, :-1], depths, Ks, poses)
    with pytest.raises(ValueError, match="superpixels"):
        superpixel_overlap(sp.astype(np.float32), depths, Ks, poses)
    with pytest.raises(ValueError, match="superpixels"):
        superpixel_overlap(sp - 1, depths, Ks, poses)


def test_real_sample_agrees_with_viewal_table(scannet_sample):
    """ViewAL's own table (its 1 m test, bicubic depth): we must find nearly all of its strong pairs."""
    from viewal.datasets.viewal_original import load_viewal_superpixels, read_viewal_original

    ds = read_viewal_original(scannet_sample)
    sid = "scene0007_00"
    frames = ds.scenes[sid]
    sp = np.stack([load_viewal_superpixels(ds, f) for f in frames])
    D = np.stack([f.depth for f in frames])
    K = np.stack([f.K for f in frames])
    T = np.stack([f.world_T_cam for f in frames])
    ours = superpixel_overlap(sp, D, K, T, depth_test=DepthTest(mode="viewal", backend="cpu")).as_dict()
    z = np.load(scannet_sample / "raw" / "selections" / "coverage_superpixel_table" / f"{sid}.npz")
    assert list(z["frame_names"]) == [f"{f.scene_id}_{f.frame_id}" for f in frames]
    k2i = {int(k): i for i, k in enumerate(z["frame_keys"])}
    theirs = {(k2i[int(a)], int(b), k2i[int(c)], int(d)): float(v) for a, b, c, d, v in
              zip(z["target_frame_key"], z["target_superpixel"], z["source_frame_key"], z["source_superpixel"],
                  z["coverage"]) if a != c}
    strong = [k for k, v in theirs.items() if v > 0.25]
    recall = np.mean([ours.get(k, 0.0) > 0.25 for k in strong])
    diff = np.median([abs(ours.get(k, 0.0) - v) for k, v in theirs.items()])
    assert len(strong) > 500 and recall > 0.95 and diff < 0.01, (recall, diff)
