"""3D label propagation (viewal.kernels.propagate_labels): backends against the NumPy reference, the rules on
hand-made scenes, the depth test shared with the overlap table, and accuracy on real and generated data.

The CUDA backend runs under Numba's simulator in a subprocess (``test_cuda_backend_under_simulator`` reruns this
file with ``NUMBA_ENABLE_CUDASIM=1``; there the ``test_sim_*`` tests run, on tiny scenes).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twins import intrinsics, look_at, raycast_box, room_scene
from viewal.core.geometry import GeometryError
from viewal.kernels import DepthTest, PropagationRule, candidate_pairs, propagate_labels, superpixel_overlap
from viewal.kernels._common import check_scene
from viewal.kernels.propagate import NO_LABEL, PROPAGATION_RULE, decide, source_lists, vote_pairs

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
sim_only = pytest.mark.skipif(not SIM, reason="runs in the simulator subprocess (test_cuda_backend_under_simulator)")
not_sim = pytest.mark.skipif(SIM, reason="the simulator subprocess runs the test_sim_* tests only")
ANY = PropagationRule(0.0, 1, 1)       # every majority propagates: the counts decide alone
FIELDS = ("labels", "propagated", "votes", "views", "majority", "majority_votes", "agreement")
DEFAULT = (PROPAGATION_RULE.min_agreement, PROPAGATION_RULE.min_support, PROPAGATION_RULE.min_views)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "measure_propagation.py"


def run(labels, depths, Ks, poses, backend="numpy", rule=ANY, **test):
    return propagate_labels(labels, depths, Ks, poses, depth_test=DepthTest(backend=backend, **test), rule=rule)


def assert_same(a, b, what=""):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape and x.dtype == y.dtype, (what, f, x.dtype, y.dtype)
        np.testing.assert_array_equal(x, y, err_msg=f"{what} {f}")


def check_backends(labels, depths, Ks, poses, backends=("cpu",), rule=ANY, **test):
    """Every backend gives the reference's result, field for field; returns the reference's."""
    ref = run(labels, depths, Ks, poses, "numpy", rule, **test)
    for b in backends:
        assert_same(ref, run(labels, depths, Ks, poses, b, rule, **test), f"{b} {test}")
    return ref


def random_labels(shape, rng, density=0.4, classes=3):
    """(V, H, W) int64: a random class on a random share of the pixels (many conflicts and ties), else 255."""
    lab = rng.integers(0, classes, size=shape)
    return np.where(rng.random(shape) < density, lab, NO_LABEL)


def world_classes(depths, Ks, poses, cell=0.7, offset=0.13, classes=5):
    """(V, H, W) int64 class of each valid pixel from the world cell its point lies in (255 on invalid depth):
    labels that agree across views. No wall or box face of the room lies on a cell border."""
    from viewal.core.geometry import backproject

    out = np.full(depths.shape, NO_LABEL, np.int64)
    for i in range(depths.shape[0]):
        X = backproject(depths[i], Ks[i], poses[i])
        ok = np.isfinite(X).all(axis=-1)
        c = np.floor((X[ok] + offset) / cell).astype(np.int64)
        out[i][ok] = (c[:, 0] + 3 * c[:, 1] + 7 * c[:, 2]) % classes
    return out


def blocks(shape, rng, n_blocks=3, size=6):
    """(V, H, W) bool: ``n_blocks`` random squares per frame."""
    m = np.zeros(shape, bool)
    for i in range(shape[0]):
        for _ in range(n_blocks):
            y, x = rng.integers(0, shape[1] - size), rng.integers(0, shape[2] - size)
            m[i, y:y + size, x:x + size] = True
    return m


def identical_views(n, h=12, w=16, depth=2.0):
    """``n`` frames with the same pose, intrinsics and constant depth: every pixel lands on itself."""
    K = np.array([[12.0, 0, (w - 1) / 2], [0, 12.0, (h - 1) / 2], [0, 0, 1]])
    return np.full((n, h, w), depth, np.float32), K, np.repeat(np.eye(4)[None], n, axis=0)


def walk_scene(n=5, h=24, w=32, seed=0, hole_frac=0.05):
    """(depths, Ks, poses) of ``n`` views of the box room from a short walk, looking at nearby points: they
    overlap heavily (``room_scene``'s random directions overlap little)."""
    rng = np.random.default_rng(seed)
    K = intrinsics(h, w)
    poses = np.stack([look_at((1.5 + 0.15 * i, 1.2 + 0.05 * i, 1.3), (4.0, 2.0 + 0.1 * i, 0.8)) for i in range(n)])
    depths = np.stack([raycast_box(K, T, h, w) for T in poses])
    depths[rng.random(depths.shape) < hole_frac] = 0.0
    return depths, np.repeat(K[None], n, axis=0), poses


def _two_cams(eye_a, tgt_a, eye_b, tgt_b, h=24, w=32):
    K = intrinsics(h, w)
    poses = np.stack([look_at(eye_a, tgt_a), look_at(eye_b, tgt_b)])
    return np.stack([raycast_box(K, T, h, w) for T in poses]), np.stack([K, K]), poses


# ------------------------------------------------------------------------------------------ backends vs reference

@not_sim
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("test", [{"mode": "z"}, {"mode": "viewal"}, {"mode": "viewal", "world_distance": 0.1},
                                  {"mode": "z", "depth_tol": (0.01, 0.0)}])
def test_cpu_matches_reference_on_random_labels(seed, test):
    _, depths, Ks, poses = room_scene(n=8, seed=seed)
    labels = random_labels(depths.shape, np.random.default_rng(seed))
    ref = check_backends(labels, depths, Ks, poses, **test)
    got = ref.votes > 0
    assert got.mean() > 0.05 and (ref.views >= 2).any()
    assert ((ref.majority == NO_LABEL) & got).any(), "some pixels have a tie"
    assert ref.n_propagated > 100
    # the counts are consistent: views <= votes, majority_votes <= votes, agreement in (0, 1] where voted
    assert np.all(ref.views <= ref.votes) and np.all(ref.majority_votes <= ref.votes)
    assert np.all((ref.agreement[got] > 0) & (ref.agreement[got] <= 1)) and np.all(ref.agreement[~got] == 0)


@not_sim
@pytest.mark.parametrize("mode", ["z", "viewal"])
def test_world_consistent_labels_propagate_to_the_right_class(mode):
    depths, Ks, poses = walk_scene(n=6, seed=4, hole_frac=0.1)
    truth = world_classes(depths, Ks, poses)
    human = np.where(blocks(depths.shape, np.random.default_rng(1)), truth, NO_LABEL)
    ref = check_backends(human, depths, Ks, poses, mode=mode, world_distance=0.1)
    p = ref.with_rule(PROPAGATION_RULE)
    acc = (p.labels[p.propagated] == truth[p.propagated]).mean()
    assert p.multiplier > 1.0 and acc > 0.93, (p.multiplier, acc)   # 24x32 pixels: cell borders cost ~5 %
    assert np.all(truth[p.propagated] != NO_LABEL)           # only pixels with valid depth get labels


@not_sim
def test_adversarial_inputs_agree_with_reference():
    depths, Ks, poses = walk_scene(n=4, seed=5)
    rng = np.random.default_rng(5)
    labels = random_labels(depths.shape, rng)
    none = np.full(depths.shape, NO_LABEL)
    for mode in ("z", "viewal"):
        one = check_backends(labels[:1], depths[:1], Ks[:1], poses[:1], mode=mode)             # one view
        assert one.n_propagated == 0 and np.all(one.votes == 0)
        np.testing.assert_array_equal(one.labels, labels[:1])
        empty = check_backends(none, depths, Ks, poses, mode=mode)                             # no labels
        assert np.all(empty.labels == NO_LABEL) and np.all(empty.votes == 0) and np.all(empty.agreement == 0)
        full = rng.integers(0, 4, size=depths.shape)
        every = check_backends(full, depths, Ks, poses, mode=mode)                             # labels everywhere
        assert every.n_propagated == 0 and every.votes.sum() > 1000
        np.testing.assert_array_equal(every.labels, full)
        dark = check_backends(labels, np.zeros_like(depths), Ks, poses, mode=mode)             # depth all invalid
        assert dark.n_propagated == 0 and np.all(dark.votes == 0)
        np.testing.assert_array_equal(dark.labels, labels)
        nan = depths.copy()
        nan[1] = np.nan
        part = check_backends(labels, nan, Ks, poses, mode=mode)                               # one frame NaN
        assert np.all(part.votes[1] == 0) and not part.propagated[1].any()


@not_sim
def test_frames_that_cannot_overlap_are_skipped_and_give_nothing():
    # back to back at the same place: every point of one view is behind the other camera
    depths, Ks, poses = _two_cams((2, 1.5, 1.2), (0, 1.5, 1.2), (2, 1.5, 1.2), (4, 1.5, 1.2))
    labels = random_labels(depths.shape, np.random.default_rng(0), density=1.0)
    scene = check_scene(depths, Ks, poses)
    ptr, src, _ = vote_pairs(scene, labels != NO_LABEL)
    assert ptr.tolist() == [0, 0, 0] and src.size == 0
    for mode in ("z", "viewal"):
        ref = check_backends(labels, depths, Ks, poses, mode=mode)
        assert np.all(ref.votes == 0) and ref.n_propagated == 0


@not_sim
def test_the_pair_bound_uses_the_labelled_pixels_only():
    """Views 50 degrees apart overlap, but labels on the far left of view 0 lie outside view 1: the pair is
    skipped (the reference, which tries every pair, finds no vote either); labels on the right are not."""
    depths, Ks, poses = _two_cams((2, 1.5, 1.2), (0, 0.5, 1.2), (2, 1.5, 1.2), (0, 2.5, 1.2))
    scene = check_scene(depths, Ks, poses)
    assert {(0, 1), (1, 0)} <= set(zip(*(a.tolist() for a in candidate_pairs(scene))))
    labels = np.full(depths.shape, NO_LABEL)
    side = {}
    for name, cols in (("left", slice(0, 3)), ("right", slice(29, 32))):
        labels[:] = NO_LABEL
        labels[0, :, cols] = 1
        ptr, src, _ = vote_pairs(scene, labels != NO_LABEL)
        side[name] = (ptr.tolist(), src.tolist(), check_backends(labels, depths, Ks, poses))
    (ptr, src, left), (ptr_r, src_r, right) = side["left"], side["right"]
    assert ptr == [0, 0, 0] and src == [] and left.votes.sum() == 0
    assert ptr_r == [0, 0, 1] and src_r == [0] and right.votes[1].sum() > 20


@not_sim
def test_only_labelled_pixels_with_valid_depth_vote():
    _, depths, Ks, poses = room_scene(n=3, seed=6, hole_frac=0.2)
    labels = random_labels(depths.shape, np.random.default_rng(6), density=0.1)
    labels[2] = NO_LABEL
    from viewal.kernels.propagate import compact_classes

    classes, index = compact_classes(labels)
    ptr, pix, cls = source_lists(index, check_scene(depths, Ks, poses).depths)
    voting = (labels != NO_LABEL) & (depths > 0)
    assert ptr.tolist() == [0, int(voting[0].sum()), int(voting[:2].sum()), int(voting.sum())]
    np.testing.assert_array_equal(pix[: ptr[1]], np.flatnonzero(voting[0]))
    np.testing.assert_array_equal(classes[cls[: ptr[1]]], labels[0].reshape(-1)[pix[: ptr[1]]])
    _, src, _ = vote_pairs(check_scene(depths, Ks, poses), voting)
    assert 2 not in src.tolist()           # a frame without labels is nobody's source


# ------------------------------------------------------------------------------------------ the rules

@not_sim
def test_identical_views_copy_a_label_and_count_it_once():
    depths, K, poses = identical_views(2)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0, 2:6, 3:9] = 7
    p = check_backends(labels, depths, K, poses)
    expect = np.zeros(depths.shape, bool)
    expect[1, 2:6, 3:9] = True
    np.testing.assert_array_equal(p.propagated, expect)
    np.testing.assert_array_equal(p.labels[1], labels[0])
    np.testing.assert_array_equal(p.votes, expect.astype(np.int32))
    np.testing.assert_array_equal(p.views, expect.astype(np.int32))
    assert np.all(p.agreement[expect] == 1.0) and p.multiplier == 1.0 and p.n_human == 24


@not_sim
def test_a_human_label_always_wins():
    depths, K, poses = identical_views(2)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0] = 1
    labels[1, 3:7, 4:10] = 2
    p = check_backends(labels, depths, K, poses)
    assert not p.propagated[0].any() and np.all(p.labels[0] == 1)      # frame 1's votes do not override
    assert np.all(p.votes[0, 3:7, 4:10] == 1) and np.all(p.majority[0, 3:7, 4:10] == 2)
    assert np.all(p.labels[1, 3:7, 4:10] == 2) and not p.propagated[1, 3:7, 4:10].any()
    assert np.all(p.majority[1, 3:7, 4:10] == 1)                       # voted 1, kept its own 2
    assert p.propagated[1].sum() == 12 * 16 - 24 and np.all(p.labels[1][p.propagated[1]] == 1)
    np.testing.assert_array_equal(p.human, labels)


def _two_to_one():
    """4 identical frames: frames 0 and 1 label a block 1, frame 2 labels it 2, frame 3 nothing."""
    depths, K, poses = identical_views(4)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0:2, 2:5, 2:6] = 1
    labels[2, 2:5, 2:6] = 2
    return labels, depths, K, poses


@not_sim
@pytest.mark.parametrize("rule,propagates", [
    ((2 / 3, 1, 1), True), ((0.67, 1, 1), False), ((0.6, 3, 1), True), ((0.6, 4, 1), False),
    ((0.6, 1, 3), True), ((0.6, 1, 4), False), ((1.0, 1, 1), False), ((0.0, 3, 3), True)])
def test_thresholds(rule, propagates):
    labels, depths, K, poses = _two_to_one()
    p = check_backends(labels, depths, K, poses, rule=PropagationRule(*rule))
    block = (slice(2, 5), slice(2, 6))
    assert np.all(p.votes[3][block] == 3) and np.all(p.views[3][block] == 3)
    assert np.all(p.majority[3][block] == 1) and np.all(p.majority_votes[3][block] == 2)
    np.testing.assert_allclose(p.agreement[3][block], 2 / 3, rtol=1e-6)
    assert np.all(p.propagated[3][block] == propagates) and p.propagated[3].sum() == (12 if propagates else 0)
    assert np.all(p.labels[3][block] == (1 if propagates else NO_LABEL))
    assert not p.propagated[:3].any()                          # frames 0-2 are labelled there


@not_sim
def test_agreement_is_decided_exactly_on_the_threshold():
    """7 of 10 votes reach 0.7 (0.7 * 10 is 7.000000000000001 in floating point)."""
    human = np.full((1, 1, 3), NO_LABEL)
    majority = np.array([[[1, 1, 1]]])
    votes = np.array([[[10, 10, 3]]])
    top = np.array([[[7, 6, 2]]])
    labels, prop = decide(human, majority, votes, np.ones_like(votes), top, PropagationRule(0.7, 1, 1))
    assert prop.tolist() == [[[True, False, False]]] and labels.tolist() == [[[1, 255, 255]]]
    labels, prop = decide(human, majority, votes, np.ones_like(votes), top, PropagationRule(2 / 3, 1, 1))
    assert prop.tolist() == [[[True, False, True]]]


@not_sim
def test_a_tie_never_propagates():
    depths, K, poses = identical_views(3)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0, :, :8] = 1
    labels[1, :, :8] = 2
    labels[0, :, 8:] = 3                                        # no tie on the right half: one vote for 3
    p = check_backends(labels, depths, K, poses, rule=PropagationRule(0.0, 1, 1))
    assert np.all(p.votes[2, :, :8] == 2) and np.all(p.majority[2, :, :8] == NO_LABEL)
    np.testing.assert_allclose(p.agreement[2, :, :8], 0.5)
    assert not p.propagated[2, :, :8].any() and np.all(p.labels[2, :, 8:] == 3)


@not_sim
def test_invalid_depth_neither_gives_nor_gets_a_label():
    depths, K, poses = identical_views(2)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0] = 4
    depths[0, 0:3, :] = 0.0            # frame 0's labels here have no depth: they give nothing
    depths[1, 6:9, :] = np.inf         # frame 1 has no depth here: it gets nothing
    for mode in ("z", "viewal"):
        p = check_backends(labels, depths, K, poses, mode=mode)
        assert not p.propagated[1, 0:3].any() and not p.propagated[1, 6:9].any()
        assert np.all(p.votes[1, 0:3] == 0) and np.all(p.votes[1, 6:9] == 0)
        assert p.propagated[1].sum() == 12 * 16 - 6 * 16
        assert np.all(p.labels[0] == 4)                         # a human label on invalid depth stays


@not_sim
def test_same_point_as_the_overlap_table():
    """One DepthTest, one meaning: the votes frame 0's labelled pixels cast into superpixel r of frame t are the
    pixels the overlap table says superpixel q of frame 0 lands in r (coverage x |r|), in every mode."""
    from test_kernels_overlap import grid_superpixels

    _, depths, Ks, poses = room_scene(n=4, seed=7)
    sp = grid_superpixels(4, 24, 32)
    labels = np.full(depths.shape, NO_LABEL)
    labels[0] = sp[0] % 5
    for test in ({"mode": "z"}, {"mode": "viewal"}, {"mode": "viewal", "world_distance": 0.1},
                 {"mode": "z", "depth_tol": (0.01, 0.0)}):
        p = run(labels, depths, Ks, poses, "cpu", **test)
        tab = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(backend="cpu", **test)).as_dict()
        sizes = np.bincount(sp[0].reshape(-1))
        checked = 0
        for t in range(1, 4):
            for r in range(16):
                landed = sum(cov * sizes[r] for (tt, rr, s, _), cov in tab.items() if (tt, rr, s) == (t, r, 0))
                assert p.votes[t][sp[t] == r].sum() == pytest.approx(landed, abs=1e-3), (test, t, r)
                checked += landed > 0
        assert checked > 5


@not_sim
def test_intrinsics_may_be_one_matrix_and_with_rule_redecides():
    _, depths, Ks, poses = room_scene(n=3, seed=8)
    labels = random_labels(depths.shape, np.random.default_rng(8), density=0.3)
    a = run(labels, depths, Ks, poses, "cpu")
    assert_same(a, run(labels, depths, Ks[0], poses, "cpu"), "one K")
    rule = PropagationRule(0.75, 2, 1)
    assert_same(a.with_rule(rule), run(labels, depths, Ks, poses, "cpu", rule=rule), "with_rule")


@not_sim
def test_bad_inputs_are_refused_naming_the_argument():
    _, depths, Ks, poses = room_scene(n=2, seed=0)
    labels = np.full(depths.shape, NO_LABEL)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels[:, :-1], depths, Ks, poses)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels.astype(np.float32), depths, Ks, poses)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels + 1, depths, Ks, poses)
    with pytest.raises(ValueError, match="labels"):
        propagate_labels(labels - 256, depths, Ks, poses)
    with pytest.raises(GeometryError, match="world_T_cams"):
        propagate_labels(labels, depths, Ks, poses * 2)
    with pytest.raises(GeometryError, match="Ks"):
        propagate_labels(labels, depths, Ks[:1], poses)
    with pytest.raises(TypeError, match="depth_test"):
        propagate_labels(labels, depths, Ks, poses, depth_test={"mode": "z"})
    with pytest.raises(TypeError, match="rule"):
        propagate_labels(labels, depths, Ks, poses, rule=(0.5, 1, 1))
    for bad in ({"min_agreement": 1.5}, {"min_agreement": float("nan")}, {"min_support": 0},
                {"min_views": 1.5}, {"min_support": True}):
        with pytest.raises(ValueError, match="rule.min_"):
            PropagationRule(**bad)


# ------------------------------------------------------------------------------------------ real and generated data

@pytest.fixture(scope="module")
def measure():
    spec = importlib.util.spec_from_file_location("measure_propagation", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # its dataclass looks its module up
    spec.loader.exec_module(mod)
    return mod


@not_sim
def test_real_scannet_sample_multiplies_labels_and_agrees_with_scannet(scannet_sample, measure):
    """ViewAL's superpixels over 4 % of each of the 37 real frames, labelled from ScanNet, default rule: measured
    1.60x / 98.3 % with the z test and 1.79x / 94.7 % with ViewAL's 1 m for this draw (seed 0), 1.59x / 98.1 %
    and 1.78x / 93.3 % over seeds 0-2 (docs/propagation.md)."""
    scenes = list(measure.scannet_scenes(scannet_sample))
    assert sum(s.gt.shape[0] for s in scenes) == 37
    floors = {"z (0.05 m, 0.02)": (1.4, 0.96), "viewal 1 m": (1.5, 0.92), "viewal 0.1 m": (1.4, 0.96)}
    res = measure.measure(scenes, 0.04, [0], grid=(DEFAULT,))
    got = {name: measure.summary(res[name][DEFAULT])[:2] for name in floors}
    for name, (min_mult, min_acc) in floors.items():
        assert got[name][0] > min_mult and got[name][1] > min_acc, (name, got[name])
    # ViewAL's 1 m accepts occluded points: it adds more pixels, and more wrong ones, than the z test
    (mz, az), (mv, av) = got["z (0.05 m, 0.02)"], got["viewal 1 m"]
    assert mv > mz and av < az


@not_sim
def test_generated_scene_with_depth_noise_and_holes(measure):
    """A generated room (8 frames, 128x96, sensor noise and holes), SEEDS superpixels over 4 % of each frame:
    measured (seeds 0-4, the default rule) 1.9-2.5x at 98.9-99.5 % with the z test, 94.8-96.7 % with 1 m."""
    syn = measure.synthetic_scene(frames=8, height=96, width=128)
    assert (syn.depths == 0).mean() > 0.02                      # the holes are there
    res = measure.measure([syn], 0.04, [0], depth_tests=measure.DEPTH_TESTS[:2], grid=(DEFAULT,))
    for name, (min_mult, min_acc) in {"z (0.05 m, 0.02)": (1.5, 0.97), "viewal 1 m": (1.5, 0.92)}.items():
        mult, acc, _ = measure.summary(res[name][DEFAULT])
        assert mult > min_mult and acc > min_acc, (name, mult, acc)


# ------------------------------------------------------------------------------------------ CUDA (simulator)

@not_sim
def test_cuda_backend_under_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_THREADING_LAYER="omp")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
                        "-k", "test_sim_"], env=env, capture_output=True, text=True, timeout=900,
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], r.stdout[-2000:]


def _tiny(seed):
    return walk_scene(n=3, h=8, w=10, seed=seed)


@sim_only
@pytest.mark.parametrize("test", [{"mode": "z"}, {"mode": "viewal"}, {"mode": "viewal", "world_distance": 0.1}])
def test_sim_random_labels(test):
    depths, Ks, poses = _tiny(0)
    labels = random_labels(depths.shape, np.random.default_rng(0), density=0.5)
    ref = check_backends(labels, depths, Ks, poses, backends=("cuda",), **test)
    assert ref.votes.sum() > 10 and (ref.views >= 2).any() and ref.n_propagated > 5


@sim_only
def test_sim_rules_and_ties():
    labels, depths, K, poses = _two_to_one()
    for rule in ((2 / 3, 1, 1), (0.7, 1, 1), (0.6, 1, 4)):
        check_backends(labels, depths, K, poses, backends=("cuda",), rule=PropagationRule(*rule))
    depths, K, poses = identical_views(3)
    tie = np.full(depths.shape, NO_LABEL)
    tie[0, :, :8], tie[1, :, :8], tie[0, :, 8:] = 1, 2, 3
    p = check_backends(tie, depths, K, poses, backends=("cuda",))
    assert np.all(p.majority[2, :, :8] == NO_LABEL) and np.all(p.views[2, :, :8] == 2)


@sim_only
def test_sim_adversarial():
    depths, Ks, poses = _tiny(1)
    rng = np.random.default_rng(1)
    labels = random_labels(depths.shape, rng)
    cuda = ("cuda",)
    check_backends(labels[:1], depths[:1], Ks[:1], poses[:1], backends=cuda)                      # one view
    check_backends(np.full(depths.shape, NO_LABEL), depths, Ks, poses, backends=cuda)             # no labels
    check_backends(rng.integers(0, 3, depths.shape), depths, Ks, poses, backends=cuda)             # everywhere
    check_backends(labels, np.zeros_like(depths), Ks, poses, backends=cuda)                        # no depth
    d2, K2, T2 = _two_cams((2, 1.5, 1.2), (0, 1.5, 1.2), (2, 1.5, 1.2), (4, 1.5, 1.2), h=8, w=10)
    p = check_backends(random_labels(d2.shape, rng, density=1.0), d2, K2, T2, backends=cuda)       # no overlap
    assert p.votes.sum() == 0
