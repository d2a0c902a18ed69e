"""CUDA backend under Numba's simulator, in a separate process.

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, so the driver test
(``test_cuda_backend_under_simulator``) reruns this file with pytest in a subprocess with the variable
set; there the ``test_sim_*`` tests run (they skip in the main process). The simulator runs each thread
as a Python thread: inputs are tiny (3 frames of 8x10, C = 4).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
sim_only = pytest.mark.skipif(not SIM,
                              reason="runs in the simulator subprocess (see test_cuda_backend_under_simulator)")
ATOL = 1e-5


def test_cuda_backend_under_simulator():
    if SIM:
        pytest.skip("already in the simulator")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_THREADING_LAYER="omp")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
                        "-k", "test_sim_"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], r.stdout[-2000:]


def _tiny(seed: int = 0, **kw):
    from twins import room_scene

    return room_scene(n=3, h=8, w=10, c=4, seed=seed, **kw)


def _check(probs, depths, Ks, poses, **kw):
    from viewal.kernels import DepthTest, view_entropy_divergence

    ref = view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(backend="numpy", **kw))
    out = view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(backend="cuda", **kw))
    for r, o in zip(ref, out):
        assert o.dtype == np.float32 and o.shape == r.shape
        np.testing.assert_allclose(o, r, atol=ATOL, rtol=1e-5)
    return ref


@sim_only
@pytest.mark.parametrize("mode,aggregation", [("z", None), ("viewal", None)])   # gather, splat
def test_sim_random_scene(mode, aggregation):
    probs, depths, Ks, poses = _tiny(0)
    ve, _ = _check(probs, depths, Ks, poses, mode=mode, aggregation=aggregation)
    ent = -np.sum(probs * np.log2(probs + 1e-12), axis=1)
    assert (np.abs(ve - ent) > 1e-4).mean() > 0.1  # the views do overlap


@sim_only
def test_sim_adversarial():
    probs, depths, Ks, poses = _tiny(1)
    _check(probs[:1], depths[:1], Ks[:1], poses[:1])                             # one view
    _check(probs, np.zeros_like(depths), Ks, poses)                             # all depth invalid
    P2 = np.concatenate([probs[:1], probs[1:2]])
    D2, K2, T2 = (np.concatenate([a[:1], a[:1]]) for a in (depths, Ks, poses))
    ve, vd = _check(P2, D2, K2, T2)                                              # identical views
    valid = depths[0] > 0
    m = 0.5 * (probs[0] + probs[1])
    np.testing.assert_allclose(ve[0][valid], -np.sum(m * np.log2(m + 1e-12), axis=0)[valid], atol=ATOL)
    uni = np.full_like(probs, 0.25)
    ve, vd = _check(uni, depths, Ks, poses, mode="viewal")                       # uniform: log2 C
    np.testing.assert_allclose(ve, 2.0, atol=ATOL)


@sim_only
@pytest.mark.parametrize("aggregation", ["gather", "splat"])
def test_sim_depth_test_at_the_threshold(aggregation):
    """Points exactly on the threshold (see test_kernels_splat): the CUDA formulas decide like the others."""
    from test_kernels_splat import ULP, _on_axis_pair

    for mode, kw, d_dst, passes in (("viewal", dict(world_distance=0.5), 2.5, False),
                                    ("viewal", dict(world_distance=0.5), 2.5 - ULP, True),
                                    ("z", dict(depth_tol=(0.5, 0.0)), 2.5, True)):
        ve, vd = _check(*_on_axis_pair(2.0, d_dst), mode=mode, aggregation=aggregation, **kw)
        assert (ve[0, 4, 4] > 0.9) == passes and (ve[1, 4, 4] > 0.9) == passes
        assert vd.min() >= 0.0


@sim_only
def test_sim_overlap_matches_reference():
    from viewal.kernels import DepthTest, superpixel_overlap

    _, depths, Ks, poses = _tiny(0)
    v, u = np.meshgrid(np.arange(8), np.arange(10), indexing="ij")
    sp = np.repeat(((v // 4) * 2 + u // 5)[None], 3, axis=0).astype(np.int32)
    for mode in ("viewal", "z"):
        a = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend="numpy"))
        b = superpixel_overlap(sp, depths, Ks, poses, depth_test=DepthTest(mode=mode, backend="cuda"))
        assert len(a) > 12 and a.as_dict().keys() == b.as_dict().keys()
        np.testing.assert_allclose(b.coverage, a.coverage, atol=1e-6)


@sim_only
def test_sim_backend_is_explicit():
    """Under the simulator cuda.is_available() is True; the default backend must still be the CPU one."""
    import inspect

    from numba import cuda

    from viewal.kernels import DEPTH_TEST, superpixel_overlap, view_entropy_divergence

    assert cuda.is_available()
    for f in (view_entropy_divergence, superpixel_overlap):
        assert inspect.signature(f).parameters["depth_test"].default is DEPTH_TEST
    assert DEPTH_TEST.backend == "cpu"
