"""Scoring on Ray equals local scoring; a killed Ray worker is retried; resume without rescoring.

The Ray tests skip when ``ray`` is not importable (``pip install 'viewal[ray]'``; the ``test`` extra has it).
Ray runs locally with ``ray.init(num_cpus=2)``. Scores are compared exactly (bit for bit): the driver scores
with one torch thread (``num_threads=1``), a Ray task with as many threads as it has CPUs (one), and scoring
keeps that count for every scene (``viewal.scoring.executors.kept_torch_threads``; Numba's OpenMP pool would otherwise
raise it to the CPU count after the first scene, and convolutions summed over another split differ in their
last bits, up to ~1e-5 relative on the pooled scores).
"""
import os
import sys

# Ray runs its workers at niceness 15; on this shared 2-core machine they would starve (the raylet reads
# RAY_<setting> from the environment)
os.environ.setdefault("RAY_worker_niceness", "0")
# a single-node Ray on the loopback address (Ray resolves 127.0.0.1 to the machine's interface address
# unless its cluster mode is off; read when ray is imported, so set before)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import pytest

import viewal
from viewal.datasets import open_dataset
from viewal.scoring.executors import RAY_INSTALL, LocalExecutor, require_ray

FAST = dict(epochs=1, min_iterations=0, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4, infer_batch_size=4,
            decoder_channels=16, init=None, steps=2, scorer="view_entropy")
BUDGET = 600


@pytest.fixture(scope="module")
def rooms_48x64_seed7(tmp_path_factory):
    """4 synthetic rooms x 5 frames of 48x64 pixels (seed 7): 2 pool scenes and one scene each for val and test."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("scale") / "data"
    generate_dataset(root, scenes=4, frames=5, height=48, width=64, seed=7, progress=False)
    return root


def _selection(queries):
    return [(q.frame_key, q.region_id, q.n_pixels) for q in queries]


@pytest.fixture(scope="module")
def reference(rooms_48x64_seed7, tmp_path_factory):
    """Local scoring: the model checkpoint, the queries and the pool of the undisturbed run. The scoring
    model is loaded from the checkpoint, as the Ray runs' are (the model a fit leaves in memory scores
    the same to ~1e-5 relative, not bit for bit)."""
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ref")
    learner = viewal.ActiveLearner(open_dataset(rooms_48x64_seed7), ledger=tmp / "fit.sqlite", **FAST)
    learner.fit(progress=False)
    ckpt = learner.save_model(tmp / "model.pt")
    learner.ledger.close()
    learner = viewal.ActiveLearner(open_dataset(rooms_48x64_seed7), ledger=tmp / "local.sqlite", **FAST)
    learner.load_model(ckpt)
    pool = learner.score_pool(progress=False)
    queries = learner.query(BUDGET, progress=False)
    learner.ledger.close()
    assert len({q.scene_id for q in queries}) >= 1 and len(queries) >= 3
    return ckpt, queries, pool


def ray_learner(rooms_48x64_seed7, ledger, ckpt):
    learner = viewal.ActiveLearner(open_dataset(rooms_48x64_seed7), ledger=ledger, executor="ray", **FAST)
    learner.load_model(ckpt)
    return learner


def start_ray(ray, init, attempts=3):
    """``init()`` again when Ray's node start times out (30 s, fixed in Ray) on an overloaded machine."""
    for attempt in range(attempts):
        try:
            return init()
        except Exception as e:
            ray.shutdown()
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        start_ray(ray, lambda: ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False))
    yield ray
    ray.shutdown()


def assert_same_queries(got, want):
    assert _selection(got) == _selection(want)
    assert [q.score for q in got] == [q.score for q in want]
    assert [q.view_score for q in got] == [q.view_score for q in want]


def test_ray_scoring_equals_local(rooms_48x64_seed7, tmp_path, reference, ray_local):
    ckpt, want_queries, want_pool = reference
    learner = ray_learner(rooms_48x64_seed7, tmp_path / "ray.sqlite", ckpt)
    assert learner.executor.name == "ray"
    pool = learner.score_pool(progress=False)
    assert pool.scene_ids == want_pool.scene_ids and pool.frame_ids == want_pool.frame_ids
    np.testing.assert_array_equal(pool.offsets, want_pool.offsets)
    np.testing.assert_array_equal(pool.available, want_pool.available)
    fin = np.isfinite(want_pool.score)
    assert fin.sum() > 20 and np.ptp(want_pool.score[fin]) > 0
    # bit for bit: the same code with the same thread count (module docstring)
    np.testing.assert_array_equal(pool.score, want_pool.score)
    np.testing.assert_array_equal(pool.view, want_pool.view)
    assert len(learner._overlaps) == len(set(pool.scene_ids))  # each task returned its scene's overlap rows
    assert_same_queries(learner.query(BUDGET, progress=False), want_queries)
    learner.ledger.close()


class CountingExecutor(LocalExecutor):
    def __init__(self):
        self.scored = []

    def map(self, model, scorer, jobs, spec):
        self.scored += [j.scene_id for j in jobs]
        yield from super().map(model, scorer, jobs, spec)


def test_stored_scenes_are_not_scored_again(rooms_48x64_seed7, tmp_path, reference):
    """A driver that stops mid-cycle resumes from the scenes already stored (one .npz each); a scene whose
    file is gone, or written for another model, is scored again."""
    ckpt, _, want_pool = reference
    learner = viewal.ActiveLearner(open_dataset(rooms_48x64_seed7), ledger=tmp_path / "l.sqlite", **FAST)
    learner.load_model(ckpt)
    learner.executor = counting = CountingExecutor()
    first = learner.score_pool(progress=False)
    scenes = list(dict.fromkeys(first.scene_ids))
    assert counting.scored == scenes and len(scenes) == 2
    files = sorted((tmp_path / "l.scores" / "c0").glob("*.npz"))
    assert [f.stem for f in files] == sorted(scenes)
    files[0].unlink()
    again = learner.score_pool(progress=False)
    assert counting.scored == scenes + [files[0].stem]
    for name in ("offsets", "score", "view", "sizes", "available"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    # the same checkpoint scored earlier in this process (the reference), with the same thread count: equal
    np.testing.assert_array_equal(first.score, want_pool.score)
    next(learner.model.parameters()).data.mul_(0.5)  # another model: every scene is scored again
    learner.score_pool(progress=False)
    assert counting.scored == scenes + [files[0].stem] + scenes
    learner.query(BUDGET, progress=False)
    assert not list((tmp_path / "l.scores").glob("c*/*.npz"))  # queries recorded: the scores are spent
    learner.ledger.close()


def test_ray_worker_killed_mid_scene_is_retried(rooms_48x64_seed7, tmp_path, reference, monkeypatch):
    """SIGKILL of the Ray worker process while it scores a scene (``viewal.core.faults``: ``scene`` phase, once):
    Ray reruns the task and the cycle's selections equal the undisturbed run's."""
    ray = pytest.importorskip("ray")
    ckpt, want_queries, _ = reference
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("VIEWAL_TEST_KILL_AT", "scene")
    monkeypatch.setenv("VIEWAL_TEST_KILL_ONCE", str(marker))
    if ray.is_initialized():
        ray.shutdown()
    try:
        learner = ray_learner(rooms_48x64_seed7, tmp_path / "fault.sqlite", ckpt)
        # Ray started by the executor, which hands the kill settings to its workers (runtime_env)
        start_ray(ray, learner.executor.init)
        queries = learner.query(BUDGET, progress=False)
        assert marker.is_file(), "no worker was killed"
        assert_same_queries(queries, want_queries)
        learner.ledger.close()
    finally:
        ray.shutdown()


def test_ray_missing_says_what_to_install(rooms_48x64_seed7, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ValueError, match=r"pip install 'viewal\[ray\]'"):
        require_ray()
    with pytest.raises(ValueError, match=r"pip install 'viewal\[ray\]'"):
        viewal.ActiveLearner(open_dataset(rooms_48x64_seed7), ledger=tmp_path / "x.sqlite", executor="ray", **FAST)
    from viewal.cli import main

    rc = main(["experiment", "--data", str(rooms_48x64_seed7), "--out", str(tmp_path / "exp"), "--ray"])
    err = capsys.readouterr().err
    assert rc == 1 and "--ray" in err and RAY_INSTALL in err
    assert not (tmp_path / "exp").exists()


def test_executor_setting_is_checked():
    from viewal.core.config import ALConfig

    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        ALConfig(executor="dask")
    with pytest.raises(ValueError, match="max_retries"):
        ALConfig(max_retries=-1)


def test_experiment_ray_flag_sets_the_executor():
    import argparse

    from viewal.cli.experiment import configure_parser, executor_from_args

    p = argparse.ArgumentParser()
    configure_parser(p)
    base = ["--data", "d", "--out", "o"]
    assert executor_from_args(p.parse_args(base)) == {}
    assert executor_from_args(p.parse_args(base + ["--ray"])) == {"executor": "ray", "ray_address": None,
                                                                  "max_retries": 3}
    assert executor_from_args(p.parse_args(base + ["--ray", "127.0.0.1:6379", "--max-retries", "1"])) == {
        "executor": "ray", "ray_address": "127.0.0.1:6379", "max_retries": 1}



EXPERIMENT = ["--methods", "view_entropy", "--cycles", "1", "--budget", "4", "--seeds", "1", "--iterations", "2",
              "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4",
              "--decoder-channels", "16", "--init", "random", "--no-full-data"]


def _queries(out):
    import sqlite3

    con = sqlite3.connect(str(out / "ledgers" / "view_entropy-s0.sqlite"))
    try:
        return con.execute("SELECT cycle, rank, scene_id, frame_id, region_id, n_pixels, mask FROM queries "
                           "ORDER BY cycle, rank").fetchall()
    finally:
        con.close()


def _scoring_worker_addresses(logs) -> set[str]:
    """Node addresses of the Ray workers that ran ``viewal.scoring.executors._ray_task``, from a session's logs: a
    worker's ``worker-<id>-*.out`` names the task it ran, its ``python-core-worker-<id>_*.log`` its address."""
    import re

    got = set()
    for out in logs.glob("worker-*.out"):
        if ":task_name:_ray_task" in out.read_text():
            wid = out.name.split("-")[1]
            for log in logs.glob(f"python-core-worker-{wid}_*.log"):
                got.update(re.findall(r"Initializing worker at address: ([0-9.]+):", log.read_text()))
    return got


def _can_make_namespaces() -> bool:
    import shutil

    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _can_make_namespaces(), reason="scripts/ray_two_nodes.sh gives each Ray node a network "
                    "namespace of its own: needs root and iproute2")
def test_two_ray_nodes_on_localhost_run_the_same_experiment(rooms_48x64_seed7, tmp_path):
    """``scripts/ray_two_nodes.sh``: a head and a second node joined by address, one CPU each, each in a network
    namespace of its own (10.88.0.1 and 10.88.0.2 on a veth pair); the experiment on that cluster selects what
    the local experiment selects, and the script leaves no namespace behind."""
    import shutil
    import subprocess
    from pathlib import Path

    pytest.importorskip("ray")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "KEEP_LOGS": "1"}
    local = subprocess.run([sys.executable, "-m", "viewal.cli", "experiment", "--data", str(rooms_48x64_seed7), "--out",
                            str(tmp_path / "local"), *EXPERIMENT], env=env, capture_output=True, text=True)
    assert local.returncode == 0, local.stderr[-2000:]
    script = Path(__file__).resolve().parents[1] / "scripts" / "ray_two_nodes.sh"
    two = subprocess.run(["bash", str(script), str(rooms_48x64_seed7), str(tmp_path / "two"), *EXPERIMENT], env=env,
                         capture_output=True, text=True, timeout=1800)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "2 nodes alive (10.88.0.1, 10.88.0.2)" in two.stdout
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "viewal-ray-" not in left
    logs = Path(two.stdout.split("node logs in ")[1].split()[0])
    try:  # a scene was scored on each node: a worker at each address ran the scoring task
        assert _scoring_worker_addresses(logs / "ray" / "session_latest" / "logs") == {"10.88.0.1", "10.88.0.2"}
    finally:
        shutil.rmtree(logs)
    want = _queries(tmp_path / "local")
    assert len(want) >= 2 and _queries(tmp_path / "two") == want
    assert (tmp_path / "two" / "results.csv").read_text() == (tmp_path / "local" / "results.csv").read_text()


_NUMBA_POOL_START = """
import numpy as np, torch
from numba import njit, prange
from viewal.scoring.executors import kept_torch_threads

@njit(parallel=True)
def double(a):
    out = np.empty_like(a)
    for i in prange(a.shape[0]):
        out[i] = 2 * a[i]
    return out

torch.set_num_threads(1)
with kept_torch_threads() as n:
    double(np.ones(64))  # the first parallel kernel of the process: Numba's OpenMP pool starts
print(n, torch.get_num_threads())
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="Numba's pool has one thread on one CPU: nothing changes")
def test_numba_pool_start_leaves_torch_threads_as_they_were():
    """Numba's OpenMP layer sets the caller's OpenMP thread count to NUMBA_NUM_THREADS (the CPU count) when its
    pool starts, and torch's intra-op pool follows it: scoring keeps torch's count (``kept_torch_threads``), so
    that every scene is inferred with the same threads (their floats differ otherwise). A fresh process: the
    pool starts once per process."""
    import subprocess

    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp"}
    env.pop("NUMBA_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    run = subprocess.run([sys.executable, "-c", _NUMBA_POOL_START], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1", "1"]
