"""A run's recipe: method specs, the training key that binds a model to its recipe, and the seed-set model's name.

A method of ``viewal experiment`` is a spec (:func:`parse_method`): a scorer, optionally a region kind
(``@image``), training aids (``+ups``) and settings (``:random_share=0.5``). :func:`method_config` turns it into
the method's :class:`~viewal.core.config.ALConfig`. :func:`training_key` says what a fit depends on besides its labels,
:func:`model_fingerprint` binds a checkpoint to that key and the labels, and :func:`seedset_name` names the cycle-0
model that methods training alike share. Below the learner, the experiment and the run layout, which all use it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np

import viewal.scoring.scorers as scorers
from viewal.core.config import TRAINING_FIELDS, ALConfig
from viewal.nn.aids import fit_steps, recipe_entries
from viewal.scoring.executors import overlap_test_key

__all__ = ["TRAINING_AIDS", "REGION_KINDS", "METHOD_CONFIG_KEYS", "parse_method", "method_config", "training_key",
           "model_fingerprint", "recipe_tags", "spec_training", "seedset_name"]


#: training aids a method spec may add to its scorer: ``scorer+aid`` (e.g. ``random+ups``)
TRAINING_AIDS = {"max_entropy": ("augment", "max_entropy"), "confidence": ("pseudo_labels", "confidence"),
                 "classwise": ("pseudo_labels", "classwise"), "ups": ("pseudo_labels", "ups"),
                 "rotation": ("auxiliary", "rotation")}


#: region kinds a method spec may name after ``@``: ``random@image`` is ViewAL's RAND (whole images)
REGION_KINDS = ("superpixel", "image")


#: ALConfig fields a method spec may set with ``:key=value`` (everything else is a scorer option);
#: ``min_iterations`` gives one method more steps, e.g. a compute control for a baseline; ``warm_start=true``
#: trains each cycle on from the previous cycle's model; ``aux_weight`` weighs an auxiliary task's loss
#: (``random+rotation:aux_weight=0.1``); ``random_share`` gives that share of each cycle's budget to random
#: regions after the scorer's picks (``view_entropy:random_share=0.5``); ``propagate=true`` trains and selects with
#: 3D label propagation (``propagate_weight``, ``propagate_known``: its loss weight and selection share), so
#: ``random,random:propagate=true`` compares the same method with and without it in one run
METHOD_CONFIG_KEYS = ("dedup", "min_iterations", "warm_start", "aux_weight", "random_share", "propagate",
                      "propagate_weight", "propagate_known")


def _spec_value(text: str):
    """``"true"``/``"false"`` → bool, a JSON number → number, anything else → the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
    return v if isinstance(v, (int, float)) else text.strip()


def parse_method(spec: str) -> tuple[str, dict]:
    """``"scorer[@region][+aid[+aid]][:key=value[:key=value]]"`` → (scorer name, ALConfig overrides).

    ``@image`` / ``@superpixel`` sets the region kind of that method alone (``random@image`` ranks whole
    images at random, as ViewAL's own RAND baseline; plain ``random`` picks random superpixels), so one
    run compares both.

    Aids are training options (:data:`TRAINING_AIDS`): ``max_entropy`` (augmentation), one of
    ``confidence``, ``classwise``, ``ups`` (pseudo-labels) and ``rotation`` (PAL's rotation head as an
    auxiliary task). The spec names the method's ledger and curve, so
    ``random,random+ups`` compares selection-equal runs with and without UPS in one experiment.

    ``:key=value`` items set that method's scorer options (merged over ``--scorer-options``) or one of
    :data:`METHOD_CONFIG_KEYS`; so ablations share one run, e.g.
    ``view_entropy,view_entropy:selection=greedy:dedup=true,view_entropy:rank=vd``.
    """
    base, *items = [t.strip() for t in str(spec).split(":")]
    head, *aids = [t.strip() for t in base.split("+")]
    scorer, at, region = (t.strip() for t in head.partition("@"))
    if scorer not in scorers.names():
        raise ValueError(f"method {spec!r}: unknown scorer {scorer!r}; available: {', '.join(scorers.names())}")
    overrides: dict = {}
    if at:
        if region not in REGION_KINDS:
            raise ValueError(f"method {spec!r}: unknown region kind {region!r}; available: {', '.join(REGION_KINDS)}")
        overrides["region"] = region
    for aid in aids:
        if aid not in TRAINING_AIDS:
            raise ValueError(f"method {spec!r}: unknown training aid {aid!r}; available: {', '.join(TRAINING_AIDS)}")
        key, value = TRAINING_AIDS[aid]
        if key in overrides:
            raise ValueError(f"method {spec!r}: two {key} aids ({overrides[key]!r}, {value!r})")
        overrides[key] = value
    options: dict = {}
    for item in items:
        key, eq, value = (t.strip() for t in item.partition("="))
        if not key or not eq or not value:
            raise ValueError(f"method {spec!r}: {item!r} is not key=value")
        target = overrides if key in METHOD_CONFIG_KEYS else options
        if key in target:
            raise ValueError(f"method {spec!r}: {key!r} is set twice")
        target[key] = _spec_value(value)
    for key in ("dedup", "warm_start", "propagate"):
        if key in overrides and not isinstance(overrides[key], bool):
            raise ValueError(f"method {spec!r}: {key} must be true or false, got {overrides[key]!r}")
    if "aux_weight" in overrides:
        aw = overrides["aux_weight"]
        if "auxiliary" not in overrides:
            raise ValueError(f"method {spec!r}: aux_weight weighs an auxiliary task; the spec has none "
                             f"(e.g. random+rotation:aux_weight=0.1; PAL's own head: pal:rotation_weight=0.1)")
        if isinstance(aw, bool) or not isinstance(aw, (int, float)) or not np.isfinite(aw) or aw < 0:
            raise ValueError(f"method {spec!r}: aux_weight must be a number >= 0, got {aw!r}")
        overrides["aux_weight"] = float(aw)
    try:  # each setting's one check, with the one range (viewal.core.config)
        ALConfig(**overrides)
    except ValueError as e:
        raise ValueError(f"method {spec!r}: {e}") from None
    if options:
        try:
            scorers.get(scorer, **options)
        except ValueError as e:
            raise ValueError(f"method {spec!r}: {e}") from None
        overrides["scorer_options"] = options
    return scorer, overrides


def method_config(base: ALConfig, spec: str, seed: int) -> ALConfig:
    """The ALConfig of one method spec (see :func:`parse_method`) and seed; the spec's scorer options are
    merged over the base's."""
    scorer, overrides = parse_method(spec)
    if "scorer_options" in overrides:
        overrides["scorer_options"] = {**base.scorer_options, **overrides["scorer_options"]}
    return replace(base, scorer=scorer, seed=seed, **overrides)


def training_key(c: ALConfig) -> dict:
    """What a fit depends on besides its labels: the training fields, the train seed and the scorer's
    training tag (``Scorer.training``: a head it trains); with a head, also its options and regions.
    Equal keys and equal labels give interchangeable models (the experiment shares the seed-set model)."""
    d = json.loads(json.dumps({k: getattr(c, k) for k in TRAINING_FIELDS}))
    d["train_seed"] = c.seed if c.train_seed is None else int(c.train_seed)
    if c.warm_start:  # only when set: the fingerprints of every cold-start run stay what they were
        d["warm_start"] = True
    if c.propagate:  # only when set, likewise: what the propagated labels are made of, and how they weigh
        d.update(propagate=True, propagate_weight=float(c.propagate_weight),
                 propagate_rule=c.propagate_rule.to_dict(), propagate_test=overlap_test_key(c.depth_test))
    d.update(recipe_entries(c))  # what the aids' own recipes add (the pseudo-labels' fine-tuning length, ...)
    if len(fit_steps(c)) > 2:  # fit + augmentation + pseudo-labels
        # tagged: a model of the augmentation alone is never taken for one of the composed fit
        d["aids"] = "composed"
    tag = scorers.get(c.scorer, **c.scorer_options).training
    if tag:
        d.update(training=tag, scorer_options=c.scorer_options, region=c.region, superpixels=c.superpixels,
                 superpixel_num=c.superpixel_num)
    return d


def model_fingerprint(c: ALConfig, labels_digest: str) -> str:
    """SHA-1 binding a model to its training recipe (:func:`training_key`) and its labels
    (``Ledger.labels_digest``): a checkpoint is reused only when its fingerprint is the current one."""
    text = json.dumps({"train": training_key(c), "labels": labels_digest}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def recipe_tags(cfg: ALConfig) -> list[str]:
    """What the cycle-0 model of ``cfg`` (an ``ALConfig``) trains besides plain segmentation: the scorer's
    head (``Scorer.training``), the rotation auxiliary, the augmentation and the pseudo-labels, in this
    order, each once (PAL + the rotation aid: one head, one tag)."""
    tags = [scorers.get(cfg.scorer).training, "rotation_head" if cfg.auxiliary == "rotation" else "",
            cfg.augment if cfg.augment != "none" else "", cfg.pseudo_labels if cfg.pseudo_labels != "none" else ""]
    return list(dict.fromkeys(t for t in tags if t))


def spec_training(cfg: ALConfig, method: str) -> dict:
    """The entries of ``cfg``'s training key (``viewal.runs.learner.training_key``) that the method spec ``method``
    sets over the run's recipe (e.g. ``min_iterations`` of ``random@image:min_iterations=560``; a head's
    scorer options or region kind), without the training aids (:func:`recipe_tags` names those). Empty for a
    method trained with the run's plain recipe."""
    key, aids = training_key(cfg), {field for field, _ in TRAINING_AIDS.values()}
    return {k: key[k] for k in parse_method(method)[1] if k in key and k not in aids}


def seedset_name(cfg: ALConfig, method: str) -> str:
    """File name of the cycle-0 model shared by every method of a seed whose training recipe is ``cfg``'s
    (``cfg``: the ``ALConfig`` of the method spec ``method``): plain segmentation gives ``seedset-s{seed}.pt``;
    each recipe tag (:func:`recipe_tags`) is added, and ``-fit-<8 hex>`` when the spec sets training settings
    of its own (:func:`spec_training`; SHA-1 of their values), so a model is only shared between methods that
    train it identically. Methods trained with the run's plain recipe keep the tags-only name."""
    tags = recipe_tags(cfg)
    own = spec_training(cfg, method)
    if own:
        tags.append("fit-" + hashlib.sha1(json.dumps(own, sort_keys=True).encode()).hexdigest()[:8])
    tag = "-".join(tags)
    return f"seedset-s{cfg.seed}{'-' + tag if tag else ''}.pt"
