"""Training aids as composable steps: a fit is an ordered list of small objects, each with one method.

A fit of the active learner (``ActiveLearner.fit``) is ``[Fit(), *aids]`` applied in order to one
:class:`FitState`: :class:`Fit` trains the fresh model on the labelled items; each aid then improves the
trained model in place (max-entropy augmentation, then pseudo-labels), reading the model, the labelled
items and the last fit result from the state and writing its own back. So ``entropy+max_entropy+classwise``
runs the base fit, the STN and its fine-tuning, then the class-wise pseudo-labels and their fine-tuning.

Auxiliary tasks change the network before training and are :class:`ModelAid` objects with one method,
``prepare_model(model) -> extra_loss``: :class:`RotationAuxiliary` (PAL's rotation head as an
auxiliary task).

:func:`fit_steps` and :func:`model_aids` build the lists from an ``ALConfig`` (``augment``,
``pseudo_labels``, ``auxiliary``); every combination of its values runs every step it names
(``viewal.runs.experiment.parse_method`` refuses two pseudo-label aids in one method).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from viewal.core.config import ALConfig
from viewal.nn.augment import max_entropy_finetune
from viewal.nn.heads import attach_rotation_head, rotation_extra_loss
from viewal.nn.pseudo import pseudo_label_finetune
from viewal.nn.train import FitState, fit

__all__ = ["FitState", "FitStep", "Fit", "MaxEntropyStep", "PseudoLabelStep", "ModelAid", "RotationAuxiliary",
           "fit_steps", "model_aids", "run_steps", "recipe_entries"]


class FitStep:
    """One step of a fit: :meth:`apply` changes the state (the model, the result, the stats)."""

    name: ClassVar[str] = ""

    def apply(self, state: FitState) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Fit(FitStep):
    """Train the model on the labelled items (``viewal.nn.train.fit``, best validation weights kept)."""

    name: ClassVar[str] = "fit"

    def apply(self, state: FitState) -> None:
        state.result = fit(state.model, state.items, state.val, state.config, extra_loss=state.extra_loss,
                           progress=state.progress, desc=state.desc)


@dataclass
class MaxEntropyStep(FitStep):
    """Max-entropy augmentation of the trained model (``viewal.nn.augment.max_entropy_finetune``): train the
    STN, fine-tune on original + warped images (the earlier weights kept when validation prefers them)."""

    options: dict = field(default_factory=dict)
    name: ClassVar[str] = "max_entropy"

    def apply(self, state: FitState) -> None:
        state.result, _, stats = max_entropy_finetune(state, **self.options)
        state.stats.update(stats)


@dataclass
class PseudoLabelStep(FitStep):
    """Pseudo-labels of the pool from the trained model, then a fine-tuning on labelled + pseudo-labelled
    pixels (``viewal.nn.pseudo.pseudo_label_finetune``). The pool needs no ground truth: the precision it reports
    is measured on the pool frames that have labels (absent when none has)."""

    mode: str
    pool: Sequence = ()
    mc_passes: int = 20
    batch_size: int = 4
    item_extras: Callable | None = None
    name: ClassVar[str] = "pseudo_labels"

    def apply(self, state: FitState) -> None:
        state.result, stats = pseudo_label_finetune(state, self.pool, self.mode, mc_passes=self.mc_passes,
                                                    batch_size=self.batch_size, item_extras=self.item_extras)
        state.stats.update(stats)


class ModelAid:
    """An auxiliary task: :meth:`prepare_model` adds what the network must learn and returns its
    ``extra_loss`` hook (None: nothing to add)."""

    name: ClassVar[str] = ""

    def prepare_model(self, model) -> Callable | None:
        raise NotImplementedError  # pragma: no cover - interface


@dataclass
class RotationAuxiliary(ModelAid):
    """PAL's rotation head trained alongside segmentation (labels unused). A model that already has a
    rotation head (PAL's scorer attached it) keeps it and its loss: one head, trained once."""

    weight: float = 1.0
    name: ClassVar[str] = "rotation"

    def prepare_model(self, model) -> Callable | None:
        if getattr(model, "rotation_head", None) is not None:
            return None
        attach_rotation_head(model)
        return rotation_extra_loss(weight=self.weight)


def fit_steps(config: ALConfig, *, pool: Sequence = (), item_extras: Callable | None = None) -> list[FitStep]:
    """The ordered steps of a fit for an ``ALConfig``: :class:`Fit`, then max-entropy augmentation
    (``augment``), then pseudo-labels (``pseudo_labels``) when set.

    Args:
        config: ``viewal.core.config.ALConfig``.
        pool: the unlabelled pool's frames (pseudo-labels).
        item_extras: ``frame -> extras`` of pool frames (pseudo-labels; see ``pseudo_label_finetune``).
    """
    steps: list[FitStep] = [Fit()]
    if config.augment == "max_entropy":
        steps.append(MaxEntropyStep())
    elif config.augment != "none":
        raise ValueError(f"unknown augment {config.augment!r}")
    if config.pseudo_labels != "none":
        steps.append(PseudoLabelStep(config.pseudo_labels, pool=list(pool), mc_passes=config.mc_passes,
                                     batch_size=config.infer_batch_size, item_extras=item_extras))
    return steps


def model_aids(config: ALConfig) -> list[ModelAid]:
    """The auxiliary tasks of an ``ALConfig`` (``auxiliary``)."""
    if config.auxiliary == "rotation":
        return [RotationAuxiliary(weight=float(config.aux_weight))]
    if config.auxiliary != "none":
        raise ValueError(f"unknown auxiliary {config.auxiliary!r}")
    return []


def recipe_entries(config: ALConfig) -> dict:
    """Entries the aids of an ``ALConfig`` add to its training key (``viewal.runs.learner.training_key``), so a
    checkpoint trained with another recipe of an aid is not reused. Only what differs from the recipe the
    key had before the entry existed, so checkpoints of every other run keep their fingerprints:

    * pseudo-labels: ``pseudo_finetune = "half_fit_steps"`` (:func:`viewal.nn.pseudo.finetune_epochs_for`; the
      fine-tuning ran half the fit's epochs before) and ``pseudo_keep = "better_on_val"`` (the plain fit's weights
      are kept when validation prefers them);
    * an auxiliary task at a weight other than 1: ``aux_weight``.
    """
    out: dict = {}
    if any(isinstance(s, PseudoLabelStep) for s in fit_steps(config)):
        out["pseudo_finetune"] = "half_fit_steps"
        out["pseudo_keep"] = "better_on_val"  # the fine-tuned model is kept only when validation prefers it
    if any(getattr(a, "weight", 1.0) != 1.0 for a in model_aids(config)):
        out["aux_weight"] = float(config.aux_weight)
    return out


def run_steps(steps: Sequence[FitStep], state: FitState) -> FitState:
    """Apply ``steps`` in order to ``state``; with aids, ``state.stats["steps"]`` names the steps that ran
    (e.g. ``"fit,max_entropy,pseudo_labels:classwise"``). Returns ``state``."""
    done = []
    for step in steps:
        step.apply(state)
        mode = getattr(step, "mode", None)
        done.append(f"{step.name}:{mode}" if mode else step.name)
    if len(done) > 1:
        state.stats["steps"] = ",".join(done)
    return state
