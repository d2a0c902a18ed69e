"""Training aids compose: every combination a method spec accepts runs every step it names, in order."""
from itertools import combinations

import numpy as np
import pytest

import viewal
from viewal.core.config import ALConfig
from viewal.datasets import open_dataset
from viewal.nn import aids
from viewal.runs.experiment import TRAINING_AIDS, method_config, parse_method


def accepted_aid_specs() -> list[str]:
    """Every ``+aid`` combination (any order of the names is the same method) that parse_method accepts."""
    names = sorted(TRAINING_AIDS)
    specs = []
    for k in range(1, len(names) + 1):
        for combo in combinations(names, k):
            spec = "entropy+" + "+".join(combo)
            try:
                parse_method(spec)
            except ValueError:
                continue
            specs.append(spec)
    return specs


def test_the_refused_combinations_are_two_pseudo_label_aids():
    specs = accepted_aid_specs()
    assert "entropy+classwise+max_entropy" in specs and "entropy+max_entropy+rotation+ups" in specs
    for a, b in combinations(["confidence", "classwise", "ups"], 2):
        with pytest.raises(ValueError, match="two pseudo_labels aids"):
            parse_method(f"entropy+{a}+{b}")
    assert len(specs) == 15  # {-, max_entropy} x {-, confidence, classwise, ups} x {-, rotation}, minus none


class _Recorder:
    """Stand-ins for the training functions: record the calls, change nothing but the result."""

    def __init__(self, monkeypatch):
        self.calls = []
        import viewal.nn.aids

        def fit(model, items, val, cfg, **kw):
            self.calls.append("fit")
            return "fit-result"

        def max_entropy(state, **kw):
            assert state.result is not None, "max-entropy ran before the fit"
            self.calls.append("max_entropy")
            return "me-result", None, {"theta_dev": 0.1}

        def pseudo(state, pool, mode, **kw):
            assert state.result is not None, "pseudo-labels ran before the fit"
            self.calls.append(f"pseudo_labels:{mode}")
            return f"pl-result-{mode}", {"precision": 0.5}

        monkeypatch.setattr(viewal.nn.aids, "fit", fit)
        monkeypatch.setattr(viewal.nn.aids, "max_entropy_finetune", max_entropy)
        monkeypatch.setattr(viewal.nn.aids, "pseudo_label_finetune", pseudo)


@pytest.mark.parametrize("spec", accepted_aid_specs())
def test_every_accepted_combination_runs_all_its_aids(spec, monkeypatch):
    rec = _Recorder(monkeypatch)
    cfg = method_config(ALConfig(), spec, seed=0)
    _, overrides = parse_method(spec)
    steps = aids.fit_steps(cfg, pool=["frame"])
    state = aids.run_steps(steps, aids.FitState(model=None, items=[], val=[], config=None, progress=False))
    expected = ["fit"]
    if "augment" in overrides:
        expected.append("max_entropy")
    if "pseudo_labels" in overrides:
        expected.append(f"pseudo_labels:{overrides['pseudo_labels']}")
    assert rec.calls == expected  # every aid ran, in the order fit -> augmentation -> pseudo-labels
    assert state.stats.get("steps", "fit") == ",".join(expected)
    assert state.result == {"fit": "fit-result", "max_entropy": "me-result"}.get(expected[-1],
                                                                               f"pl-result-{cfg.pseudo_labels}")
    assert [a.name for a in aids.model_aids(cfg)] == (["rotation"] if "auxiliary" in overrides else [])


def test_rotation_auxiliary_attaches_one_head():
    import torch

    from viewal.nn.model import build_model

    model = build_model(3, encoder="resnet18", encoder_weights=None, decoder_channels=16)
    aux = aids.RotationAuxiliary()
    hook = aux.prepare_model(model)
    assert hook is not None and model.rotation_head is not None
    head = model.rotation_head
    assert aux.prepare_model(model) is None and model.rotation_head is head  # PAL + rotation: one head, one loss
    assert isinstance(head, torch.nn.Module)


def test_unknown_aid_values_are_refused():
    with pytest.raises(ValueError, match="augment"):
        ALConfig(augment="flip")
    with pytest.raises(ValueError, match="pseudo_labels"):
        ALConfig(pseudo_labels="bogus")


def test_max_entropy_classwise_and_rotation_all_run_in_one_fit(rooms_64x80, tmp_path):
    """The combination once silently dropped: entropy+max_entropy+classwise (+ rotation) trains
    the STN, pseudo-labels the pool and trains the rotation head, all in one fit."""
    ds = open_dataset(rooms_64x80)
    cfg = method_config(ALConfig(epochs=1, steps=2, validations=1, mc_passes=2, seed_fraction=0.3, num_threads=1,
                                 batch_size=2, infer_batch_size=4, decoder_channels=16, encoder="resnet18",
                                 init=None), "entropy+max_entropy+classwise+rotation", seed=0)
    learner = viewal.ActiveLearner(ds, ledger=tmp_path / "a.sqlite", config=cfg)
    assert [s.name for s in learner.fit_steps()] == ["fit", "max_entropy", "pseudo_labels"]
    learner.fit(progress=False)
    st = learner.fit_stats
    assert st["steps"] == "fit,max_entropy,pseudo_labels:classwise"
    assert "theta_dev" in st and st["kept"] in ("base", "finetuned")  # max-entropy ran
    assert st["mode"] == "classwise" and "thresholds" in st and "coverage" in st  # pseudo-labels ran
    assert learner.model.rotation_head is not None  # the rotation auxiliary ran
    assert np.isfinite(learner.evaluate()["miou"])


def test_checkpoints_of_the_old_augment_only_fit_are_not_reused():
    """Before the aids composed, max_entropy + pseudo-labels trained the augmentation alone; that recipe's
    fingerprint differs from the composed one, so an old checkpoint is retrained, not reused."""
    from viewal.runs.learner import training_key

    both = method_config(ALConfig(), "entropy+max_entropy+classwise", seed=0)
    assert training_key(both)["aids"] == "composed"
    assert "aids" not in training_key(method_config(ALConfig(), "entropy+max_entropy", seed=0))
    assert "aids" not in training_key(method_config(ALConfig(), "entropy+ups", seed=0))


def test_checkpoints_of_the_old_pseudo_label_finetuning_are_not_reused():
    """The pseudo-labels' fine-tuning now runs half the fit's steps (it ran fit epochs // 2 over the pool):
    runs with pseudo-labels get a new training key, every other run keeps its own."""
    from viewal.runs.learner import training_key

    for spec in ("random+ups", "random+confidence", "entropy+max_entropy+classwise"):
        assert training_key(method_config(ALConfig(), spec, seed=0))["pseudo_finetune"] == "half_fit_steps"
    for spec in ("random", "random+max_entropy", "random+rotation"):
        assert "pseudo_finetune" not in training_key(method_config(ALConfig(), spec, seed=0))


def test_aux_weight_scales_the_rotation_loss_and_is_part_of_the_recipe():
    """``random+rotation:aux_weight=0.1`` trains the rotation head with a tenth of its loss; the weight is in
    the training key only when it is not 1 (the papers' weight, the ``paper`` preset's), so checkpoints of runs at
    weight 1 stay valid."""
    import torch

    from viewal.nn.model import build_model
    from viewal.runs.learner import training_key

    cfg = method_config(ALConfig(), "random+rotation:aux_weight=0.1", seed=0)
    assert cfg.auxiliary == "rotation" and cfg.aux_weight == 0.1
    assert [a.weight for a in aids.model_aids(cfg)] == [0.1]
    assert ALConfig().aux_weight == 0.1  # the cpu preset's
    default = method_config(ALConfig.preset("paper"), "random+rotation", seed=0)
    assert "aux_weight" not in training_key(default)
    assert training_key(cfg)["aux_weight"] == 0.1 and training_key(cfg) != training_key(default)
    losses = []
    for w in (1.0, 0.1):
        torch.manual_seed(0)
        model = build_model(3, encoder="resnet18", encoder_weights=None, decoder_channels=16).eval()
        hook = aids.RotationAuxiliary(weight=w).prepare_model(model)
        torch.manual_seed(1)
        images = torch.rand(4, 3, 32, 32)
        with torch.no_grad():
            losses.append(float(hook(model, {"image": images}, images, None)))
    assert losses[0] > 0.5  # a fresh 4-way head: CE near log 4
    assert losses[1] == pytest.approx(0.1 * losses[0], rel=1e-5)


@pytest.mark.parametrize("spec,match", [("random:aux_weight=0.1", "auxiliary task"),
                                        ("pal:aux_weight=0.1", "rotation_weight"),
                                        ("random+rotation:aux_weight=-1", ">= 0"),
                                        ("random+rotation:aux_weight=heavy", ">= 0")])
def test_bad_aux_weights_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_method(spec)
    with pytest.raises(ValueError, match="aux_weight"):
        ALConfig(auxiliary="rotation", aux_weight=float("nan"))


@pytest.mark.parametrize("tuned,kept", [(0.2, "base"), (0.6, "pseudo")])
def test_pseudo_labels_keep_the_plain_fit_when_validation_prefers_it(monkeypatch, tuned, kept):
    """The fine-tuning on pseudo-labels is kept only when its best validation mIoU is not below the plain fit's
    (0.5 here); otherwise the plain fit's weights come back, as with max-entropy augmentation."""
    import torch

    import viewal.nn.pseudo as pseudo
    import viewal.nn.train as train

    model = torch.nn.Conv2d(3, 2, 1)
    model.num_classes = 2
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def fake_fit(m, items, val, cfg, **kw):  # the fine-tuning changes the weights
        with torch.no_grad():
            for p in m.parameters():
                p.add_(1.0)
        return train.FitResult(best_miou=tuned, best_epoch=1, history=[], seconds=0.0)

    monkeypatch.setattr(pseudo, "fit", fake_fit)
    monkeypatch.setattr(pseudo, "pseudo_label_items", lambda *a, **k: ([], {"precision": 1.0}))

    class Frame:
        key, rgb, labels = "s/0", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int64)

    base = train.FitResult(best_miou=0.5, best_epoch=1, history=[], seconds=0.0)
    state = train.FitState(model, [(Frame(), np.zeros((4, 4), np.int64))], ["val"], train.TrainConfig(),
                           progress=False, result=base)
    res, stats = pseudo.pseudo_label_finetune(state, [], "classwise", finetune_epochs=1)
    assert stats["pseudo_kept"] == kept and stats["val_miou_pseudo"] == tuned
    same = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert same == (kept == "base") and (res is base) == (kept == "base")
