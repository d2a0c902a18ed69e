"""The region-query API: an active learner over an RGB-D dataset, its state in a SQLite ledger.

>>> import viewal                                                         # doctest: +SKIP
>>> learner = viewal.ActiveLearner("data/demo", scorer="view_entropy", ledger="run.sqlite")
>>> queries = learner.query(budget_pixels=20_000)   # list of RegionQuery (trains first if needed)
>>> q = queries[0]; q.scene_id, q.frame_id, q.mask.shape, q.score
>>> learner.label(queries)                          # simulated oracle from ground truth
>>> learner.add_labels(q.frame_key, q.mask, labels) # or labels from a person ((H, W) int, 255 = none)
>>> learner.fit(); learner.evaluate()               # {"miou": ..., "per_class_iou": [...]}

One cycle = fit on the labelled pixels → score the unlabelled pool scene by scene with the scorer →
pool the pixel scores over regions (superpixels or whole images) → select under a pixel budget
(ViewAL's selection with cross-view dedup, or greedy) → label. Everything that must survive a crash
(config, seed set, queries, labels, results) is in the ledger; models are retrained from it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

import viewal.scoring.scorers as scorers
from viewal.core.config import (
    EXECUTION_SETTINGS,
    LEGACY_DEPTH_TEST_KEYS,
    ALConfig,
    run_identity,
    upgrade_config,
)
from viewal.core.faults import kill_point
from viewal.core.io import atomic_path, load_torch_file
from viewal.core.progress import progress_bar
from viewal.core.seeding import fit_seed, stream_rng
from viewal.datasets import IGNORE_INDEX, RGBDDataset, open_dataset
from viewal.kernels import check_backend
from viewal.kernels.propagate import NO_LABEL
from viewal.nn.aids import FitState, fit_steps, model_aids, run_steps
from viewal.nn.distributed import is_main
from viewal.nn.heads import combine_extra_losses
from viewal.nn.metrics import label_class_counts, predicted_class_shares
from viewal.nn.model import SegModel, build_model
from viewal.nn.predictor import (
    MODEL_FREE_NEEDS,
    CallablePredictor,
    FilePredictor,
    ModulePredictor,
    OwnModule,
    Predictor,
    module_device,
    weights_digest,
)
from viewal.nn.train import (
    CheckpointError,
    TrainConfig,
    checkpoint_meta,
    confusion_matrix,
    epochs_for,
    evaluate,
    iou_from_confusion,
    load_checkpoint,
    save_checkpoint,
)
from viewal.runs.ledger import LabelItem, Ledger, LedgerError
from viewal.runs.oracle import Oracle
from viewal.runs.recipe import model_fingerprint, training_key
from viewal.runs.seedset import resolve_seed_set, seed_frame_indices
from viewal.scoring.executors import (
    RegionMaps,
    SceneJob,
    SceneStore,
    ScoringSpec,
    make_executor,
    scene_overlap_table,
)
from viewal.scoring.needs import NeedContext
from viewal.scoring.propagation import (
    PropagationStore,
    covered_regions,
    ledger_propagation,
    pool_scenes,
    propagated_items,
    propagation_metrics,
)
from viewal.selection import (
    RegionQuery,
    SelectionContext,
    concat_pools,
    overlap_adjacency,
    queries_from_selection,
    with_random_share,
)

__all__ = ["ALConfig", "ActiveLearner", "own_model", "OWN_CHECKPOINT_FORMAT", "kernel_backend_for",
           "RegionQuery", "epochs_for", "train_config", "training_key",
           "model_fingerprint", "pool_signature", "integer_class_ids", "EXECUTION_SETTINGS", "LEGACY_DEPTH_TEST_KEYS",
           "run_identity", "upgrade_config", "in_pool_order"]


def train_config(c: ALConfig, n_items: int, seed: int | None = None) -> TrainConfig:
    """The training recipe of an :class:`ALConfig` for ``n_items`` labelled items, trained with ``seed`` (None: the
    run's seed) (:meth:`TrainConfig.from_settings <viewal.nn.train.TrainConfig.from_settings>`)."""
    return TrainConfig.from_settings(c.training, c.execution, n_items, c.seed if seed is None else seed)


def dataset_spelling(stored: str | None, root: str | Path) -> str:
    """The dataset path to store in a ledger: ``stored`` when it names the same folder as ``root`` (another
    spelling of it: relative vs absolute, a symlink), so that a resume from another working directory is not
    refused as a changed dataset; ``str(root)`` otherwise (a different folder is then named by the config check)."""
    if stored and stored != str(root):
        try:
            if Path(stored).resolve(strict=True) == Path(root).resolve(strict=True):
                return stored
        except OSError:  # the stored path does not exist from here
            pass
    return str(root)


def pool_signature(frame_keys: Sequence[str]) -> dict:
    """``{"frames": n, "sha1": ...}`` of a pool's frame keys (order-free): a ledger refuses another pool."""
    h = hashlib.sha1("\n".join(sorted(frame_keys)).encode()).hexdigest()
    return {"frames": len(frame_keys), "sha1": h}


def in_pool_order(keys: Sequence[str], pool: Sequence) -> list[str]:
    """Frame keys in the pool's order: the order a fit takes its labelled frames in, so the same labels train
    alike whatever order they were recorded in (people's imports arrive in any order)."""
    order = {f.key: i for i, f in enumerate(pool)}
    return sorted(keys, key=order.__getitem__)


def _scalars(d: dict, prefix: str = "") -> dict:
    """Numbers and strings of a (nested) stats dict, flattened to ``a.b`` keys (for the ledger's JSON)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, np.integer, np.floating)):
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") else v
    return out


def integer_class_ids(labels: np.ndarray, what: str) -> np.ndarray:
    """``labels`` as int64 when every value is a whole number; a float 1.5 (or NaN) raises ValueError
    naming ``what`` instead of being truncated to class 1."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64, copy=False)
    if labels.dtype.kind == "b" or labels.dtype.kind not in "f":
        raise ValueError(f"{what} must be integer class ids, got dtype {labels.dtype}")
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    if bad.any():
        raise ValueError(f"{what} must be integer class ids, got {labels[bad].ravel()[:3].tolist()}")
    return labels.astype(np.int64)


def kernel_backend_for(device: str, backend: str) -> str:
    """The kernel backend of a run on ``device``: on a CUDA device the CUDA kernels replace the Numba CPU ones
    (the NumPy reference, when asked for, stays); elsewhere ``backend`` as it is."""
    return "cuda" if str(device).startswith("cuda") and backend == "cpu" else backend


#: checkpoint format of a user's own network (its state dict and the run's meta; the module is the user's)
OWN_CHECKPOINT_FORMAT = "viewal-own-module"


def own_model(dataset: RGBDDataset, cfg: ALConfig, scorer, *, model=None, predict=None,
              probabilities: str | Path | None = None, fit: bool | None = None):
    """The predictor (``viewal.nn.predictor``) of a user's own network and whether viewal trains it: ``(None, True)``
    for viewal's DeepLabv3+.

    Args:
        model: an ``nn.Module`` ((B, 3, H, W) images normalised with ImageNet's mean/std -> (B, C, H, W) logits;
            wrap it in ``viewal.nn.predictor.OwnModule`` for another normalisation); trained unless ``fit=False``.
        predict: ``frames -> (N, C, H, W)`` probabilities (or a ``viewal.nn.predictor.Predictor``); never trained.
        probabilities: a folder of probability files (``viewal.nn.predictor.FilePredictor``); never trained.

    Everything is checked before any work: one source at most, a scorer that needs probabilities only (and
    MC samples only from a source that gives them), no training aid that needs viewal's network, the module
    on the run's device, and one pool frame predicted (shape, class count, NaN, sums to 1)."""
    import torch

    given = [n for n, v in (("model", model), ("predict", predict), ("probabilities", probabilities)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one source of probabilities: model, predict or probabilities (got {', '.join(given)})")
    if fit is not None and not isinstance(fit, (bool, np.bool_)):
        raise ValueError(f"fit must be True or False, got {fit!r}")
    if not given:
        if fit is False:
            raise ValueError("fit=False keeps the weights of a model of yours (model=...); viewal's own DeepLabv3+ "
                             "is trained on the labels")
        return None, True
    C = dataset.num_classes
    if model is not None:
        plain = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)} if isinstance(model, SegModel) else {}
        own = model if isinstance(model, OwnModule) else OwnModule(model, C, **plain)  # a SegModel normalises itself
        if own.num_classes != C:
            raise ValueError(f"model: an OwnModule of {own.num_classes} classes, the dataset has {C}")
        where = module_device(own.module)
        if where is not None and where.type != torch.device(cfg.device).type:
            raise ValueError(f"model: its weights are on {where}, the run's device is {cfg.device!r}; move the model "
                             f"(model.to({cfg.device!r})) or set device={where.type!r}")
        pred: Predictor = ModulePredictor(own)
    elif predict is not None:
        pred = predict if isinstance(predict, Predictor) else CallablePredictor(predict, C)
    else:
        pred = FilePredictor(probabilities, C)
    if fit and not pred.trainable:
        raise ValueError(f"fit=True: viewal cannot train {pred.kind} (it never touches that network); train it "
                         f"yourself and give its new probabilities each cycle")
    fits = pred.trainable if fit is None else bool(fit)
    free = [n for n in scorers.names() if scorers.get(n).needs <= MODEL_FREE_NEEDS]
    other = sorted(set(scorer.needs) - MODEL_FREE_NEEDS)
    if other:
        raise ValueError(f"scorer {cfg.scorer!r} needs {', '.join(other)} from viewal's own DeepLabv3+; with a "
                         f"network of yours use a scorer that needs probabilities only: {', '.join(free)}")
    if "mc_probs" in scorer.needs and not pred.samples:
        how = ("the model has no dropout layer" if pred.trainable else
               "the predict callable gives one sample (pass a Predictor with samples=True)" if predict is not None
               else "the probability files hold one sample each, not (T, C, H, W)")
        raise ValueError(f"scorer {cfg.scorer!r} needs MC samples, and {how}; use a scorer that needs one pass, "
                         f"e.g. view_entropy or entropy")
    for name, off in (("augment", "none"), ("pseudo_labels", "none"), ("auxiliary", "none")):
        if getattr(cfg, name) != off:
            raise ValueError(f"{name}={getattr(cfg, name)!r} trains viewal's own DeepLabv3+; with a network of "
                             f"yours keep {name}={off!r}")
    pool = dataset.split("train")
    if pool:  # one frame through the whole path now, not a shape error mid-cycle
        pred.predict(pool[:1], passes=min(2, cfg.mc_passes), seed=0, batch_size=1, device=cfg.device, size=cfg.size)
    return pred, fits


class ActiveLearner:
    """Active learning of semantic segmentation on an RGB-D dataset, one region query at a time.

    Args:
        dataset: an :class:`~viewal.datasets.RGBDDataset` or a path (opened with ``open_dataset``).
        scorer: scorer name (overrides ``config.scorer``).
        ledger: SQLite file holding the run's state (created, or resumed when it exists).
        config: :class:`ALConfig`; keyword ``overrides`` replace its fields.
        model, predict, probabilities: a network of yours instead of viewal's DeepLabv3+ (:func:`own_model`,
            ``docs/own_model.md``): an ``nn.Module`` giving logits, a callable giving probabilities, or a folder
            of probability files. Scorers that need probabilities only (and MC samples only from a source that
            gives them) work with all three.
        fit: with ``model``: train it on the labels each cycle (True, the default) or keep its weights (False).

    The pool is the ``train`` split; ``val`` selects the checkpoint; ``test`` is reported by
    :meth:`evaluate`. Ground-truth labels of the pool are read only by the oracle (:meth:`label`) and
    the seed set.
    """

    def __init__(self, dataset: RGBDDataset | str | Path, scorer: str | None = None,
                 ledger: str | Path = "run.sqlite", *, config: ALConfig | None = None, model=None,
                 predict=None, probabilities: str | Path | None = None, fit: bool | None = None,
                 **overrides) -> None:
        self.dataset = dataset if isinstance(dataset, RGBDDataset) else open_dataset(dataset)
        cfg = config or ALConfig()
        if scorer is not None:
            overrides["scorer"] = scorer
        if overrides:
            cfg = ALConfig.from_json({**cfg.to_json(), **overrides})
        self.config = cfg
        if cfg.depth_test.backend == "cuda":
            check_backend("cuda")  # no GPU: say so now, not as a raw CudaSupportError mid-cycle
        if str(cfg.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device {cfg.device!r}: no CUDA GPU found (torch.cuda.is_available() is False); "
                                 f"use device='cpu'")
            backend = kernel_backend_for(cfg.device, cfg.depth_test.backend)
            if backend != cfg.depth_test.backend:  # the kernels run where the network does
                check_backend(backend)
                cfg = replace(cfg, depth_test=replace(cfg.depth_test, backend=backend))
                self.config = cfg
        self.executor = make_executor(cfg)  # no Ray installed for executor="ray": says what to install, now
        self.scorer = scorers.get(cfg.scorer, depth_test=cfg.depth_test, **cfg.scorer_options)
        # how the pooled scores become a selection
        self.selector = with_random_share(self.scorer.selector(dedup=cfg.dedup), cfg.random_share)
        # a network of the user's (a module, a callable or probability files) instead of viewal's DeepLabv3+:
        # checked against the dataset, the scorer and the settings before anything is stored
        self.own, self.fits = own_model(self.dataset, cfg, self.scorer, model=model, predict=predict,
                                        probabilities=probabilities, fit=fit)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        kind = self.own.kind if self.own is not None else "viewal"
        if self.ledger.meta("model") not in (None, kind):
            raise LedgerError(f"{self.ledger.path}: its run scores with {self.ledger.meta('model')!r} models, this "
                              f"learner with {kind!r}; resume it the way it was started, or start a new run")
        self.ledger.set_meta("model", kind)
        stored = self.ledger.config()
        if cfg.seed_set == "auto":  # resolved once, when the run starts, and stored with it
            prior = stored["al"].get("seed_set", "auto") if isinstance(stored.get("al"), dict) else None
            has = [] if prior is not None else [f.has_labels for f in self.dataset.split("train")]
            cfg = replace(cfg, seed_set=resolve_seed_set("auto", has, prior))
            self.config = cfg
        if isinstance(stored.get("al"), dict):
            # a ledger written before a setting existed ran with that setting's default, and one written
            # before the depth test was one setting with its equivalent (upgrade_config): upgrading viewal
            # must not make an old run unresumable
            try:
                old = json.loads(json.dumps(ALConfig.from_json(stored["al"]).to_json()))
            except ValueError as e:
                raise LedgerError(f"{self.ledger.path}: its stored config cannot be read: {e}") from None
            if old["seed_set"] == "auto":  # stored before the seed set had sources: it came from the ground truth
                old["seed_set"] = "oracle"
            # how a run executes (the execution section: threads, device, inference batch, executor; and the
            # kernel backend) is not what it is: resuming on another machine keeps the run
            new = json.loads(json.dumps(cfg.to_json()))
            if run_identity(old) == run_identity(new):
                old = new
            if old != stored["al"]:
                self.ledger.set_config({**stored, "al": old}, overwrite=True)
        # the seed set is made (and refused when the data cannot give it) before anything of the run is stored
        seed = self._seed_set(self.dataset.split("train")) if not self.ledger.labelled_frames() \
            and not self.ledger.queries(0) else None
        self.ledger.set_config({"al": cfg.to_json(),
                                "dataset": dataset_spelling(stored.get("dataset"), self.dataset.root),
                                "num_classes": self.dataset.num_classes})
        self.pool = self.dataset.split("train")
        if not self.pool:
            raise ValueError(f"{self.dataset.root}: the train split is empty (the active-learning pool)")
        self._check_pool()
        self.val = self.dataset.split("val") if "val" in self.dataset.splits else []
        self.test = self.dataset.split("test") if "test" in self.dataset.splits else []
        self.oracle = Oracle(self.dataset, cfg.wrong_label_rate, seed=cfg.seed).resume(self.ledger)
        # viewal's DeepLabv3+ (None until the first fit), or the user's OwnModule or Predictor
        self.model = None if self.own is None else (self.own.own if self.own.trainable else self.own)
        self._initial_state = None if self.own is None or not self.own.trainable else \
            {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._model_labels = -1  # labelled-pixel count the current model was trained on
        self._model_fingerprint = ""  # model_fingerprint of the current model's recipe and labels
        self.model_steps = -1  # SGD steps of the fit that made the current model (-1: unknown)
        self.fit_stats: dict = {}  # what a training option measured (theta deviation, pseudo-label precision)
        self._region_maps = RegionMaps.of(self.dataset, cfg)
        # per-scene scoring results of the running cycle, beside the ledger (resume without rescoring)
        self.scene_store = SceneStore(self.ledger.path.with_name(self.ledger.path.stem + ".scores"))
        self._overlaps: dict[str, object] = {}  # scene -> overlap table, from the last scoring
        # each pool scene's propagated labels (derived from the ledger's; kept beside it, keyed by what made them)
        self.propagation_store = PropagationStore(self.ledger.path.with_name(self.ledger.path.stem + ".propagated"))
        if seed is not None and isinstance(seed[0], LabelItem):  # one ledger transaction: the seed set's labels,
            self.ledger.record_labels(0, seed)
        elif seed is not None:  # or its whole frames asked from people
            self.ledger.record_queries(0, seed)

    # ------------------------------------------------------------------------------------------ pool
    def _check_pool(self) -> None:
        """A ledger holds the labels of one pool: a resume over other frames (another ``--frame-step``,
        data folder or split) is refused here, naming the difference, not later as an unknown frame."""
        keys = [f.key for f in self.pool]
        sig = pool_signature(keys)
        stored = self.ledger.meta("pool")
        if stored is None:
            self.ledger.set_meta("pool", sig)
        elif stored != sig:
            raise LedgerError(f"{self.ledger.path}: made with a pool of {stored['frames']} train frames, this dataset "
                              f"({self.dataset.root}) gives {sig['frames']} other ones; resume with the same data, "
                              f"splits and frame step, or start a new run")
        pool = set(keys)
        stray = [k for k in self.ledger.labelled_frames() if k not in pool]
        if stray:
            raise LedgerError(f"{self.ledger.path}: labels for frames outside this pool (e.g. {stray[0]}); "
                              f"resume with the same data, splits and frame step")

    @property
    def pool_pixels(self) -> int:
        """Number of pixels of the pool (the denominator of the labelled fraction)."""
        return len(self.pool) * self.dataset.height * self.dataset.width

    def labelled_fraction(self) -> float:
        return self.ledger.labelled_pixels() / self.pool_pixels

    def regions(self, frame) -> np.ndarray:
        """(H, W) int32 region map of a pool frame: its superpixels, or zeros for whole-image selection."""
        return self._region_maps(frame)

    def _scenes(self) -> list[tuple[str, list]]:
        by: dict[str, list] = {}
        for f in self.pool:
            by.setdefault(f.scene_id, []).append(f)
        return list(by.items())

    def _seed_set(self, pool: Sequence) -> list:
        """The run's seed set (:mod:`viewal.runs.seedset`), not yet recorded: the picked frames labelled from the
        ground truth (``seed_set="oracle"``: ``LabelItem`` s), the picked frames as whole-frame queries of cycle 0
        for people (``"ask"``: ``RegionQuery`` s), or the labels the dataset already has on pool frames
        (``"labels"``: ``LabelItem`` s). Raises ValueError naming the frame when the data cannot give it."""
        c = self.config
        if c.seed_set == "labels":
            items = []
            for f in pool:
                if not f.has_labels:
                    continue
                lab = np.asarray(f.labels, dtype=np.int64)
                if (lab != IGNORE_INDEX).any():
                    items.append(LabelItem(f.scene_id, f.frame_id, lab != IGNORE_INDEX, lab, source="human",
                                           origin=f"dataset labels {self.dataset.root}"))
            if not items:
                raise ValueError(f"{self.dataset.root}: seed_set='labels' takes the pool frames' own labels as the "
                                 f"seed set, but no train-split frame has a labelled pixel; use seed_set='ask'")
            return items
        picks = [pool[i] for i in seed_frame_indices(pool, c.seed_fraction, c.seed, c.seed_rule)]
        hw = (self.dataset.height, self.dataset.width)
        if c.seed_set == "ask":
            return [RegionQuery(f.scene_id, f.frame_id, np.ones(hw, bool), score=0.0, region_id=-1, cycle=0)
                    for f in picks]
        unlabelled = [f.key for f in picks if not f.has_labels]
        if unlabelled:
            raise ValueError(f"seed_set='oracle' labels the seed set from the ground truth, but frame {unlabelled[0]} "
                             f"has no labels ({len(unlabelled)} of {len(picks)} seed frames); use seed_set='ask' "
                             f"(people label them) or 'labels' (the frames already labelled)")
        return [LabelItem(f.scene_id, f.frame_id, np.ones(hw, bool), np.asarray(f.labels), source="seed")
                for f in picks]

    # ------------------------------------------------------------------------------------------ overlap
    def overlap_table(self, scene_id: str, frames: Sequence):
        """Superpixel overlap table of a scene's pool frames (computed once, cached beside the dataset;
        ``viewal.scoring.executors.scene_overlap_table``)."""
        if any(f.scene_id != scene_id for f in frames):
            raise ValueError(f"overlap_table: frames of other scenes than {scene_id!r}")
        return scene_overlap_table(frames, self.config, self._region_maps)

    # ------------------------------------------------------------------------------------------ model
    def train_config(self, n_items: int | None = None, cycle: int | None = None) -> TrainConfig:
        """The :class:`~viewal.nn.train.TrainConfig` of this run's fit of ``cycle`` (None: the current one) on
        ``n_items`` items (None: the labelled frames) (see :func:`train_config`, :meth:`fit_seed`)."""
        return train_config(self.config, n_items if n_items is not None else len(self.ledger.labelled_frames()),
                            seed=self.fit_seed(cycle))

    @property
    def train_seed(self) -> int:
        """Seed of the model initialisation and training (``config.train_seed``, else ``config.seed``)."""
        return self.config.seed if self.config.train_seed is None else int(self.config.train_seed)

    def fit_seed(self, cycle: int | None = None) -> int:
        """The seed of the fit of ``cycle`` (None: the current cycle): :func:`viewal.core.seeding.fit_seed` of
        :attr:`train_seed` and the cycle, so each cycle's fit draws its own initialisation and batches."""
        return fit_seed(self.train_seed, self.ledger.cycle() if cycle is None else int(cycle))

    def training_items(self) -> list[tuple]:
        """(frame, label map, {"superpixels": region map}) of every frame with labels in the ledger
        (255 = unlabelled); the region maps let training hooks work per region (e.g. the loss head).

        With ``config.propagate`` the label maps also carry the propagated labels (:meth:`propagation`; a human
        label always wins), the pool frames with propagated labels only are items too, and every item has a
        ``"weight"`` map (H, W) float32: ``config.propagate_weight`` on propagated pixels, 1 elsewhere."""
        if self.config.propagate:
            return self._propagated_items()
        items = []
        for key in in_pool_order(self.ledger.labelled_frames(), self.pool):
            f = self.dataset.frame(key)
            items.append((f, self.ledger.label_map(key, (self.dataset.height, self.dataset.width)),
                          {"superpixels": self.regions(f)}))
        return items

    def _propagated_items(self) -> list[tuple]:
        """:meth:`training_items` of a propagating run, in pool order
        (``viewal.scoring.propagation.propagated_items``)."""
        items = propagated_items(self.propagation(), self.pool, self.ledger.labelled_frames(),
                                 self.config.propagate_weight)
        return [(f, labels, {"superpixels": self.regions(f), "weight": w}) for f, labels, w in items]

    # ------------------------------------------------------------------------------------------ propagation
    def propagation(self, scene_id: str | None = None):
        """The propagation of the ledger's human labels (``viewal.scoring.propagation``), pool frames only.

        Computed from the ledger's labels, the run's ``depth_test`` and ``propagate_rule`` whether or not the run
        trains on it (``config.propagate``), and kept beside the ledger (:attr:`propagation_store`). Returns the
        :class:`~viewal.scoring.propagation.ScenePropagation` of ``scene_id``, or of every pool scene as a dict when
        None. A scene without pool frames raises KeyError."""
        hw = (self.dataset.height, self.dataset.width)
        if scene_id is None:
            return ledger_propagation(self.pool, self.ledger, self.config, hw, store=self.propagation_store)
        frames = dict(pool_scenes(self.pool)).get(scene_id)
        if frames is None:
            raise KeyError(f"propagation: {scene_id!r} has no pool frames (propagation reaches pool frames only)")
        return ledger_propagation(frames, self.ledger, self.config, hw, store=self.propagation_store)[scene_id]

    def propagated_labels(self, frame_key: str) -> np.ndarray:
        """(H, W) int64: the propagated classes of a pool frame, 255 elsewhere (human-labelled pixels included;
        ``ledger.label_map`` has those). A validation or test frame raises ValueError: it never gets labels."""
        f = self.dataset.frame(frame_key)
        if f.key not in {g.key for g in self.pool}:
            raise ValueError(f"propagated_labels: {f.key} is not a pool frame; labels reach pool frames only")
        sp = self.propagation(f.scene_id)
        i = sp.index(f.frame_id)
        return np.where(sp.result.propagated[i], sp.result.labels[i], NO_LABEL).astype(np.int64)

    def known_masks(self, frames: Sequence) -> np.ndarray:
        """(N, H, W) bool, what selection counts as labelled on one scene's pool ``frames``: the ledger's human
        masks and, with ``config.propagate``, every region at least ``config.propagate_known`` of whose pixels
        carry propagated labels (``viewal.scoring.propagation.covered_regions``)."""
        hw = (self.dataset.height, self.dataset.width)
        human = np.stack([self.ledger.labelled_mask(f.key, hw) for f in frames])
        if not self.config.propagate or not frames:
            return human
        sp = self.propagation(frames[0].scene_id)
        prop = np.stack([sp.result.propagated[sp.index(f.frame_id)] for f in frames])
        return human | covered_regions(self._region_maps.stack(frames), prop, self.config.propagate_known)

    def _new_model(self):
        """A freshly initialised model (seeded), prepared for the scorer and the auxiliary tasks
        (``viewal.nn.aids.model_aids``); returns (model, extra_loss). A network of the user's is reset to the
        weights it came with."""
        import torch

        if self.own is not None:
            self.model.load_state_dict(self._initial_state)
            return self.model, None

        c = self.config
        torch.manual_seed(self.fit_seed())
        model = build_model(self.dataset.num_classes, encoder=c.encoder, encoder_weights=c.init,
                            decoder_channels=c.decoder_channels)
        hooks = [self.scorer.prepare_model(model)] + [aid.prepare_model(model) for aid in model_aids(c)]
        return model, combine_extra_losses(*hooks)

    def save_model(self, path: str | Path) -> Path:
        """Checkpoint the current model (atomic), with the labelled-pixel count it was trained on (on rank 0
        only under ``torchrun``)."""
        if self.model is None:
            raise RuntimeError("save_model: no model yet; call fit() first")
        meta = {"labelled_pixels": self._model_labels, "scorer": self.config.scorer,
                "fingerprint": self._model_fingerprint, "steps": self.model_steps}
        path = Path(path)
        if not is_main():  # under torchrun every rank holds the same model: rank 0 writes it
            return path
        if self.own is not None and not self.own.trainable:
            raise RuntimeError(f"save_model: the run's probabilities come from {self.own.kind}; there are no weights "
                               f"to save")
        with atomic_path(path) as tmp:
            if self.own is not None:  # the user's network: its weights (the module itself is the user's code)
                import torch

                torch.save({"format": OWN_CHECKPOINT_FORMAT, "version": 1, "meta": meta,
                            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}, tmp)
            else:
                save_checkpoint(tmp, self.model, meta)
            kill_point("save", self.ledger.cycle())
        return path

    def current_fingerprint(self) -> str:
        """:func:`model_fingerprint` of this run's recipe and the ledger's labels now."""
        return model_fingerprint(self.config, self.ledger.labels_digest())

    def checkpoint_is_current(self, path: str | Path) -> bool:
        """True when ``path`` holds a model trained with this run's recipe on exactly the ledger's current
        labels (fingerprint and labelled-pixel count); a missing, unreadable or stale file gives False."""
        path = Path(path)
        if not path.is_file():
            return False
        try:
            meta = checkpoint_meta(path)
        except Exception:  # unreadable: retrain and overwrite
            return False
        return (meta.get("fingerprint") == self.current_fingerprint()
                and int(meta.get("labelled_pixels", -1)) == self.ledger.labelled_pixels())

    def load_model(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save_model` (it counts as trained on its labelled pixels).

        No check that it fits the ledger's labels: :meth:`checkpoint_is_current` says whether it does."""
        if self.own is not None:
            obj = load_torch_file(path)
            if not isinstance(obj, dict) or obj.get("format") != OWN_CHECKPOINT_FORMAT:
                raise CheckpointError(f"{path}: not a checkpoint of a network of yours saved by viewal")
            try:
                self.model.load_state_dict(obj["state_dict"])
            except RuntimeError as e:
                raise CheckpointError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]})") from None
            self.model.eval()
        else:
            model, _ = self._new_model()
            self.model = load_checkpoint(path, model).eval()
        meta = checkpoint_meta(path)
        self._model_labels = int(meta.get("labelled_pixels", -1))
        self._model_fingerprint = str(meta.get("fingerprint", ""))
        self.model_steps = int(meta.get("steps", -1))

    def fit_steps(self) -> list:
        """The ordered steps of a fit (``viewal.nn.aids.fit_steps``): the fit on the labelled pixels, then the
        training aids of the config (max-entropy augmentation, pseudo-labels)."""
        hw = (self.dataset.height, self.dataset.width)
        if self.config.propagate:  # every item of a batch carries the same extras: a unit weight map
            return fit_steps(self.config, pool=self.pool, item_extras=lambda f: {"superpixels": self.regions(f),
                                                                                 "weight": np.ones(hw, np.float32)})
        return fit_steps(self.config, pool=self.pool, item_extras=lambda f: {"superpixels": self.regions(f)})

    def fit(self, progress: bool = True):
        """Re-initialise the model and train it on every label in the ledger (best-val checkpoint kept), then
        apply the training aids in order (:meth:`fit_steps`); ``fit_stats`` holds what they measured. With
        ``config.warm_start`` the new model starts from the current model's weights when there is one."""
        model, extra = self._new_model()
        if self.config.warm_start and self.model is not None:  # continue from the current (previous cycle's) model
            model.load_state_dict(self.model.state_dict())
        kill_point("train", self.ledger.cycle())
        items = self.training_items()
        state = FitState(model, items, self.val, self.train_config(len(items)), extra_loss=extra, progress=progress,
                         desc=f"{self.config.scorer} c{self.ledger.cycle()}")
        run_steps(self.fit_steps(), state)
        self.fit_stats = state.stats
        self.model = model
        self._model_labels = self.ledger.labelled_pixels()
        self._model_fingerprint = self.current_fingerprint()
        history = state.result.history if state.result is not None else []
        self.model_steps = int(history[-1]["step"]) if history else -1
        return state.result

    def evaluate(self, split: str = "test") -> dict:
        """How good the current model is, as far as the data can tell.

        With labelled frames in ``split``: mIoU and per-class IoU on them (``{"miou", "per_class_iou",
        "eval_split", "eval_frames"}``; frames of the split without labels are left out and counted in
        ``"unlabelled_eval_frames"``). Without any: ``"miou"`` is None (never an mIoU made up) and the dict holds
        what needs no ground truth: the ledger's labelled pixels and frames, pixels per class, the classes seen,
        and the model's predicted class shares on the split's frames (the pool when the split is empty)."""
        if self.model is None:
            raise RuntimeError("evaluate: no model yet; call fit() first")
        frames = self.dataset.split(split) if split in self.dataset.splits else []
        labelled = [f for f in frames if f.has_labels]
        c = self.config
        if self.own is not None and not self.own.trainable:  # probabilities only: argmax of the predictor's
            return self._evaluate_predictor(split, frames, labelled)
        if labelled:
            out = evaluate(self.model, labelled, self.dataset.num_classes, batch_size=c.infer_batch_size,
                           device=c.device, size=c.size)
            return {"miou": float(out["miou"]), "per_class_iou": [float(x) for x in np.asarray(out["per_class_iou"])],
                    "eval_split": split, "eval_frames": len(labelled),
                    "unlabelled_eval_frames": len(frames) - len(labelled)}
        hw = (self.dataset.height, self.dataset.width)
        counts = label_class_counts((self.ledger.label_map(k, hw) for k in self.ledger.labelled_frames()),
                                    self.dataset.num_classes)
        shares = predicted_class_shares(self.model, frames or self.pool, self.dataset.num_classes,
                                        batch_size=c.infer_batch_size, device=c.device, size=c.size)
        return {"miou": None, "eval_split": split if frames else "train", "eval_frames": 0,
                "unlabelled_eval_frames": len(frames),
                "class_pixels": [int(x) for x in counts], "classes_seen": [int(k) for k in np.flatnonzero(counts)],
                "predicted_class_shares": [float(x) for x in shares]}

    def _evaluate_predictor(self, split: str, frames: list, labelled: list) -> dict:
        """:meth:`evaluate` of a predictor (a callable or probability files), at the frames' own resolution."""
        c, C = self.config, self.dataset.num_classes
        target = labelled or frames or self.pool
        conf = np.zeros((C, C), np.int64)
        counts = np.zeros(C, np.int64)
        for s in range(0, len(target), c.infer_batch_size):
            batch = target[s:s + c.infer_batch_size]
            pred = self.own.predict(batch, passes=1, seed=None, batch_size=len(batch), device=c.device,
                                    size=c.size)["probs"].argmax(1)
            if labelled:
                conf += confusion_matrix(pred, np.stack([f.labels for f in batch]), C)
            counts += np.bincount(pred.ravel(), minlength=C)[:C]
        if labelled:
            miou, iou = iou_from_confusion(conf)
            return {"miou": float(miou), "per_class_iou": [float(x) for x in iou], "eval_split": split,
                    "eval_frames": len(labelled), "unlabelled_eval_frames": len(frames) - len(labelled)}
        hw = (self.dataset.height, self.dataset.width)
        have = label_class_counts((self.ledger.label_map(k, hw) for k in self.ledger.labelled_frames()), C)
        return {"miou": None, "eval_split": split if frames else "train", "eval_frames": 0,
                "unlabelled_eval_frames": len(frames), "class_pixels": [int(x) for x in have],
                "classes_seen": [int(k) for k in np.flatnonzero(have)],
                "predicted_class_shares": [float(x) for x in counts / counts.sum()]}

    # ------------------------------------------------------------------------------------------ the cycle
    @property
    def cycle(self) -> int:
        """The open cycle (0: the seed set's)."""
        return self.ledger.cycle()

    def results(self) -> list[dict]:
        """One dict per finished cycle, in order: ``cycle``, ``miou``, ``labelled_fraction``, the costs
        (``regions``, ``frames``), the fit's ``steps`` and what propagation added (the ledger's cycle metrics)."""
        return self.ledger.results()

    def close(self) -> None:
        """Close the ledger and let go of the model (a closed learner's run resumes from its ledger)."""
        self.ledger.close()
        self.model = None

    def __enter__(self) -> ActiveLearner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run_cycle(self, budget_pixels: int | None = None, *, checkpoint: str | Path | None = None,
                  previous: str | Path | None = None, progress: bool = True) -> dict:
        """One whole cycle with the simulated oracle: open it (:meth:`open_cycle`: score the pool and select about
        ``budget_pixels``, from cycle 1 on, unless its queries are recorded already), answer its pending queries
        (:meth:`label`) and close it (:meth:`close_cycle`: fit, or load ``checkpoint`` when it was trained on
        exactly these labels; a warm start from ``previous``; evaluate; record). Returns the cycle's metrics.

        A run killed anywhere in it resumes by calling it again: queries are recorded once, answered once, and a
        current checkpoint is not trained again. People's answers go through :meth:`open_cycle`,
        :meth:`add_labels` and :meth:`close_cycle` instead (``viewal.labelling.loop``)."""
        c = self.cycle
        if c > 0 and not self.ledger.queries(c):
            if budget_pixels is None:
                raise ValueError(f"run_cycle: cycle {c} selects regions; give its budget_pixels")
            self.open_cycle(int(budget_pixels), previous, progress=progress)
        self.label()
        return self.close_cycle(checkpoint, previous, progress=progress)

    def close_cycle(self, checkpoint: str | Path | None = None, previous: str | Path | None = None, *,
                    progress: bool = True) -> dict:
        """End the current cycle: train on every label so far, evaluate, record the metrics and move on.

        ``checkpoint``: where this cycle's model is kept; a model there trained on exactly the ledger's labels
        with this recipe is loaded instead of fitting again (a killed run resumes without retraining).
        ``previous``: the previous cycle's checkpoint, the start of a warm-started fit when the learner holds
        no model (a resumed run). Returns the recorded metrics (:meth:`evaluate`, plus the labelled fraction,
        regions, frames, SGD steps and what the training aids measured)."""
        c = self.ledger.cycle()
        if not self.ledger.labelled_pixels():
            raise ValueError(f"{self.ledger.path}: cycle {c} cannot end: the ledger holds no labels yet (answer "
                             f"the {len(self.ledger.pending_queries(c))} pending queries of the seed set first)")
        if not self.fits:  # a network of the user's, trained elsewhere: its probabilities as they are
            pass
        elif checkpoint is not None and self.checkpoint_is_current(checkpoint):
            self.load_model(checkpoint)
        else:
            if self.config.warm_start and c > 0 and self.model is None and previous is not None:
                if not Path(previous).is_file():
                    raise FileNotFoundError(f"warm start of cycle {c}: the previous cycle's model {previous} is "
                                            f"missing")
                self.load_model(previous)
            self.fit(progress=progress)
            if checkpoint is not None:
                self.save_model(checkpoint)
        kill_point("evaluate", c)
        metrics = self.evaluate()
        metrics["labelled_fraction"] = self.labelled_fraction()
        metrics["fit_stats"] = _scalars(self.fit_stats)
        metrics["oracle_wrong_regions"] = self.oracle.n_wrong
        metrics["regions"] = len(self.ledger.labels())  # annotation cost: clicks (a seed frame = 1)
        metrics["frames"] = len(self.ledger.labelled_frames())
        metrics["steps"] = self.model_steps  # SGD steps of the cycle's fit
        if self.config.propagate:  # beside the costs, never inside them: those count what people labelled
            metrics.update(self.propagation_metrics())
        self.next_cycle(metrics)
        return metrics

    def propagation_metrics(self) -> dict:
        """What propagation adds to the ledger's labels now (``viewal.scoring.propagation.propagation_metrics``), and
        ``propagated_regions``: the pool regions selection counts as labelled through propagation alone."""
        scenes = self.propagation()
        out = propagation_metrics(scenes, self.pool, self.ledger.labelled_pixels())
        hw = (self.dataset.height, self.dataset.width)
        n = 0
        for sid, frames in self._scenes():
            sp = scenes[sid]
            regions = self._region_maps.stack(frames)
            prop = np.stack([sp.result.propagated[sp.index(f.frame_id)] for f in frames])
            human = np.stack([self.ledger.labelled_mask(f.key, hw) for f in frames])
            covered = covered_regions(regions, prop, self.config.propagate_known)
            for i in range(len(frames)):
                ids = np.unique(regions[i][covered[i]])
                n += int(np.setdiff1d(ids, np.unique(regions[i][human[i]])).size)
        out["propagated_regions"] = n
        return out

    def open_cycle(self, budget_pixels: int, previous: str | Path | None = None, *,
                   progress: bool = True) -> list[RegionQuery]:
        """Start the current cycle: score the pool and record its queries as pending (:meth:`query`).

        ``previous``: the previous cycle's checkpoint, loaded when the learner holds no model and it is
        current (trained on exactly the ledger's labels), so a new process does not train again."""
        if self.model is None and previous is not None and self.checkpoint_is_current(previous):
            self.load_model(previous)
        return self.query(budget_pixels, progress=progress)

    # ------------------------------------------------------------------------------------------ querying
    def score_key(self) -> str:
        """What a stored scene result must have been made with to be reused: the model's weights, the run's
        settings (those that change scores: not the executor), the cycle and the ledger's labels."""
        if self.model is None:
            raise RuntimeError("score_pool: no model yet; call fit() first")
        conf = {k: v for k, v in self.config.to_json().items() if k not in ("executor", "ray_address", "max_retries")}
        weights = self.own.key() if self.own is not None and not self.own.trainable else weights_digest(self.model)
        text = json.dumps({"weights": weights, "config": conf, "cycle": self.ledger.cycle(),
                           "labels": self.ledger.labels_digest(), "overlaps": self.selector.needs_overlaps},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()

    def score_pool(self, progress: bool = True):
        """Score every region of the pool with the scorer, scene by scene on the run's executor
        (``viewal.scoring.executors``): returns the concatenated ``RegionPool`` (with the scorer's region features
        when it has any). Each scene's result is stored as it arrives (:attr:`scene_store`); scenes already
        stored for this cycle, model and settings are not scored again."""
        c = self.config
        cycle = self.ledger.cycle()
        key = self.score_key()
        self.scene_store.clear(keep_cycle=cycle)  # results of earlier cycles are spent
        scenes = self._scenes()
        done = {sid: r for sid, _ in scenes if (r := self.scene_store.load(cycle, sid, key)) is not None}
        jobs = [SceneJob(sid, frames, self.known_masks(frames)) for sid, frames in scenes if sid not in done]
        spec = ScoringSpec(config=c, cycle=cycle, regions=self._region_maps, overlaps=self.selector.needs_overlaps)
        bar = progress_bar(total=len(scenes), initial=len(done), desc=f"score ({c.scorer}, {self.executor.name})",
                           unit="scene", disable=not progress)
        for result in self.executor.map(self.model, self.scorer, jobs, spec):
            self.scene_store.save(cycle, result, key)
            done[result.scene_id] = result
            bar.update(1)
            kill_point("score", cycle)
        bar.close()
        self._overlaps = {sid: done[sid].overlap for sid, _ in scenes if done[sid].overlap is not None}
        return concat_pools([done[sid].pool for sid, _ in scenes])

    def _adjacency_for(self, pool):
        """Overlap adjacency of ``pool`` from the scenes' overlap tables (those the scoring returned; any
        other read from the cache beside the dataset)."""
        tables = [(sid, [f.frame_id for f in frames],
                   self._overlaps[sid] if sid in self._overlaps else self.overlap_table(sid, frames))
                  for sid, frames in self._scenes()]
        return overlap_adjacency(pool, tables)

    def query(self, budget_pixels: int, progress: bool = True) -> list[RegionQuery]:
        """The next regions to label, about ``budget_pixels`` pixels in all (never over by more than one region).

        Trains the model first when labels changed since the last :meth:`fit`. The queries are recorded in
        the ledger (a resumed run gets the same queries back while they are unlabelled). The pending queries of
        the current cycle are returned as they are: in cycle 0 of a run whose seed set is asked from people
        (``seed_set="ask"``) those are the seed set's whole frames, whatever the budget.
        """
        if isinstance(budget_pixels, bool) or not isinstance(budget_pixels, (int, np.integer)) or budget_pixels < 1:
            raise ValueError(f"query: budget_pixels must be a positive integer, got {budget_pixels!r}")
        cycle = self.ledger.cycle()
        pending = self.ledger.pending_queries(cycle)
        if pending:
            return pending
        if self.ledger.queries(cycle):
            raise RuntimeError(f"cycle {cycle} already has labelled queries; call next_cycle() before querying again")
        if self.fits and (self.model is None or self._model_labels != self.ledger.labelled_pixels()):
            self.fit(progress=progress)
        pool = self.score_pool(progress=progress)
        kill_point("select", cycle)
        frames = [self.dataset.frame(s, f) for s, f in zip(pool.scene_ids, pool.frame_ids)]
        network = NeedContext(model=self.model, frames=frames, batch_size=self.config.infer_batch_size,
                              device=self.config.device, options={"size": self.config.size})
        context = SelectionContext(adjacency=lambda: self._adjacency_for(pool), network=network, progress=progress,
                                   rng=stream_rng(self.config.seed, "select", cycle))
        sel = self.selector.select(pool, int(budget_pixels), context)
        queries = queries_from_selection(pool, sel, lambda i: self.regions(frames[i]), cycle=cycle)
        recorded = self.ledger.record_queries(cycle, queries)
        self.scene_store.clear()  # the queries are in the ledger: the cycle's scene scores are spent
        kill_point("queried", cycle)
        return recorded

    # ------------------------------------------------------------------------------------------ labelling
    def label(self, queries: Sequence[RegionQuery] | None = None) -> int:
        """Answer queries with the simulated oracle (ground truth, optional wrong-label rate).

        Each answer is one ledger transaction; already-answered queries are skipped. Returns the number
        of queries labelled now.
        """
        cycle = self.ledger.cycle()
        queries = self.ledger.pending_queries(cycle) if queries is None else queries
        answered = {r["query_id"] for r in self.ledger.labels(cycle)}
        n = 0
        for q in queries:
            if q.query_id is not None and q.query_id in answered:
                continue
            source = "seed" if q.cycle == 0 else "oracle"  # cycle 0 asks the seed set's whole frames
            self.ledger.record_labels(cycle, [LabelItem.from_query(q, self.oracle.label_query(q), source)])
            n += 1
            kill_point("label", cycle)
        return n

    def add_labels(self, frame_key: str, mask: np.ndarray, labels: np.ndarray, *, scene_id: str | None = None,
                   query: RegionQuery | None = None) -> None:
        """Labels from a person: ``labels`` (H, W) int class ids (255 = ignore) inside ``mask`` (H, W) bool.

        ``frame_key`` is ``"scene/frame"`` (or a frame id, with ``scene_id``). When ``query`` is given the
        labels answer it.
        """
        frame = self.dataset.frame(frame_key if scene_id is None else f"{scene_id}/{frame_key}")
        if frame.key not in {f.key for f in self.pool}:
            split = next((n for n, keys in self.dataset.splits.items() if frame.key in keys), "no split")
            raise ValueError(f"add_labels: {frame.key} is a {split} frame; labels are accepted only for pool "
                             f"(train split) frames, or the evaluation would train on its own test data")
        mask = np.asarray(mask, dtype=bool)
        labels = np.asarray(labels)
        hw = (self.dataset.height, self.dataset.width)
        if mask.shape != hw or labels.shape != hw:
            raise ValueError(f"add_labels: mask {mask.shape} and labels {labels.shape} must both be {hw}")
        labels = integer_class_ids(labels, "add_labels: labels")
        inside = labels[mask]
        bad = (inside != IGNORE_INDEX) & ((inside < 0) | (inside >= self.dataset.num_classes))
        if bad.any():
            raise ValueError(f"add_labels: class ids {np.unique(inside[bad])[:5].tolist()} outside "
                             f"0..{self.dataset.num_classes - 1} (255 = ignore)")
        item = LabelItem(frame.scene_id, frame.frame_id, mask, labels, source="human",
                         region_id=-1 if query is None else int(query.region_id),
                         query_id=None if query is None else query.query_id)
        self.ledger.record_labels(self.ledger.cycle(), [item], overlap="allow")

    def next_cycle(self, metrics: dict | None = None) -> int:
        """Close the current cycle (recording ``metrics``) and return the new cycle number."""
        c = self.ledger.cycle()
        self.ledger.finish_cycle(c, metrics)
        return c + 1
