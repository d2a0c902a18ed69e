"""The settings of a run, at the bottom layer: five typed sections, one check per setting, and named presets.

:class:`ALConfig` is what a run is (stored in its ledger) and how it executes: the union of the sections
:class:`DataSettings`, :class:`ModelSettings`, :class:`TrainingSettings`, :class:`ScoringSettings` and
:class:`ExecutionSettings`, each a dataclass of its own. Each setting is checked once, in its section,
against the constants below; the command line takes its ``choices=`` and defaults from the same
constants and presets. Two presets (:data:`PRESETS`):

* ``cpu`` (the default of ``ALConfig()``, the Python API, the command line and the demo): the measured best
  recipe on 2 CPU cores;
* ``paper``: ViewAL's own settings (Siddiqui et al., CVPR 2020), for GPU users who want the paper's regime.

Each preset value cites the measurement or source behind it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from viewal.kernels.depth_test import DEPTH_TEST, FLAGS, DepthTest, refuse_depth_test_options
from viewal.kernels.rule import PROPAGATION_RULE, PropagationRule

__all__ = ["ALConfig", "DataSettings", "ModelSettings", "TrainingSettings", "ScoringSettings", "ExecutionSettings",
           "SECTIONS", "PRESETS", "PRESET_NAMES", "EXECUTION_SETTINGS", "LEGACY_DEPTH_TEST_KEYS", "TRAINING_FIELDS",
           "run_identity", "upgrade_config", "EXECUTORS", "SAMPLINGS", "PSEUDO_LABELS", "AUGMENTS", "AUXILIARIES",
           "REGIONS", "SUPERPIXELS", "SEED_SETS", "SEED_RULES", "preset_table"]

#: where the pool is scored: this process, or Ray tasks (``viewal.scoring.executors``)
EXECUTORS = ("local", "ray")
#: how training samples are drawn (``viewal.nn.train``)
SAMPLINGS = ("uniform", "labels", "crops")
#: pseudo-label rules (``viewal.nn.pseudo``)
PSEUDO_LABELS = ("none", "confidence", "classwise", "ups")
#: augmentation of a fit (``viewal.nn.augment``)
AUGMENTS = ("none", "max_entropy")
#: auxiliary tasks trained alongside segmentation (``viewal.nn.aids``)
AUXILIARIES = ("none", "rotation")
#: what a query asks: a superpixel, or a whole image
REGIONS = ("superpixel", "image")
#: superpixel methods (``viewal.core.superpixels``)
SUPERPIXELS = ("seeds", "slic")
#: where the seed set's labels come from (``viewal.runs.seedset``)
SEED_SETS = ("auto", "oracle", "ask", "labels")
#: how seed frames are picked (``viewal.runs.seedset``)
SEED_RULES = ("random", "spread")

#: Named presets: field -> (value, the measurement or source behind it). Fields a preset leaves out keep the
#: dataclass defaults (which are the ``cpu`` values).
PRESETS: dict[str, dict[str, tuple]] = {
    "cpu": {
        "lr": (1e-2, "docs/model.md: from the ImageNet start, 40.2 val mIoU at 1e-2 against 15.1 at ViewAL's 4e-4 "
                     "in the same few hundred CPU steps"),
        "epochs": (8, "docs/label_efficiency_warm.md: 8 passes over the labelled frames per fit, the benchmark's "
                      "recipe"),
        "min_iterations": (150, "docs/label_efficiency_warm.md: at least 150 SGD steps per fit, so that a cycle "
                                "with few labelled frames still trains"),
        "steps": (None, "steps grow with the labels (epochs, at least min_iterations)"),
        "warm_start": (True, "docs/label_efficiency_warm.md: each fit continues from the previous cycle's model; "
                             "the last model then has trained as long as the 53.3 mIoU full-data reference"),
        "sampling": ("labels", "docs/model.md: samples drawn in proportion to their labelled pixels spend the "
                               "steps on labels, not on frames with one labelled superpixel"),
        "mc_passes": (4, "docs/label_efficiency_warm.md: 4 MC passes, the benchmark's (docs/model.md: one encoder "
                         "pass serves all T)"),
        "seed_fraction": (0.02, "docs/label_efficiency_warm.md: a 2 % seed set"),
        "batch_size": (8, "docs/model.md: the CPU recipe's batch"),
        "validations": (5, "docs/model.md: 5 validations per fit, the best kept"),
        "aux_weight": (0.1, "docs/other_methods_warm.md: PAL's rotation head and loss prediction break at weight 1 "
                            "with the ImageNet start, and learn at 0.1"),
        "propagate": (True, "docs/label_efficiency_propagation.md: 3D label propagation gives 1.4-2.5x the human "
                            "labels at 99 % agreement; random superpixels with it reach 70 % of full-data mIoU with "
                            "5.9 % of the pixels labelled by a person against 12.0 % without, at equal steps"),
    },
    "paper": {
        "lr": (4e-4, "ViewAL's published commands (nihalsid/ViewAL README): --lr 0.0004"),
        "epochs": (50, "ViewAL's published commands: --epochs 50 per active-learning cycle"),
        "min_iterations": (0, "ViewAL: the epochs alone set the length of a fit"),
        "steps": (None, "ViewAL: the epochs alone set the length of a fit"),
        "warm_start": (False, "ViewAL: every cycle's fit starts again from the ImageNet start"),
        "sampling": ("uniform", "ViewAL: passes over the labelled frames"),
        "mc_passes": (20, "ViewAL: T = 20 MC-dropout passes"),
        "seed_fraction": (0.015, "ViewAL: a seed set of 1.5 % of the training frames"),
        "batch_size": (6, "ViewAL's published commands: --batch-size=6"),
        "validations": (5, "the best of 5 validations kept, as the cpu preset"),
        "aux_weight": (1.0, "PAL (Bengar et al.): the auxiliary loss at weight 1"),
        "propagate": (False, "ViewAL: each label stays in the view it was given in"),
    },
}
PRESET_NAMES = tuple(PRESETS)


def preset_table() -> str:
    """A Markdown table of the presets: setting, each preset's value, and why (docs/index.md shows it)."""
    names = list(PRESETS)
    keys = list(dict.fromkeys(k for p in PRESETS.values() for k in p))
    rows = [f"| setting | {' | '.join(names)} | why |", "|---" * (len(names) + 2) + "|"]
    for k in keys:
        vals = [repr(PRESETS[n][k][0]) if k in PRESETS[n] else "–" for n in names]
        why = "; ".join(f"{n}: {PRESETS[n][k][1]}" for n in names if k in PRESETS[n])
        rows.append(f"| `{k}` | {' | '.join(vals)} | {why} |")
    return "\n".join(rows)


#: ALConfig keys of configs stored before the depth test was one setting -> the DepthTest field they set
LEGACY_DEPTH_TEST_KEYS = {"overlap_mode": "mode", "depth_tol": "depth_tol", "kernel_backend": "backend"}

#: settings whose default changed since they were first stored: a stored config without them ran with these
STORED_BEFORE = {"warm_start": False, "aux_weight": 1.0, "propagate": False}

#: ALConfig fields that decide what a fit learns from its labels (the labels themselves are in the ledger)
TRAINING_FIELDS = ("encoder", "init", "epochs", "batch_size", "lr", "size", "min_iterations", "steps", "sampling",
                   "decoder_channels", "validations", "augment", "pseudo_labels", "auxiliary", "mc_passes")


def run_identity(al: dict) -> dict:
    """A stored ALConfig (``ALConfig.to_json()``) without its :data:`EXECUTION_SETTINGS`: two configs with
    equal identities are the same run (a ledger resumes with either)."""
    out = json.loads(json.dumps(al))
    for path in EXECUTION_SETTINGS:
        *head, last = path.split(".")
        node = out
        for k in head:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _same_test(a: DepthTest, b: DepthTest) -> bool:
    """Same decision for every point: same mode and that mode's parameter (tolerances or distance)."""
    return a.mode == b.mode and (a.depth_tol == b.depth_tol if a.mode == "z" else a.world_distance == b.world_distance)


def upgrade_config(d: dict) -> dict:
    """An ALConfig dict stored before the depth test was one setting, as today's equivalent.

    Such a config has ``overlap_mode``, ``depth_tol`` and ``kernel_backend`` (the overlap table's test and
    backend) and, for the view-entropy scorer, maybe depth-test scorer options (``mode``, ``depth_tol``,
    ``world_distance``, ``aggregation``, ``backend``; absent = the kernel's defaults then, which are
    :data:`~viewal.kernels.DEPTH_TEST`'s). They become one ``depth_test`` dict. When the view entropy and the
    overlap table of a view-entropy run used two different tests, no single setting reproduces the run:
    ValueError, naming both. A config without the old keys is returned unchanged (a copy).
    """
    legacy = {k: d[k] for k in LEGACY_DEPTH_TEST_KEYS if k in d}
    if not legacy:
        return dict(d)
    if "depth_test" in d:
        raise ValueError(f"ALConfig: {', '.join(legacy)} and depth_test both given; depth_test holds "
                         f"{', '.join(LEGACY_DEPTH_TEST_KEYS.values())} now")
    out = {k: v for k, v in d.items() if k not in legacy}
    overlap = DepthTest.from_dict({LEGACY_DEPTH_TEST_KEYS[k]: v for k, v in legacy.items()})
    if out.get("scorer", ALConfig.scorer) != "view_entropy":
        return {**out, "depth_test": overlap.to_dict()}
    opts = dict(out.get("scorer_options") or {})
    moved = {k: opts.pop(k) for k in list(opts) if k in FLAGS}
    view = DepthTest.from_dict({"backend": overlap.backend, **{k: v for k, v in moved.items() if v is not None}})
    if not _same_test(view, overlap):
        raise ValueError(f"ALConfig: this run's view entropy used the depth test {view.computes()} and its overlap "
                         f"table {overlap.computes()}; a run has one depth test now (ALConfig.depth_test), so it "
                         f"cannot be resumed as it was: start a new run")
    return {**out, "scorer_options": opts, "depth_test": view.to_dict()}


def _is_int(v, low: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and bool(np.isfinite(v))


def _check_choices(section, names: dict[str, tuple]) -> None:
    for name, choices in names.items():
        if getattr(section, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(section, name)!r}")


def _check_positive(section, names: tuple[str, ...]) -> None:
    for name in names:
        if not _is_int(getattr(section, name), 1):
            raise ValueError(f"{name} must be an integer >= 1, got {getattr(section, name)!r}")


def _check_bool(section, name: str) -> None:
    v = getattr(section, name)
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {v!r}")
    setattr(section, name, bool(v))


@dataclass
class DataSettings:
    """What a query asks, and where the first labels come from.

    Attributes:
        region: ``"superpixel"`` or ``"image"`` (whole-image selection).
        superpixels: ``"seeds"`` or ``"slic"``; superpixel_num: target count per frame.
        seed_fraction: share of the training frames fully labelled before the first cycle (ViewAL: 1.5 %).
        seed_set: where the seed set's labels come from (:mod:`viewal.runs.seedset`): ``"oracle"`` (ground
            truth, at once), ``"ask"`` (pending whole-frame queries of cycle 0, for people), ``"labels"`` (the pool
            frames the dataset already labels) or ``"auto"`` (oracle when every pool frame has labels, labels
            when some have, ask when none has; resolved when the run starts and stored with it).
        seed_rule: how seed frames are picked for ``"oracle"`` and ``"ask"``: ``"random"`` or ``"spread"``
            (over scenes and viewpoints).
        wrong_label_rate: the simulated oracle's per-region error rate.
    """

    region: str = "superpixel"
    superpixels: str = "seeds"
    superpixel_num: int = 40
    seed_fraction: float = 0.02
    seed_set: str = "auto"
    seed_rule: str = "random"
    wrong_label_rate: float = 0.0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _check_choices(self, {"region": REGIONS, "superpixels": SUPERPIXELS, "seed_set": SEED_SETS,
                              "seed_rule": SEED_RULES})
        _check_positive(self, ("superpixel_num",))
        if not _is_number(self.seed_fraction) or not 0 < self.seed_fraction <= 1:
            raise ValueError(f"seed_fraction must lie in (0, 1], got {self.seed_fraction!r}")
        if not _is_number(self.wrong_label_rate) or not 0 <= self.wrong_label_rate <= 1:
            raise ValueError(f"wrong_label_rate must lie in [0, 1], got {self.wrong_label_rate!r}")


@dataclass
class ModelSettings:
    """The network.

    Attributes:
        encoder: the DeepLabv3+ encoder; init: its start (``"imagenet"``, a SimSiam checkpoint path, or None).
        decoder_channels: ASPP/decoder width (256 as DeepLabv3+; 64 is ~3x cheaper on CPU).
    """

    encoder: str = "efficientnet-lite0"
    init: str | None = "imagenet"
    decoder_channels: int = 256

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ValueError(f"encoder must be an encoder name, got {self.encoder!r}")
        if self.init is not None and not isinstance(self.init, str):
            raise ValueError(f"init must be 'imagenet', a checkpoint path or None, got {self.init!r}")
        _check_positive(self, ("decoder_channels",))


@dataclass
class TrainingSettings:
    """How a fit learns from its labels (``viewal.nn.train.TrainConfig.from_settings`` makes its recipe).

    Attributes:
        epochs, batch_size, lr: passes over the labelled frames, the batch, the encoder's learning rate.
        size: working (H, W) of training and inference (None: the frames' resolution).
        min_iterations: at least this many SGD steps per fit (epochs are raised on small labelled sets,
            so that a cycle with few labelled frames still trains; 0: epochs alone). Ignored when ``steps`` is set.
        steps: exactly this many SGD steps per fit (``validations`` validations among them), however
            many frames carry labels; None: epochs / ``min_iterations``.
        sampling: ``"uniform"``, ``"crops"`` (label-centred 2×2 mosaics, ``viewal.nn.train.label_mosaic``)
            or ``"labels"`` (items drawn ∝ their labelled pixels, so a fit spends its steps on labels, not on
            frames with one labelled superpixel; ``viewal.nn.train``).
        validations: about this many validations per fit (the best one's weights are kept).
        train_seed: seeds the model initialisation and training only (None: the run's ``seed``); the noise
            floor is measured by retraining the same labels with other train seeds. Each cycle's fit draws
            from its own stream of it (``viewal.core.seeding``).
        warm_start: False (ViewAL): every fit starts again from ``init``. True: a fit starts from the
            weights of the learner's current model (the previous cycle's), so the training a cycle gets
            adds up over the cycles; the seed set's fit (no model yet) starts from ``init``.
        augment: ``"none"`` or ``"max_entropy"`` (spatial-transformer augmentation, ``viewal.nn.augment``).
        pseudo_labels: ``"none"``, ``"confidence"``, ``"classwise"`` or ``"ups"`` (``viewal.nn.pseudo``): after
            the fit, pseudo-label the pool and fine-tune on labelled + pseudo-labelled pixels.
        auxiliary: ``"none"`` or ``"rotation"``: train PAL's rotation head (self-supervised, labels unused)
            alongside segmentation whatever the scorer, e.g. as the control that separates PAL's
            selection from its extra training signal.
        aux_weight: weight of the auxiliary task's loss against the cross-entropy (PAL's own head reads its
            scorer option ``rotation_weight`` instead). 1 as PAL; an ImageNet-started encoder learns
            segmentation better with less (``docs/other_methods_warm.md``).
        propagate_weight: weight of a propagated pixel in the fit's cross-entropy against a human one (1: the
            same; the loss is the weighted mean over labelled pixels). Used only with ``propagate``.
    """

    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-2
    size: tuple[int, int] | None = None
    min_iterations: int = 150
    steps: int | None = None
    sampling: str = "labels"
    validations: int = 5
    train_seed: int | None = None
    warm_start: bool = True
    augment: str = "none"
    pseudo_labels: str = "none"
    auxiliary: str = "none"
    aux_weight: float = 0.1
    propagate_weight: float = 1.0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _check_choices(self, {"sampling": SAMPLINGS, "augment": AUGMENTS, "pseudo_labels": PSEUDO_LABELS,
                              "auxiliary": AUXILIARIES})
        _check_positive(self, ("epochs", "batch_size", "validations"))
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.size is not None:
            if len(self.size) != 2 or not all(_is_int(x, 1) for x in self.size):
                raise ValueError(f"size must be (height, width) in pixels or None, got {self.size!r}")
            self.size = tuple(int(x) for x in self.size)
        if not _is_int(self.min_iterations, 0):
            raise ValueError(f"min_iterations must be an integer >= 0 (0: epochs alone), got {self.min_iterations!r}")
        if self.steps is not None and not _is_int(self.steps, 1):
            raise ValueError(f"steps must be an integer >= 1 or None, got {self.steps!r}")
        if self.train_seed is not None and not _is_int(self.train_seed, 0):
            raise ValueError(f"train_seed must be an integer >= 0 or None, got {self.train_seed!r}")
        _check_bool(self, "warm_start")
        for name in ("aux_weight", "propagate_weight"):
            v = getattr(self, name)
            if not _is_number(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
            setattr(self, name, float(v))


@dataclass
class ScoringSettings:
    """How regions are scored and picked, and what counts as labelled.

    Attributes:
        scorer: scorer name (``viewal.scoring.scorers.names()``); scorer_options: its options.
        mc_passes: MC-dropout passes for scoring.
        depth_test: :class:`~viewal.kernels.DepthTest`, the run's one depth test (mode, tolerances or
            distance, aggregation, kernel backend), given unchanged to the view-entropy scorer, the overlap
            table and propagation (and read back by ``viewal visualize``). A dict is read with
            ``DepthTest.from_dict``.
        dedup: cross-view dedup for greedy scorers (ViewAL's own selection always dedups).
        random_share: share of each cycle's budget given to random regions after the scorer's own picks
            (``viewal.selection.RandomShareSelector``; 0: none). Selection only: the training is unchanged.
        propagate: 3D label propagation (``viewal.scoring.propagation``, docs/propagation.md): the human labels
            reach the pool frames of their scene that see the same surface (``depth_test``); the fits train on
            them too (a human label always wins) and selection counts a region as labelled when at least
            ``propagate_known`` of its pixels carry a propagated label. The costs stay human.
        propagate_rule: :class:`~viewal.kernels.PropagationRule` (votes, views, agreement a propagated pixel
            needs); a dict is read with ``PropagationRule.from_dict``.
        propagate_known: share of a region's pixels that must carry propagated labels for selection to count it
            as labelled (in (0, 1]; docs/propagation.md measures 0.5).
    """

    scorer: str = "view_entropy"
    scorer_options: dict = field(default_factory=dict)
    mc_passes: int = 4
    depth_test: DepthTest = DEPTH_TEST
    dedup: bool = False
    random_share: float = 0.0
    propagate: bool = True
    propagate_rule: PropagationRule = PROPAGATION_RULE
    propagate_known: float = 0.5

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not isinstance(self.scorer, str):
            raise ValueError(f"scorer must be a scorer name, got {self.scorer!r}")
        if not isinstance(self.scorer_options, dict):
            raise ValueError(f"scorer_options must be a dict, got {type(self.scorer_options).__name__}")
        refuse_depth_test_options(self.scorer_options, "scorer_options")
        _check_positive(self, ("mc_passes",))
        if isinstance(self.depth_test, dict):
            self.depth_test = DepthTest.from_dict(self.depth_test)
        if not isinstance(self.depth_test, DepthTest):
            raise ValueError(f"depth_test must be a viewal.kernels.DepthTest (or a dict of its settings), "
                             f"got {type(self.depth_test).__name__}")
        _check_bool(self, "dedup")
        if not _is_number(self.random_share) or not 0 <= self.random_share < 1:
            raise ValueError(f"random_share must be a number in [0, 1) (the share of a cycle's budget given to "
                             f"random regions), got {self.random_share!r}")
        self.random_share = float(self.random_share)
        _check_bool(self, "propagate")
        if isinstance(self.propagate_rule, dict):
            self.propagate_rule = PropagationRule.from_dict(self.propagate_rule)
        if not isinstance(self.propagate_rule, PropagationRule):
            raise ValueError(f"propagate_rule must be a viewal.kernels.PropagationRule (or a dict of its settings), "
                             f"got {type(self.propagate_rule).__name__}")
        if not _is_number(self.propagate_known) or not 0 < self.propagate_known <= 1:
            raise ValueError(f"propagate_known must be a share in (0, 1] (of a region's pixels), "
                             f"got {self.propagate_known!r}")
        self.propagate_known = float(self.propagate_known)


@dataclass
class ExecutionSettings:
    """How a run executes, not what it is: a ledger resumes when only these change (:data:`EXECUTION_SETTINGS`;
    the depth test's kernel backend is one too).

    Attributes:
        num_threads: torch and Numba threads (None: leave them); device: ``"cpu"`` or e.g. ``"cuda"``.
        infer_batch_size: frames per inference batch.
        executor: where the pool is scored, scene by scene (``viewal.scoring.executors``): ``"local"`` (this
            process) or ``"ray"`` (one Ray task per scene; ``ray_address`` the cluster, None: ``RAY_ADDRESS`` or
            a local Ray); max_retries: reruns of a Ray task whose worker died. Selections do not depend on it.
    """

    num_threads: int | None = None
    device: str = "cpu"
    infer_batch_size: int = 8
    executor: str = "local"
    ray_address: str | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _check_choices(self, {"executor": EXECUTORS})
        _check_positive(self, ("infer_batch_size",))
        if self.num_threads is not None and not _is_int(self.num_threads, 1):
            raise ValueError(f"num_threads must be an integer >= 1 or None, got {self.num_threads!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', got {self.device!r}")
        if not _is_int(self.max_retries, 0):
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")


#: ALConfig settings that say how a run executes, not what it is: a ledger resumes when only these change
#: (``a.b`` = key ``b`` of the stored dict ``a``): the execution section and the depth test's kernel backend
EXECUTION_SETTINGS = (*(f.name for f in fields(ExecutionSettings)), "depth_test.backend")

#: the typed sections of :class:`ALConfig`, in the order its docstring and the docs list them
SECTIONS = {"data": DataSettings, "model": ModelSettings, "training": TrainingSettings, "scoring": ScoringSettings,
            "execution": ExecutionSettings}


@dataclass
class ALConfig(ExecutionSettings, ScoringSettings, TrainingSettings, ModelSettings, DataSettings):
    """Settings of an active-learning run (stored in the ledger; a resumed run must use the same).

    One keyword per setting, as the command line has one flag per setting; the settings fall into five typed
    sections, each a dataclass of its own that checks its values and that the layer below takes:
    :attr:`data` (:class:`DataSettings`), :attr:`model` (:class:`ModelSettings`), :attr:`training`
    (:class:`TrainingSettings`), :attr:`scoring` (:class:`ScoringSettings`) and :attr:`execution`
    (:class:`ExecutionSettings`). Each setting is documented in its section.

    The defaults are the ``cpu`` preset, the measured best recipe on 2 CPU cores; ``ALConfig.preset("paper")``
    gives ViewAL's own settings (:data:`PRESETS`, each value with the measurement or source behind it).

    Attributes:
        seed: the run's seed: the seed set, the model initialisation, training (unless ``train_seed``), the
            MC-dropout masks and random scorers, each from its own stream (``viewal.core.seeding``).
    """

    seed: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.seed, 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for section in SECTIONS.values():
            section._check(self)

    def section(self, name: str):
        """The typed section ``name`` (a key of :data:`SECTIONS`) of these settings, a new checked dataclass."""
        cls = SECTIONS[name]
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    @property
    def data(self) -> DataSettings:
        return self.section("data")

    @property
    def model(self) -> ModelSettings:
        return self.section("model")

    @property
    def training(self) -> TrainingSettings:
        return self.section("training")

    @property
    def scoring(self) -> ScoringSettings:
        return self.section("scoring")

    @property
    def execution(self) -> ExecutionSettings:
        return self.section("execution")

    @classmethod
    def from_sections(cls, seed: int = 0, **sections) -> ALConfig:
        """Settings from typed sections (``training=TrainingSettings(lr=1e-3)``, ...; absent: the defaults)."""
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise ValueError(f"ALConfig: unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
        kw = {}
        for name, value in sections.items():
            if not isinstance(value, SECTIONS[name]):
                raise ValueError(f"ALConfig: section {name} must be a {SECTIONS[name].__name__}, "
                                 f"got {type(value).__name__}")
            kw.update({f.name: getattr(value, f.name) for f in fields(value)})
        return cls(seed=seed, **kw)

    @classmethod
    def preset(cls, name: str = "cpu", **overrides) -> ALConfig:
        """The settings of preset ``name`` (:data:`PRESETS`: ``"cpu"``, the defaults, or ``"paper"``), with
        ``overrides`` replacing fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        return cls(**{**{k: v for k, (v, _) in PRESETS[name].items()}, **overrides})

    def to_json(self) -> dict:
        d = asdict(self)
        d["depth_test"] = self.depth_test.to_dict()
        d["propagate_rule"] = self.propagate_rule.to_dict()
        d["size"] = None if self.size is None else list(self.size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ALConfig:
        """The config of a dict written by :meth:`to_json` (absent keys: the defaults, or what a run stored
        without them ran with, :data:`STORED_BEFORE`). Unknown keys are
        refused, naming them; a config stored before the depth test was one setting is read as its
        equivalent (:func:`upgrade_config`)."""
        d = {**STORED_BEFORE, **upgrade_config(d)}
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known), key=str)
        if unknown:
            raise ValueError(f"ALConfig: unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        return cls(**d)
