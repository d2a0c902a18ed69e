"""Scorers: per-pixel maths on hand-built distributions, registry, random scorer, CEAL pseudo-labels,
ViewAL wiring, and the no-ground-truth-leak guarantee."""
import math
from pathlib import Path

import numpy as np
import pytest

import viewal.scoring.scorers as scorers
from viewal.datasets.base import Frame
from viewal.datasets.canonical import read_canonical, write_frame, write_meta, write_scene_intrinsics
from viewal.scoring.scorers import SceneInputs, build_scene_inputs
from viewal.scoring.scorers.baselines import (
    bald_map,
    ceal_pseudo_labels,
    ceal_threshold,
    confidence_map,
    entropy_map,
    margin_map,
    mc_entropy_map,
)

ALL = ["bald", "ceal", "confidence", "coreset", "entropy", "margin", "mc_entropy", "random", "view_entropy"]


def pix(*p, h=2, w=3):
    """(C, H, W) map with the same distribution ``p`` at every pixel."""
    return np.broadcast_to(np.asarray(p, float)[:, None, None], (len(p), h, w)).copy()


def kernel_available() -> bool:
    import viewal.kernels as k

    return hasattr(k, "view_entropy_divergence")


# ---------------------------------------------------------------------------------------------- maths

@pytest.mark.parametrize("C", [2, 5, 40])
def test_entropy_uniform_is_log_c_and_one_hot_is_zero(C):
    np.testing.assert_allclose(entropy_map(pix(*([1 / C] * C))), math.log(C), rtol=1e-6)
    np.testing.assert_allclose(entropy_map(pix(*([1.0] + [0.0] * (C - 1)))), 0.0, atol=1e-9)


def test_margin_and_confidence_known_values():
    p = pix(0.2, 0.5, 0.3)
    np.testing.assert_allclose(margin_map(p), 1 - (0.5 - 0.3), rtol=1e-6)
    np.testing.assert_allclose(confidence_map(p), 0.5, rtol=1e-6)
    np.testing.assert_allclose(margin_map(pix(1.0, 0.0, 0.0)), 0.0, atol=1e-7)
    np.testing.assert_allclose(margin_map(pix(0.5, 0.5)), 1.0, atol=1e-7)
    np.testing.assert_allclose(entropy_map(p), -(0.2 * np.log(0.2) + 0.5 * np.log(0.5) + 0.3 * np.log(0.3)), rtol=1e-6)


def test_batched_shapes():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(3, 5, 6)).transpose(0, 3, 1, 2)  # (N, C, H, W)
    for fn in (entropy_map, margin_map, confidence_map):
        out = fn(p)
        assert out.shape == (3, 5, 6) and out.dtype == np.float32
        np.testing.assert_allclose(out[1], fn(p[1]), rtol=1e-6)
    mc = rng.dirichlet(np.ones(4), size=(7, 3, 5, 6)).transpose(0, 1, 4, 2, 3)  # (T, N, C, H, W)
    assert bald_map(mc).shape == (3, 5, 6) and mc_entropy_map(mc).shape == (3, 5, 6)
    assert (bald_map(mc) >= 0).all()
    np.testing.assert_allclose(mc_entropy_map(mc), entropy_map(mc.mean(0)), rtol=1e-6)


def test_bald_known_values():
    # two passes, each certain but of different classes: mean is uniform over 2 -> H = log 2, mean H = 0
    mc = np.stack([pix(1.0, 0.0), pix(0.0, 1.0)])
    np.testing.assert_allclose(bald_map(mc), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(mc_entropy_map(mc), math.log(2), rtol=1e-6)
    # identical passes: no disagreement -> BALD 0 while the entropy is high
    same = np.stack([pix(0.5, 0.5)] * 4)
    np.testing.assert_allclose(bald_map(same), 0.0, atol=1e-7)
    np.testing.assert_allclose(mc_entropy_map(same), math.log(2), rtol=1e-6)


def test_ceal_threshold_tightens_and_pseudo_labels():
    assert ceal_threshold(0) > ceal_threshold(3) > ceal_threshold(6) >= 0 == ceal_threshold(100)
    p = np.zeros((3, 1, 3))
    p[:, 0, 0] = [0.999, 0.0005, 0.0005]   # very confident: entropy ~0.009
    p[:, 0, 1] = [0.004, 0.995, 0.001]     # confident: entropy ~0.035
    p[:, 0, 2] = [0.4, 0.3, 0.3]           # uncertain
    lab0, m0 = ceal_pseudo_labels(p, 0)
    assert lab0.tolist() == [[0, 1, 255]] and m0.tolist() == [[True, True, False]]
    lab5, m5 = ceal_pseudo_labels(p, 5)    # threshold 0.025: only the first pixel stays
    assert lab5.tolist() == [[0, 255, 255]]
    lab, m = ceal_pseudo_labels(p, 0, exclude=np.array([[True, False, False]]))
    assert lab.tolist() == [[255, 1, 255]]
    sc = scorers.get("ceal", delta0=0.02, decay=0.0)
    assert sc.pseudo_labels(p, 9)[0].tolist() == [[0, 255, 255]]


# ---------------------------------------------------------------------------------------------- scorer objects

def test_registry_lists_all_scorers_and_needs():
    assert set(ALL) <= set(scorers.names())
    assert scorers.get("view_entropy").needs == {"probs", "views"}
    assert scorers.get("view_entropy").selection == "viewal"
    assert scorers.get("coreset").selection == "kcenter" and scorers.get("coreset").needs == {"features"}
    assert scorers.get("bald").needs == {"mc_probs"} and scorers.get("random").needs == frozenset()
    with pytest.raises(ValueError, match="available"):
        scorers.get("nope")


def test_random_scorer_constant_per_region_and_seeded():
    sp = np.zeros((2, 4, 4), np.int32)
    sp[:, :, 2:] = 1
    sp[1, 3, :] = 2
    a = scorers.get("random")(SceneInputs("s", ["0", "1"], sp, rng=np.random.default_rng(4))).pixel
    b = scorers.get("random")(SceneInputs("s", ["0", "1"], sp, rng=np.random.default_rng(4))).pixel
    c = scorers.get("random")(SceneInputs("s", ["0", "1"], sp, rng=np.random.default_rng(5))).pixel
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for i in range(2):
        for r in np.unique(sp[i]):
            assert np.unique(a[i][sp[i] == r]).size == 1


def test_scorer_call_checks_shape_and_guards_nan():
    sp = np.zeros((1, 2, 3), np.int32)
    probs = np.full((1, 2, 2, 3), 0.5, np.float32)
    probs[0, :, 0, 0] = np.nan
    out = scorers.get("entropy")(SceneInputs("s", ["0"], sp, probs=probs))
    assert out.pixel[0, 0, 0] == -np.inf and np.isfinite(out.pixel[0, 1, 1])
    with pytest.raises(ValueError, match="shape"):
        scorers.get("entropy")(SceneInputs("s", ["0"], np.zeros((1, 3, 3), np.int32), probs=probs))


def test_coreset_region_features():
    sp = np.zeros((2, 2, 2), np.int32)
    sp[0, 1] = 1
    sc = scorers.get("coreset")
    inp = SceneInputs("s", ["0", "1"], sp, features=np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    assert np.array_equal(sc(inp).pixel, np.zeros((2, 2, 2)))
    np.testing.assert_allclose(sc.region_features(inp), [[1, 2], [1, 2], [3, 4]])


def test_view_entropy_scorer_wiring(monkeypatch):
    import viewal.kernels as kernels

    seen = {}

    def fake_kernel(probs, depths, Ks, world_T_cams, **kw):
        seen.update(kw, shapes=(probs.shape, depths.shape, Ks.shape, world_T_cams.shape))
        return np.full(depths.shape, 2.0, np.float32), np.full(depths.shape, 3.0, np.float32)

    monkeypatch.setattr(kernels, "view_entropy_divergence", fake_kernel, raising=False)
    N, C, H, W = 2, 3, 4, 5
    inp = SceneInputs("s", ["0", "1"], np.zeros((N, H, W), np.int32), probs=np.full((N, C, H, W), 1 / C, np.float32),
                      depths=np.ones((N, H, W), np.float32), Ks=np.stack([np.eye(3)] * N),
                      world_T_cams=np.stack([np.eye(4)] * N))
    from viewal.kernels import DepthTest

    test = DepthTest(mode="viewal", world_distance=0.25, backend="numpy")
    out = scorers.get("view_entropy", depth_test=test)(inp)
    assert seen["depth_test"] is test                      # the run's settings, passed unchanged
    assert set(seen) == {"depth_test", "shapes"}            # and nothing else
    assert seen["shapes"] == ((N, C, H, W), (N, H, W), (N, 3, 3), (N, 4, 4))
    assert (out.pixel == 2.0).all() and (out.view == 3.0).all()
    with pytest.raises(ValueError, match="missing"):
        scorers.get("view_entropy")(SceneInputs("s", ["0"], np.zeros((1, H, W), np.int32)))
    # the ablation options stay out of the kernel: VD ranks the regions; greedy selection, dedup as asked
    seen.clear()
    vd_only = scorers.get("view_entropy", rank="vd", selection="greedy")
    out = vd_only(inp)
    assert "rank" not in seen and "selection" not in seen
    assert (out.pixel == 3.0).all() and (out.view == 3.0).all()
    from viewal.selection import GreedySelector, ViewALSelector

    assert type(scorers.get("view_entropy").selector(dedup=False)) is ViewALSelector
    assert vd_only.selector(dedup=True).dedup is True and vd_only.selector(dedup=False).dedup is False
    assert type(vd_only.selector()) is GreedySelector
    with pytest.raises(ValueError, match="'rank' must be one of"):
        scorers.get("view_entropy", rank="kl")
    # the options that carried the depth test before it was the run's are refused, naming the flags
    with pytest.raises(ValueError, match=r"'mode', 'backend' set the run's depth test.*mode -> --depth-test, "
                                         r"backend -> --kernel-backend"):
        scorers.get("view_entropy", mode="viewal", backend="numpy")
    with pytest.raises(TypeError, match="depth_test must be a viewal.kernels.DepthTest"):
        scorers.get("view_entropy", depth_test={"mode": "viewal"})


@pytest.mark.skipif(not kernel_available(), reason="viewal.kernels.view_entropy_divergence not built yet")
def test_view_entropy_real_kernel_consistent_views_have_zero_divergence():
    # two cameras at the same pose looking at a plane: every pixel sees itself in the other view
    N, C, H, W = 2, 3, 12, 16
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
    depths = np.full((N, H, W), 2.0, np.float32)
    poses = np.stack([np.eye(4)] * N)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(C), size=(H, W)).transpose(2, 0, 1).astype(np.float32)
    inp = SceneInputs("s", ["0", "1"], np.zeros((N, H, W), np.int32), probs=np.stack([p, p]), depths=depths,
                      Ks=np.stack([K, K]), world_T_cams=poses)
    same = scorers.get("view_entropy")(inp)
    np.testing.assert_allclose(same.view, 0.0, atol=1e-5)
    q = rng.dirichlet(np.ones(C), size=(H, W)).transpose(2, 0, 1).astype(np.float32)
    inp.probs = np.stack([p, q])
    diff = scorers.get("view_entropy")(inp)
    assert diff.view.mean() > 0.01


# ---------------------------------------------------------------------------------------------- no GT leak

def _write_dataset(root: Path, labels_fn) -> None:
    rng = np.random.default_rng(0)
    H, W = 12, 16
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
    write_scene_intrinsics(root, "scene0", K)
    for i in range(3):
        T = np.eye(4)
        T[0, 3] = 0.05 * i
        write_frame(root, "scene0", f"{i:03d}", rgb=rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                    depth=np.full((H, W), 1.5 + 0.1 * i, np.float32), world_T_cam=T, labels=labels_fn(i, H, W),
                    color_ext=".png")
    write_meta(root, class_names=["a", "b", "c"], splits={"train": ["scene0"], "val": [], "test": []},
               height=H, width=W)


def test_scores_identical_when_labels_are_garbage(tmp_path):
    true_root, junk_root = tmp_path / "true", tmp_path / "junk"
    _write_dataset(true_root, lambda i, h, w: (np.arange(h * w).reshape(h, w) // 40) % 3)
    junk = np.random.default_rng(99)
    _write_dataset(junk_root, lambda i, h, w: np.where(junk.random((h, w)) < 0.5, 255, junk.integers(0, 3, (h, w))))
    ds_true, ds_junk = read_canonical(true_root), read_canonical(junk_root)
    f_true, f_junk = ds_true.frames("scene0"), ds_junk.frames("scene0")
    assert not np.array_equal(f_true[0].labels, f_junk[0].labels)   # the corruption is real

    rng = np.random.default_rng(1)
    N, C, H, W, T = 3, 3, 12, 16, 4
    mc = rng.dirichlet(np.ones(C), size=(T, N, H, W)).transpose(0, 1, 4, 2, 3).astype(np.float32)
    model_out = {"probs": mc.mean(0), "mc_probs": mc, "features": rng.random((N, 8)).astype(np.float32)}
    sp = (np.arange(H)[:, None] // 6 * 4 + np.arange(W)[None, :] // 4).astype(np.int32)
    sp = np.stack([sp] * N)
    names = [n for n in ALL if n != "view_entropy" or kernel_available()]
    for name in names:
        sc = scorers.get(name)
        outs = []
        for frames in (f_true, f_junk):
            inp = build_scene_inputs(frames, sp, sc.needs, rng=np.random.default_rng(7), **model_out)
            outs.append(sc(inp))
        assert np.array_equal(outs[0].pixel, outs[1].pixel), name
        assert (outs[0].view is None) == (outs[1].view is None), name
        if outs[0].view is not None:
            assert np.array_equal(outs[0].view, outs[1].view), name


def test_build_scene_inputs_never_reads_labels():
    def boom():
        raise AssertionError("ground-truth labels were read")

    H, W = 4, 5
    frames = [Frame("s", str(i), rgb=np.zeros((H, W, 3), np.uint8), depth=np.ones((H, W), np.float32),
                    K=np.eye(3), world_T_cam=np.eye(4), labels=boom) for i in range(2)]
    probs = np.full((2, 3, H, W), 1 / 3, np.float32)
    inp = build_scene_inputs(frames, np.zeros((2, H, W), np.int32), {"probs", "views"}, probs=probs)
    assert inp.depths.shape == (2, H, W) and inp.Ks.shape == (2, 3, 3) and inp.world_T_cams.shape == (2, 4, 4)
    assert inp.mc_probs is None and inp.features is None
    assert not hasattr(inp, "labels")
    np.testing.assert_allclose(scorers.get("entropy")(inp).pixel, math.log(3), rtol=1e-5)
    with pytest.raises(ValueError, match="needs 'mc_probs'"):
        build_scene_inputs(frames, np.zeros((2, H, W), np.int32), {"mc_probs"})
    with pytest.raises(ValueError, match="several scenes"):
        build_scene_inputs(frames + [Frame("t", "0", rgb=None, depth=None, K=None, world_T_cam=None)],
                           np.zeros((3, H, W), np.int32), set())
