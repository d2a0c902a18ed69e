"""Scoring the pool scene by scene, in this process or on a Ray cluster.

Scoring is independent per scene: MC-dropout inference on the scene's frames, the scorer's kernels (view
entropy/divergence for ViewAL), pooling into regions, and the scene's superpixel overlap table. One
function does it, :func:`score_scene`; the two executors only decide where it runs:

* :class:`LocalExecutor` calls it scene after scene in this process;
* :class:`RayExecutor` maps the scenes to Ray tasks: the model (and scorer) is put once in the object
  store, each task scores one scene and returns its :class:`SceneResult` (per-region scores and the
  scene's overlap rows), results are yielded as they arrive, and a task whose worker dies is retried
  (``max_retries``). Selection stays on the driver.

The learner writes every :class:`SceneResult` to a :class:`SceneStore` as soon as it arrives (one ``.npz``
per scene, atomically, keyed by the model's weights and the scoring settings), so a driver killed in the
middle of a cycle resumes without rescoring the scenes already done. Results do not depend on where a
scene ran: MC-dropout masks and random scores are seeded by (run seed, cycle, scene) (``viewal.core.seeding``).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.config import EXECUTORS, ALConfig
from viewal.core.faults import kill_point
from viewal.core.io import atomic_path
from viewal.core.seeding import stream_rng, stream_seed
from viewal.core.superpixels import SuperpixelCache
from viewal.datasets.base import stack_scene
from viewal.kernels import OverlapTable, superpixel_overlap
from viewal.nn.predictor import weights_digest
from viewal.scoring.needs import NeedContext, compute_needs
from viewal.scoring.scorers import build_scene_inputs
from viewal.selection import RegionPool, build_pool

__all__ = ["RegionMaps", "SceneJob", "ScoringSpec", "SceneResult", "score_scene", "scene_overlap_table",
           "SceneStore", "LocalExecutor", "RayExecutor", "make_executor", "require_ray", "weights_digest",
           "kept_torch_threads", "EXECUTORS", "RAY_INSTALL"]

RAY_INSTALL = "pip install 'viewal[ray]'"


class RegionMaps:
    """(H, W) int32 region map of a pool frame: its superpixels (cached on disk beside the dataset by
    ``viewal.core.superpixels.SuperpixelCache``, and in memory here), or zeros for whole-image selection.

    Picklable without its in-memory maps, so a Ray task gets the settings and reads (or computes) the
    maps itself.

    Args:
        root: dataset root (the superpixel cache lives under it).
        hw: (H, W) of the dataset's frames.
        region: ``"superpixel"`` or ``"image"``; method, num: superpixel method and target count.
    """

    def __init__(self, root: str | Path, hw: tuple[int, int], region: str = "superpixel", method: str = "seeds",
                 num: int = 40) -> None:
        self.root, self.hw = str(root), (int(hw[0]), int(hw[1]))
        self.region, self.method, self.num = region, method, int(num)
        self._memo: dict[str, np.ndarray] = {}
        self._cache = None

    @classmethod
    def of(cls, dataset, config: ALConfig) -> RegionMaps:
        """The region maps of ``config`` (an ``ALConfig``) on ``dataset``."""
        return cls(dataset.root, (dataset.height, dataset.width), config.region, config.superpixels,
                   config.superpixel_num)

    def __call__(self, frame) -> np.ndarray:
        if self.region == "image":
            return np.zeros(self.hw, np.int32)
        if frame.key not in self._memo:
            if self._cache is None:
                self._cache = SuperpixelCache(self.root, self.method, size=self.hw, num=self.num)
            self._memo[frame.key] = self._cache.get(frame)
        return self._memo[frame.key]

    def stack(self, frames: Sequence) -> np.ndarray:
        """(N, H, W) int32 region maps of ``frames``."""
        return np.stack([self(f) for f in frames])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_memo": {}, "_cache": None}


def overlap_test_key(t) -> dict:
    """What of the depth test (``viewal.kernels.DepthTest``) an overlap table depends on: its mode and
    tolerances, and the distance of mode "viewal" (mode "z" keys are those of the tables cached before the
    depth test was one setting)."""
    return {"mode": t.mode, "tol": list(t.depth_tol), **({"dist": t.world_distance} if t.mode == "viewal" else {})}


def _overlap_cache_path(frames: Sequence, config: ALConfig, regions: RegionMaps) -> Path:
    c = config
    key = json.dumps({"frames": [f.frame_id for f in frames], "region": c.region, "sp": c.superpixels,
                      "num": c.superpixel_num, **overlap_test_key(c.depth_test),
                      "size": list(regions.hw), "v": 1}, sort_keys=True)
    h = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(regions.root) / ".viewal_cache" / "overlap" / h / f"{frames[0].scene_id}.npz"


def scene_overlap_table(frames: Sequence, config: ALConfig, regions: RegionMaps, superpixels: np.ndarray | None = None):
    """Superpixel overlap table (``viewal.kernels.OverlapTable``) of one scene's pool frames, computed once
    and cached beside the dataset (keyed by the frames, the region and depth-test settings).

    Args:
        frames: (N,) the scene's pool frames; config: the run's ``ALConfig``; regions: its :class:`RegionMaps`.
        superpixels: (N, H, W) their region maps when already at hand (else read through ``regions``).
    """
    path = _overlap_cache_path(frames, config, regions)
    if path.is_file():
        return OverlapTable.load(path)
    sp = regions.stack(frames) if superpixels is None else superpixels
    geo = stack_scene(frames)
    table = superpixel_overlap(sp, geo["depths"], geo["Ks"], geo["world_T_cams"], depth_test=config.depth_test)
    table.save(path)
    return table


@dataclass
class SceneJob:
    """One scene to score: its pool frames (sequence order) and (N, H, W) bool already-labelled pixels."""

    scene_id: str
    frames: list
    labelled: np.ndarray

    def light(self) -> SceneJob:
        """A copy whose frames carry their loaders only (no arrays loaded on the driver): what a Ray task
        is sent, so that each worker reads the scene's files itself."""
        frames = []
        for f in self.frames:
            g = copy.copy(f)
            g.release()
            frames.append(g)
        return SceneJob(self.scene_id, frames, self.labelled)


@dataclass(frozen=True)
class ScoringSpec:
    """What scoring a scene reads besides the model, the scorer and the scene: the run's ``ALConfig``
    (MC passes, inference batch and device, working size, seed, depth test, kernel backend), the cycle
    (it keys the MC-dropout masks), the :class:`RegionMaps`, and whether the selector needs the overlap
    table (``Selector.needs_overlaps``)."""

    config: ALConfig
    cycle: int
    regions: RegionMaps
    overlaps: bool


@dataclass
class SceneResult:
    """One scene's scoring: its :class:`~viewal.selection.RegionPool` (per-region scores, sizes,
    availability, features) and its overlap table (``viewal.kernels.OverlapTable``, or None when the
    selector does not use overlaps)."""

    scene_id: str
    pool: RegionPool
    overlap: Any = None


@contextlib.contextmanager
def kept_torch_threads() -> Iterator[int]:
    """Run a block with torch's intra-op thread count as it was on entry (yields that count).

    Numba's OpenMP threading layer, when its thread pool starts (the first parallel kernel of a process),
    sets the calling thread's OpenMP thread count to ``NUMBA_NUM_THREADS`` (the CPU count by default), and
    torch's intra-op pool follows that count. Without this, a process's first scene would be inferred with
    the caller's threads (1 on a Ray worker with one CPU, ``--threads`` on the driver) and every later one
    with Numba's, and convolutions summed in another order differ in their last bits (up to ~1e-5
    relative on the pooled scores).
    """
    import torch

    n = torch.get_num_threads()
    try:
        yield n
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def score_scene(model, scorer, job: SceneJob, spec: ScoringSpec) -> SceneResult:
    """Score one scene: MC inference (masks seeded by run seed, cycle and scene), the scorer's pixel maps,
    pooled over the scene's regions, and its overlap table when ``spec.overlaps``. The one scoring
    function of both executors. Torch keeps the thread count it had on entry (:func:`kept_torch_threads`)."""
    with kept_torch_threads():
        return _score_scene(model, scorer, job, spec)


def _score_scene(model, scorer, job: SceneJob, spec: ScoringSpec) -> SceneResult:
    c, frames = spec.config, job.frames
    sp = spec.regions.stack(frames)
    # MC-dropout masks and random scores keyed by (run seed, cycle, scene): a resumed run, or a scene scored
    # on another machine, draws what the uninterrupted local run drew
    ctx = NeedContext(model=model, frames=frames, mc_passes=c.mc_passes, batch_size=c.infer_batch_size,
                      device=c.device, options={"superpixels": sp, "size": c.size},
                      seed=stream_seed(c.seed, "mc", spec.cycle, job.scene_id))
    inputs = build_scene_inputs(frames, sp, scorer.needs, **compute_needs(scorer.needs, ctx),
                                rng=stream_rng(c.seed, "score", spec.cycle, job.scene_id))
    scores = scorer(inputs)
    pool = build_pool(job.scene_id, [f.frame_id for f in frames], sp, scores.pixel, scores.view,
                      labelled=job.labelled, features=scorer.region_features(inputs))
    table = scene_overlap_table(frames, c, spec.regions, sp) if spec.overlaps else None
    kill_point("scene", spec.cycle)
    return SceneResult(job.scene_id, pool, table)


# --------------------------------------------------------------------------------------------- store

_POOL_FIELDS = ("offsets", "score", "view", "sizes", "available")
_TABLE_FIELDS = ("t_frame", "t_sp", "s_frame", "s_sp", "coverage", "n_superpixels")


class SceneStore:
    """Per-scene scoring results of the current cycle, one ``.npz`` per scene under
    ``directory/c<cycle>/``, each written atomically (``viewal.core.io.atomic_path``) and tagged with a key
    (model weights, settings, labels); a file with another key, or unreadable, counts as absent."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, cycle: int, scene_id: str) -> Path:
        name = scene_id if re.fullmatch(r"[A-Za-z0-9_.-]+", scene_id) and not scene_id.startswith(".") \
            else "scene-" + hashlib.sha1(scene_id.encode()).hexdigest()[:16]
        return self.directory / f"c{int(cycle)}" / f"{name}.npz"

    def save(self, cycle: int, result: SceneResult, key: str) -> Path:
        p = result.pool
        arrays = {f: getattr(p, f) for f in _POOL_FIELDS}
        arrays.update(key=np.array(key), scene_id=np.array(result.scene_id), frame_ids=np.array(p.frame_ids, dtype=str))
        if p.features is not None:
            arrays["features"] = p.features
        if result.overlap is not None:
            arrays.update({f"overlap_{f}": getattr(result.overlap, f) for f in _TABLE_FIELDS})
        path = self.path(cycle, result.scene_id)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        return path

    def load(self, cycle: int, scene_id: str, key: str) -> SceneResult | None:
        """The stored result of ``scene_id`` in ``cycle`` when its key is ``key``; else None."""
        path = self.path(cycle, scene_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key or str(z["scene_id"]) != scene_id:
                    return None
                fids = [str(x) for x in z["frame_ids"]]
                pool = RegionPool(scene_ids=[scene_id] * len(fids), frame_ids=fids,
                                  features=z["features"] if "features" in z.files else None,
                                  **{f: z[f] for f in _POOL_FIELDS})
                overlap = None
                if "overlap_coverage" in z.files:
                    overlap = OverlapTable(**{f: z[f"overlap_{f}"] for f in _TABLE_FIELDS})
        except (OSError, ValueError, KeyError):  # unreadable: score the scene again
            return None
        return SceneResult(scene_id, pool, overlap)

    def clear(self, keep_cycle: int | None = None) -> None:
        """Delete the stored results of every cycle but ``keep_cycle`` (all of them when None)."""
        if not self.directory.is_dir():
            return
        for d in self.directory.glob("c*"):
            if d.is_dir() and d.name != f"c{keep_cycle}":
                for f in d.iterdir():
                    f.unlink(missing_ok=True)
                d.rmdir()


# --------------------------------------------------------------------------------------------- executors

class LocalExecutor:
    """Scores the scenes one after the other in this process."""

    name = "local"

    def map(self, model, scorer, jobs: Sequence[SceneJob], spec: ScoringSpec) -> Iterator[SceneResult]:
        for job in jobs:
            yield score_scene(model, scorer, job, spec)


def require_ray():
    """The ``ray`` module, or ValueError saying what to install."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"scoring on Ray needs the 'ray' package, which is not installed: {RAY_INSTALL}") from None
    return ray


#: environment variables a Ray worker must see as the driver does (Numba's threading layer, the fault tests)
FORWARDED_ENV = ("NUMBA_THREADING_LAYER", "VIEWAL_TEST_KILL_AT", "VIEWAL_TEST_KILL_ONCE")


def _use_task_cpus() -> int:
    """Torch's and Numba's thread counts in a Ray worker: the task's CPUs (at least 1), whatever the worker's
    environment says (``OMP_NUM_THREADS``, Numba's default of every CPU). Returns that count."""
    import numba
    import ray
    import torch

    n = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))  # first: it may start Numba's pool
    torch.set_num_threads(n)
    return n


def _ray_task(payload, job: SceneJob, spec: ScoringSpec) -> SceneResult:
    """Body of a Ray task: ``payload`` is the (model, scorer) pair from the object store. The scene is scored
    with as many threads as the task has CPUs (:func:`_use_task_cpus`)."""
    model, scorer = payload
    _use_task_cpus()
    return score_scene(model, scorer, job, spec)


class RayExecutor:
    """Maps the scenes to Ray tasks, yields their results as they complete.

    Args:
        address: Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://..."``); None: the one
            ``RAY_ADDRESS`` names, else a new local Ray started here (``"auto"`` joins the cluster
            ``ray start`` runs on this machine). Ignored when Ray is already initialised in this process
            (e.g. ``ray.init(num_cpus=2)`` by the caller).
        max_retries: times a task is re-run when its worker process dies (Ray's ``max_retries``).
        num_cpus, num_gpus: resources of one task (default: 1 CPU, and 1 GPU when ``device`` is CUDA).
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, num_cpus: float = 1,
                 num_gpus: float | None = None) -> None:
        self.address, self.max_retries = address, int(max_retries)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    def init(self):
        """Initialise Ray when this process has not (``address``; the forwarded environment)."""
        import os

        ray = require_ray()
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            # no address: RAY_ADDRESS, else a new local Ray (never, silently, a cluster `ray start` left here)
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None)
        return ray

    def map(self, model, scorer, jobs: Sequence[SceneJob], spec: ScoringSpec) -> Iterator[SceneResult]:
        ray = self.init()
        if not jobs:
            return
        payload = ray.put((copy.deepcopy(model).cpu(), scorer))  # the weights, once per cycle
        gpus = self.num_gpus if self.num_gpus is not None else (1 if str(spec.config.device).startswith("cuda")
                                                                else 0)
        task = ray.remote(_ray_task).options(max_retries=self.max_retries, num_cpus=self.num_cpus, num_gpus=gpus)
        spec_ref = ray.put(spec)
        pending = {task.remote(payload, job.light(), spec_ref): job.scene_id for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    scene = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:
                        raise RuntimeError(f"scene {scene}: scoring failed on Ray (max_retries={self.max_retries}): "
                                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        finally:
            for ref in pending:  # the driver stopped early (an error, a closed generator): drop the rest
                ray.cancel(ref, force=True)


def make_executor(config: ALConfig) -> LocalExecutor | RayExecutor:
    """The executor an ``ALConfig`` asks for (``executor``, ``ray_address``, ``max_retries``)."""
    if config.executor == "ray":
        require_ray()
        return RayExecutor(config.ray_address, max_retries=config.max_retries)
    return LocalExecutor()
