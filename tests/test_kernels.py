"""View entropy / view divergence: NumPy reference vs Numba CPU kernel, hand-computed and adversarial cases."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twins import intrinsics, look_at, raycast_box, room_scene, smooth_probs
from viewal.core.geometry import GeometryError
from viewal.kernels import DepthTest, candidate_pairs, view_entropy_divergence
from viewal.kernels._common import check_scene
from viewal.kernels.reference import camera_points, correspond_points, matches

ATOL = 1e-5
FAST_BACKENDS = ["cpu"]


def entropy(p: np.ndarray, axis: int = 1) -> np.ndarray:
    return -np.sum(p * np.log2(p + 1e-12), axis=axis)


def kl(p: np.ndarray, q: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.sum(p * (np.log2(p + 1e-8) - np.log2(q + 1e-8)), axis=axis)


def assert_backends_agree(probs, depths, Ks, poses, mode="z", backends=FAST_BACKENDS, **kw):
    ref = view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend="numpy", **kw))
    for b in backends:
        out = view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend=b, **kw))
        for name, r, o in zip(("ve", "vd"), ref, out):
            assert o.shape == r.shape and o.dtype == np.float32, (b, name)
            np.testing.assert_allclose(o, r, atol=ATOL, rtol=1e-5, err_msg=f"{b} {name} mode={mode}")
    return ref


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode,aggregation", [("z", None), ("viewal", None), ("viewal", "gather"), ("z", "splat")])
def test_random_room_backends_agree(seed, mode, aggregation):
    probs, depths, Ks, poses = room_scene(n=5, seed=seed)
    ve, vd = assert_backends_agree(probs, depths, Ks, poses, mode=mode, aggregation=aggregation)
    ent = entropy(probs)
    # some pixels have correspondences (the scenes overlap) and VE/VD differ from single-view values there
    assert np.mean(np.abs(ve - ent) > 1e-4) > 0.05
    assert (vd >= -1e-6).all() and (vd > 1e-4).mean() > 0.05
    # invalid-depth pixels correspond only to themselves
    inv = depths == 0
    np.testing.assert_allclose(ve[inv], ent[inv], atol=ATOL)
    assert np.all(vd[inv] == 0)


def test_one_view_gives_plain_entropy():
    probs, depths, Ks, poses = room_scene(n=1, seed=3)
    ve, vd = assert_backends_agree(probs, depths, Ks, poses)
    np.testing.assert_allclose(ve, entropy(probs), atol=ATOL)
    assert np.all(vd == 0)


def test_uniform_gives_log2_c():
    probs, depths, Ks, poses = room_scene(n=3, c=7, seed=4)
    probs = np.full_like(probs, 1.0 / 7)
    for mode in ("z", "viewal"):
        ve, vd = assert_backends_agree(probs, depths, Ks, poses, mode=mode)
        np.testing.assert_allclose(ve, np.log2(7), atol=ATOL)
        np.testing.assert_allclose(vd, 0, atol=ATOL)


def test_identical_views():
    probs, depths, Ks, poses = room_scene(n=1, seed=5, hole_frac=0.1)
    # same distributions in both views: VE = entropy(P), VD = 0
    P2 = np.concatenate([probs, probs])
    D2, K2, T2 = (np.concatenate([a, a]) for a in (depths, Ks, poses))
    ve, vd = assert_backends_agree(P2, D2, K2, T2)
    np.testing.assert_allclose(ve, entropy(P2), atol=ATOL)
    np.testing.assert_allclose(vd, 0, atol=ATOL)
    # different distributions, same pose and depth: VE = entropy of their mean, VD = KL / 2 on valid pixels
    other = smooth_probs(np.random.default_rng(9), 1, probs.shape[1], *probs.shape[2:])
    P2 = np.concatenate([probs, other])
    ve, vd = assert_backends_agree(P2, D2, K2, T2)
    valid = depths[0] > 0
    mean = 0.5 * (probs[0] + other[0])
    np.testing.assert_allclose(ve[0][valid], entropy(mean, axis=0)[valid], atol=ATOL)
    np.testing.assert_allclose(ve[1][valid], entropy(mean, axis=0)[valid], atol=ATOL)
    np.testing.assert_allclose(vd[0][valid], 0.5 * kl(probs[0], other[0], axis=0)[valid], atol=ATOL)
    np.testing.assert_allclose(vd[1][valid], 0.5 * kl(other[0], probs[0], axis=0)[valid], atol=ATOL)
    np.testing.assert_allclose(ve[0][~valid], entropy(probs[0], axis=0)[~valid], atol=ATOL)


def test_all_depth_invalid():
    probs, depths, Ks, poses = room_scene(n=3, seed=6)
    depths = np.zeros_like(depths)
    depths[1] = np.nan
    ve, vd = assert_backends_agree(probs, depths, Ks, poses)
    np.testing.assert_allclose(ve, entropy(probs), atol=ATOL)
    assert np.all(vd == 0)


def _two_cams(eye_a, tgt_a, eye_b, tgt_b, h=24, w=32, c=5, seed=0):
    K = intrinsics(h, w)
    poses = np.stack([look_at(eye_a, tgt_a), look_at(eye_b, tgt_b)])
    depths = np.stack([raycast_box(K, T, h, w) for T in poses])
    probs = smooth_probs(np.random.default_rng(seed), 2, c, h, w)
    return probs, depths, np.stack([K, K]), poses


def test_points_behind_the_camera():
    # back to back at the same place: every point of one view is behind the other camera, and would land
    # inside its image (mirrored) if z > 0 were not checked
    probs, depths, Ks, poses = _two_cams((2, 1.5, 1.2), (0, 1.5, 1.2), (2, 1.5, 1.2), (4, 1.5, 1.2))
    for mode in ("z", "viewal"):
        ve, vd = assert_backends_agree(probs, depths, Ks, poses, mode=mode)
        np.testing.assert_allclose(ve, entropy(probs), atol=ATOL)
        assert np.all(vd == 0)


def test_disjoint_views_are_skipped_by_the_bound():
    probs, depths, Ks, poses = _two_cams((1.0, 1.5, 1.2), (0, 1.5, 1.2), (3.0, 1.5, 1.2), (4, 1.5, 1.2))
    scene = check_scene(depths, Ks, poses, DepthTest(mode="viewal"))
    src, dst = candidate_pairs(scene)
    assert src.size == 0
    ve, vd = assert_backends_agree(probs, depths, Ks, poses, mode="viewal")
    np.testing.assert_allclose(ve, entropy(probs), atol=ATOL)


@pytest.mark.parametrize("seed", [0, 7])
def test_pair_bound_is_conservative(seed):
    probs, depths, Ks, poses = room_scene(n=6, seed=seed)
    for mode in ("z", "viewal"):
        scene = check_scene(depths, Ks, poses, DepthTest(mode=mode))
        kept = set(zip(*candidate_pairs(scene)))
        assert len(kept) < 30  # something was skipped in these scenes (6 cameras in random directions)
        for i in range(6):
            for j in range(6):
                if i != j and (i, j) not in kept:
                    assert matches(scene, i, j)[0].size == 0, (mode, i, j)


def test_segment_frustum_cull_is_conservative_and_culls():
    """box_outside_frustum (the kernel's per-row-segment cull): never true for a box with a point that frame j
    sees (points sampled inside random boxes, projected by hand); true for boxes behind, beside, too far."""
    from viewal.kernels._math import box_outside_frustum

    rng = np.random.default_rng(3)
    K = intrinsics(24, 32, 60.0)
    h, w, zfar = 24, 32, 4.0
    culled = 0
    for _ in range(400):
        R = look_at(np.zeros(3), rng.normal(size=3))[:3, :3]
        M = np.concatenate([R, rng.normal(0, 1.0, (3, 1))], axis=1)
        lo = rng.normal(0, 2.0, 3)
        hi = lo + rng.uniform(0.01, 1.0, 3)
        out = box_outside_frustum(*lo, *hi, M, K, w, h, zfar)
        pts = lo + rng.uniform(0, 1, (2000, 3)) * (hi - lo)
        corners = np.array([[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                            for a in (0, 1) for b in (0, 1) for c in (0, 1)])
        p = np.concatenate([pts, corners]) @ M[:, :3].T + M[:, 3]
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (p @ K.T)[:, :2] / z[:, None]
        seen = (z > 0) & (z <= zfar) & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & \
            (uv[:, 1] < h - 0.5)
        assert not (out and seen.any())
        culled += out
    assert 50 < culled < 390  # the test exercises both answers
    M = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    assert box_outside_frustum(-1, -1, -3, 1, 1, -1, M, K, w, h, zfar)        # behind the camera
    assert box_outside_frustum(5, -1, 1, 6, 1, 2, M, K, w, h, zfar)           # far to the right
    assert box_outside_frustum(-1, -1, 5, 1, 1, 6, M, K, w, h, zfar)          # beyond zfar
    assert not box_outside_frustum(-1, -1, 1, 1, 1, 2, M, K, w, h, zfar)      # straight ahead


def test_viewal_mode_differs_from_z_mode():
    # the second view's depth is 0.3 m off: ViewAL's 1 m world test keeps the correspondences, mode z drops them
    probs, depths, Ks, poses = room_scene(n=1, seed=8, hole_frac=0.0)
    P2 = np.concatenate([probs, smooth_probs(np.random.default_rng(1), 1, probs.shape[1], *probs.shape[2:])])
    D2 = np.concatenate([depths, depths + 0.3])
    K2, T2 = np.concatenate([Ks, Ks]), np.concatenate([poses, poses])
    ve_z, vd_z = assert_backends_agree(P2, D2, K2, T2, mode="z")
    ve_v, vd_v = assert_backends_agree(P2, D2, K2, T2, mode="viewal", aggregation="gather")
    np.testing.assert_allclose(ve_z, entropy(P2), atol=ATOL)
    assert np.all(vd_z == 0)
    assert (np.abs(ve_v - ve_z) > 1e-3).mean() > 0.5
    # a loose enough z tolerance accepts them as well, under either aggregation
    for agg in ("gather", "splat"):
        ve_loose, _ = assert_backends_agree(P2, D2, K2, T2, mode="z", depth_tol=(0.5, 0.0), aggregation=agg)
        ve_v, _ = assert_backends_agree(P2, D2, K2, T2, mode="viewal", aggregation=agg)
        np.testing.assert_allclose(ve_loose, ve_v, atol=ATOL)


def test_round_trip_backproject_project_gives_grid():
    from viewal.kernels import cpu

    h, w = 24, 32
    K = intrinsics(h, w)
    K[0, 1] = 0.7  # a little skew: the formulas use the full matrix
    depth = np.random.default_rng(0).uniform(0.5, 4.0, size=(h, w)).astype(np.float32)
    Kinv = np.linalg.inv(K)
    M = np.hstack([np.eye(3), np.zeros((3, 1))])
    for v in range(h):
        for u in range(w):
            x, y, z = cpu.backproject_pixel(float(u), float(v), float(depth[v, u]), Kinv)
            assert cpu.correspond(x, y, z, M, K, Kinv, depth, 0, 0.0, 0.0, 1.0) == v * w + u
    # the NumPy twin
    pix, x, y, z = camera_points(depth, Kinv)
    idx = correspond_points(x, y, z, M, K, Kinv, depth, 0, 0.0, 0.0, 1.0)
    assert np.array_equal(pix, np.arange(h * w)) and np.array_equal(idx, np.arange(h * w))


@pytest.mark.parametrize("mode", ["z", "viewal"])
def test_pixel_landing_is_backproject_then_correspond(mode):
    """The per-source-pixel step (``_math.make_pixel_landing``), as the CPU kernels compile it and as plain
    Python (what the CUDA simulator runs), lands every pixel of a view where the NumPy reference's
    correspondence does, and (-1, -1) for invalid source depth and rejected points."""
    from viewal.kernels import _math, cpu
    from viewal.kernels._common import relative_poses

    h, w = 24, 32
    K = intrinsics(h, w)
    poses = np.stack([look_at(np.array([2.0, 1.5, 1.4]), np.array([0.2, 0.4, 0.9])),
                      look_at(np.array([2.3, 1.2, 1.5]), np.array([0.1, 0.9, 1.0]))])
    depths = np.stack([raycast_box(K, T, h, w) for T in poses])
    depths[0, ::5, ::3] = 0.0                      # holes in the source
    depths[1, 10:14, :] += 0.3                     # a step in the target: mode z rejects, viewal's 1 m keeps
    Kinv = np.linalg.inv(K)
    M = relative_poses(poses, np.array([0]), np.array([1]))[0]
    code = _math.MODES[mode]
    args = (M, K, Kinv, depths[1], code, 0.05, 0.02, 1.0)
    pix, x, y, z = camera_points(depths[0], Kinv)
    idx = np.full(h * w, -1, np.int64)
    idx[pix] = correspond_points(x, y, z, *args)
    expected = [(int(i) // w, int(i) % w) if i >= 0 else (-1, -1) for i in idx]
    plain = _math.make_pixel_landing(_math.backproject_pixel, _math.correspond)
    for f in (cpu.pixel_landing, plain):
        got = [tuple(int(a) for a in f(u, v, depths[0], Kinv, *args)) for v in range(h) for u in range(w)]
        assert got == expected
    landed = (idx >= 0).sum()
    assert 0.3 * h * w < landed < (depths[0] > 0).sum()     # most land, some are rejected, holes never do


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_inputs(backend):
    probs, depths, Ks, poses = room_scene(n=2, seed=0)
    test = DepthTest(backend=backend)

    def f(*args):
        return view_entropy_divergence(*args, depth_test=test)

    with pytest.raises(ValueError, match="probs"):
        f(probs[:, :, :-1], depths, Ks, poses)
    with pytest.raises(ValueError, match="probs"):
        f(probs * 2, depths, Ks, poses)
    neg = probs.copy()
    neg[0, :, 0, 0] = 0.0
    neg[0, :2, 0, 0] = (-0.2, 1.2)  # sums to 1 but is not a distribution
    with pytest.raises(ValueError, match="probs"):
        f(neg, depths, Ks, poses)
    with pytest.raises(ValueError, match="probs"):
        f(np.where(np.isfinite(probs), np.nan, 0), depths, Ks, poses)
    bad = poses.copy()
    bad[1, 0, 3] = np.nan
    with pytest.raises(GeometryError, match=r"world_T_cams\[1\]"):
        f(probs, depths, Ks, bad)
    with pytest.raises(GeometryError, match="world_T_cams"):
        f(probs, depths, Ks, poses[:1])
    with pytest.raises(GeometryError, match="Ks"):
        f(probs, depths, Ks[:, :2], poses)
    with pytest.raises(GeometryError, match="depths"):
        f(probs, -depths, Ks, poses)
    with pytest.raises(TypeError, match="depth_test: expected a viewal.kernels.DepthTest, got dict"):
        view_entropy_divergence(probs, depths, Ks, poses, depth_test={"mode": "z"})


def test_numba_cache_is_used_from_the_installed_package(tmp_path):
    """Two fresh processes: the second loads the CPU kernel from Numba's on-disk cache (cache=True)."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import numpy as np\n"
        "from viewal.kernels import view_entropy_divergence\n"
        "from viewal.kernels import cpu\n"
        "from twins import room_scene\n"
        "P, D, K, T = room_scene(n=2, seed=0)\n"
        "view_entropy_divergence(P, D, K, T)\n"
        "print(sum(cpu.ve_vd_kernel.stats.cache_hits.values()), cpu.ve_vd_kernel.stats.cache_path)\n"
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="omp")
    env.pop("NUMBA_DISABLE_JIT", None)
    outs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for o in outs:
        assert o.returncode == 0, o.stderr
    hits, path = outs[1].stdout.split()[-2:]
    assert int(hits) >= 1, f"no Numba cache hit in a second process (cache dir {path})"
