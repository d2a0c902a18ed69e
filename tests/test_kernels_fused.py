"""Fused (voxel) mode: NumPy twin vs Numba, exact agreement where it must hold, rank agreement with exact."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from twins import room_scene
from viewal.kernels import DepthTest, view_entropy_divergence, view_entropy_divergence_fused

ATOL = 1e-5


def entropy(p, axis=1):
    return -np.sum(p * np.log2(p + 1e-12), axis=axis)


@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_matches_numpy_twin(seed):
    probs, depths, Ks, poses = room_scene(n=5, seed=seed)
    for vs in (0.05, 0.2):
        a = view_entropy_divergence_fused(probs, depths, Ks, poses, voxel_size=vs, backend="numpy")
        b = view_entropy_divergence_fused(probs, depths, Ks, poses, voxel_size=vs, backend="cpu")
        for x, y in zip(a, b):
            assert y.dtype == np.float32 and y.shape == depths.shape
            np.testing.assert_allclose(y, x, atol=ATOL, rtol=1e-5)
    inv = depths == 0
    np.testing.assert_allclose(b[0][inv], entropy(probs)[inv], atol=ATOL)
    assert np.all(b[1][inv] == 0)


def test_equals_exact_for_identical_views_with_constant_distributions():
    # every frame sees exactly the same points and has one distribution everywhere: each voxel holds every
    # frame once with its distribution, which is what the exact method's correspondence sets hold too
    _, depths, Ks, poses = room_scene(n=1, seed=2, hole_frac=0.1)
    rng = np.random.default_rng(0)
    dist = rng.dirichlet(np.ones(6), size=3).astype(np.float32)
    probs = np.broadcast_to(dist[:, :, None, None], (3, 6) + depths.shape[1:]).copy()
    D, K, T = (np.repeat(a, 3, axis=0) for a in (depths, Ks, poses))
    exact = view_entropy_divergence(probs, D, K, T, depth_test=DepthTest(backend="cpu"))
    for backend in ("numpy", "cpu"):
        fused = view_entropy_divergence_fused(probs, D, K, T, voxel_size=0.03, backend=backend)
        for x, y in zip(exact, fused):
            np.testing.assert_allclose(y, x, atol=ATOL)
    # uniform distributions: log2 C everywhere, no divergence
    uni = np.full((3, 6) + depths.shape[1:], 1 / 6, np.float32)
    ve, vd = view_entropy_divergence_fused(uni, D, K, T)
    np.testing.assert_allclose(ve, np.log2(6), atol=ATOL)
    np.testing.assert_allclose(vd, 0, atol=ATOL)


def test_rank_agreement_with_exact():
    h, w = 48, 64
    probs, depths, Ks, poses = room_scene(n=8, h=h, w=w, c=6, seed=0)
    ve_e, vd_e = view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(backend="cpu"))
    ve_f, vd_f = view_entropy_divergence_fused(probs, depths, Ks, poses, voxel_size=0.1)
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sp = ((v // 8) * 8 + u // 8).reshape(-1)

    def region_means(x):
        return np.stack([np.bincount(sp, weights=x[i].reshape(-1)) / np.bincount(sp) for i in range(len(x))])

    rho_ve = spearmanr(region_means(ve_e).ravel(), region_means(ve_f).ravel())[0]
    rho_vd = spearmanr(region_means(vd_e).ravel(), region_means(vd_f).ravel())[0]
    assert rho_ve > 0.95 and rho_vd > 0.95, (rho_ve, rho_vd)


def test_bad_inputs():
    probs, depths, Ks, poses = room_scene(n=2, seed=0)
    with pytest.raises(ValueError, match="voxel_size"):
        view_entropy_divergence_fused(probs, depths, Ks, poses, voxel_size=0)
    with pytest.raises(ValueError, match="backend"):
        view_entropy_divergence_fused(probs, depths, Ks, poses, backend="cuda")
    with pytest.raises(ValueError, match="probs"):
        view_entropy_divergence_fused(probs * 3, depths, Ks, poses)
