"""One depth test (viewal.kernels.DepthTest): its validation, its one default, the CLI flags, old ledgers, and the
same settings object reaching the view-entropy kernel, the overlap table and ``viewal visualize``."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json

import numpy as np
import pytest

import viewal
import viewal.kernels as kernels
from viewal.core.config import ALConfig
from viewal.datasets import open_dataset
from viewal.kernels import DEPTH_TEST, DepthTest
from viewal.runs.ledger import Ledger, LedgerError

# one short fit at ViewAL's lr (a model that is still unsure: its view entropy is not ~0 everywhere), with the
# recipe OLD_CONFIG was stored with
FAST = dict(epochs=1, min_iterations=0, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4, infer_batch_size=4,
            lr=4e-4, sampling="uniform", warm_start=False, aux_weight=1.0, propagate=False)

# ALConfig(scorer="random", **FAST).to_json() as viewal wrote it before the depth test was one setting
# (main at b9eab96): the overlap table's test in overlap_mode / depth_tol, the backend in kernel_backend
OLD_CONFIG = json.loads(
    '{"scorer": "random", "scorer_options": {}, "seed": 0, "region": "superpixel", "superpixels": "seeds", '
    '"superpixel_num": 40, "dedup": false, "seed_fraction": 0.2, "mc_passes": 2, "overlap_mode": "z", '
    '"depth_tol": [0.05, 0.02], "kernel_backend": "cpu", "wrong_label_rate": 0.0, "encoder": "efficientnet-lite0", '
    '"init": "imagenet", "epochs": 1, "batch_size": 4, "lr": 0.0004, "size": null, "min_iterations": 0, '
    '"steps": null, "sampling": "uniform", "decoder_channels": 256, "train_seed": null, "num_threads": 1, '
    '"device": "cpu", "infer_batch_size": 4, "validations": 5, "augment": "none", "pseudo_labels": "none", '
    '"auxiliary": "none"}')


# ------------------------------------------------------------------------------------------ the object

def test_one_default_with_todays_z_test():
    assert DepthTest() == DEPTH_TEST
    assert DEPTH_TEST.to_dict() == {"mode": "z", "depth_tol": [0.05, 0.02], "world_distance": 1.0,
                                    "aggregation": "gather", "backend": "cpu"}
    assert DepthTest(mode="viewal").aggregation == "splat"            # the mode's own, resolved when built
    assert DepthTest(mode="viewal", aggregation="gather").aggregation == "gather"
    assert DepthTest(depth_tol=[np.float32(0.5), 0]).depth_tol == (0.5, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEPTH_TEST.mode = "viewal"
    # every consumer's default is that object
    from viewal.runs.visualize import scene_view_entropy
    from viewal.scoring.scorers import base

    for f in (kernels.view_entropy_divergence, kernels.superpixel_overlap, scene_view_entropy, base.get,
              base.Scorer.__init__):
        assert inspect.signature(f).parameters["depth_test"].default is DEPTH_TEST, f
    assert ALConfig().depth_test is DEPTH_TEST
    from viewal.cli.experiment import configure_parser
    from viewal.cli.options import depth_test_from_args

    p = argparse.ArgumentParser()
    configure_parser(p)
    assert depth_test_from_args(p.parse_args(["--data", "d", "--out", "o"])) == DEPTH_TEST


BAD = [
    (dict(mode="bogus"), r"depth_test.mode \(--depth-test\): unknown depth-test mode 'bogus'; valid: z, viewal"),
    (dict(depth_tol=(0.05,)), r"depth_test.depth_tol \(--depth-tol\): expected two finite numbers"),
    (dict(depth_tol=(0.05, float("nan"))), r"depth_test.depth_tol \(--depth-tol\): expected two finite numbers"),
    (dict(depth_tol="ab"), r"depth_test.depth_tol \(--depth-tol\): expected two finite numbers"),
    (dict(depth_tol=(-0.1, 0.0)), r"depth_test.depth_tol \(--depth-tol\): need abs_tol >= 0 and 0 <= rel_tol < 1"),
    (dict(depth_tol=(0.1, 1.0)), r"need abs_tol >= 0 and 0 <= rel_tol < 1"),
    (dict(world_distance=0.0), r"depth_test.world_distance \(--depth-distance\): must be a positive number"),
    (dict(world_distance=True), r"depth_test.world_distance"),
    (dict(world_distance="1"), r"depth_test.world_distance"),
    (dict(aggregation="scatter"), r"depth_test.aggregation \(--aggregation\): unknown aggregation 'scatter'"),
    (dict(backend="gpu"), r"depth_test.backend \(--kernel-backend\): unknown backend 'gpu'; valid: numpy, cpu, cuda"),
]


@pytest.mark.parametrize("kw,message", BAD, ids=[str(k) for k, _ in BAD])
def test_bad_settings_are_refused_naming_the_field_and_its_flag(kw, message):
    with pytest.raises(ValueError, match=message):
        DepthTest(**kw)
    with pytest.raises(ValueError, match=message):  # the same check when a config is built
        ALConfig(depth_test=kw)


def test_from_dict_refuses_unknown_keys_and_round_trips():
    t = DepthTest(mode="viewal", world_distance=0.1, aggregation="gather", backend="numpy")
    assert DepthTest.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert DepthTest.from_dict({"mode": "viewal"}) == DepthTest(mode="viewal")       # absent: the defaults
    with pytest.raises(ValueError, match=r"depth_test: unknown setting\(s\) 'distance', 'tol'; known: mode, "
                                         r"depth_tol, world_distance, aggregation, backend"):
        DepthTest.from_dict({"mode": "viewal", "tol": [0.1, 0.0], "distance": 0.1})
    with pytest.raises(ValueError, match="expected a dict"):
        DepthTest.from_dict(["z"])
    assert t.computes() == {"mode": "viewal", "depth_tol": [0.05, 0.02], "world_distance": 0.1,
                            "aggregation": "gather"}
    # in ALConfig: stored as a dict, read back equal; unknown keys refused when the config is built
    c = ALConfig(depth_test=t)
    assert ALConfig.from_json(json.loads(json.dumps(c.to_json()))).depth_test == t
    with pytest.raises(ValueError, match=r"unknown setting\(s\) 'tol'"):
        ALConfig.from_json({**c.to_json(), "depth_test": {"tol": [0.1, 0.0]}})
    with pytest.raises(ValueError, match=r"ALConfig: unknown setting\(s\) 'overlap_modes'"):
        ALConfig.from_json({**c.to_json(), "overlap_modes": "z"})
    with pytest.raises(ValueError, match="overlap_mode and depth_test both given"):
        ALConfig.from_json({**c.to_json(), "overlap_mode": "z"})


def test_scorer_options_that_carried_the_depth_test_are_refused_at_config_build():
    for key, flag in (("mode", "--depth-test"), ("depth_tol", "--depth-tol"), ("world_distance", "--depth-distance"),
                      ("aggregation", "--aggregation"), ("backend", "--kernel-backend")):
        with pytest.raises(ValueError, match=f"scorer_options: '{key}' set the run's depth test.*{key} -> {flag}"):
            ALConfig(scorer_options={key: None})
    with pytest.raises(ValueError, match="depth_test must be a viewal.kernels.DepthTest"):
        ALConfig(depth_test="viewal")


# ------------------------------------------------------------------------------------------ the CLI

def _experiment_args(*extra):
    from viewal.cli.experiment import configure_parser

    p = argparse.ArgumentParser()
    configure_parser(p)
    return p.parse_args(["--data", "d", "--out", "o", *extra])


def test_cli_flags_build_the_configs_depth_test():
    from viewal.cli.experiment import config_from_args

    args = _experiment_args("--depth-test", "viewal", "--depth-distance", "0.1", "--aggregation", "gather",
                            "--kernel-backend", "numpy", "--depth-tol", "0.1,0.01")
    assert config_from_args(args).depth_test == DepthTest(mode="viewal", depth_tol=(0.1, 0.01), world_distance=0.1,
                                                          aggregation="gather", backend="numpy")
    assert config_from_args(_experiment_args("--depth-test", "viewal")).depth_test == DepthTest(mode="viewal")
    assert config_from_args(_experiment_args("--depth-tol", "0.2,0")).depth_test.depth_tol == (0.2, 0.0)
    # the old flag is an alias of --depth-test (which now sets view entropy's test as well)
    with pytest.warns(FutureWarning, match="--overlap-mode is deprecated, use --depth-test"):
        assert config_from_args(_experiment_args("--overlap-mode", "viewal")).depth_test == DepthTest(mode="viewal")
    with pytest.raises(SystemExit):
        _experiment_args("--depth-test", "zz")


# ------------------------------------------------------------------------------------------ old ledgers

def test_old_ledger_opens_and_resumes_with_the_equivalent_depth_test(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    path = tmp_path / "old.sqlite"
    a = viewal.ActiveLearner(ds, scorer="random", ledger=path, **FAST)
    qa = a.query(budget_pixels=800, progress=False)
    a.label(qa[:1])
    stored = a.ledger.config()
    # settings added after OLD_CONFIG was captured (the scoring executor, warm start, the auxiliary task's
    # weight, the random share, the seed set's source and rule, propagation) are stored with their defaults; the
    # seed set of labelled data comes from the ground truth
    from viewal.kernels.rule import PROPAGATION_RULE

    assert stored["al"] == {**{k: v for k, v in OLD_CONFIG.items()
                               if k not in ("overlap_mode", "depth_tol", "kernel_backend")},
                            "depth_test": DEPTH_TEST.to_dict(), "executor": "local", "max_retries": 3,
                            "ray_address": None, "warm_start": False, "aux_weight": 1.0,
                            "random_share": 0.0, "seed_set": "oracle", "seed_rule": "random", "propagate": False,
                            "propagate_weight": 1.0, "propagate_rule": PROPAGATION_RULE.to_dict(),
                            "propagate_known": 0.5}
    # the same run as written before the depth test was one setting, with another kernel backend
    a.ledger.set_config({**stored, "al": {**OLD_CONFIG, "kernel_backend": "numpy"}}, overwrite=True)
    a.ledger.close()
    b = viewal.ActiveLearner(ds, scorer="random", ledger=path, **FAST)
    assert b.config.depth_test == DEPTH_TEST
    assert b.ledger.config()["al"] == stored["al"]                    # upgraded in place, backend now cpu
    assert [q.query_id for q in b.query(budget_pixels=800, progress=False)] == [q.query_id for q in qa[1:]]
    b.ledger.close()
    # a backend change alone resumes (how the run executes); a mode or tolerance change is another run
    c = viewal.ActiveLearner(ds, scorer="random", ledger=path, depth_test=DepthTest(backend="numpy"), **FAST)
    assert c.ledger.config()["al"]["depth_test"]["backend"] == "numpy"
    c.ledger.close()
    # so does any other execution setting: scoring on Ray, retries, the inference batch
    d = viewal.ActiveLearner(ds, scorer="random", ledger=path, **{**FAST, "executor": "ray", "max_retries": 1,
                                                                  "infer_batch_size": 2})
    assert (d.config.executor, d.ledger.config()["al"]["executor"], d.ledger.config()["al"]["max_retries"]) == (
        "ray", "ray", 1)
    d.ledger.close()
    for other in (DepthTest(mode="viewal"), DepthTest(depth_tol=(0.1, 0.02)), DepthTest(aggregation="splat")):
        with pytest.raises(LedgerError, match="different config.*al.depth_test"):
            viewal.ActiveLearner(ds, scorer="random", ledger=path, depth_test=other, **FAST)


def test_old_view_entropy_configs_upgrade_or_say_why_not():
    from viewal.runs.learner import upgrade_config

    old = {**OLD_CONFIG, "scorer": "view_entropy"}
    assert ALConfig.from_json(old).depth_test == DEPTH_TEST
    # the scorer's depth-test options move into the one test when they agree with the overlap table's
    vv = {**old, "overlap_mode": "viewal",
          "scorer_options": {"mode": "viewal", "backend": "numpy", "aggregation": None}}
    up = upgrade_config(vv)
    assert up["scorer_options"] == {} and "overlap_mode" not in up
    assert ALConfig.from_json(vv).depth_test == DepthTest(mode="viewal", aggregation="splat", backend="numpy")
    # the view entropy and the overlap table used two tests: no one setting is that run
    with pytest.raises(ValueError, match="view entropy used the depth test .*'mode': 'viewal'.* and its overlap "
                                         "table .*'mode': 'z'.*start a new run"):
        ALConfig.from_json({**old, "scorer_options": {"mode": "viewal"}})
    with pytest.raises(ValueError, match="view entropy used the depth test"):
        ALConfig.from_json({**old, "overlap_mode": "viewal"})      # the scorer's default was "z"
    # other scorers never computed view entropy: the overlap table's test is theirs
    assert ALConfig.from_json({**OLD_CONFIG, "overlap_mode": "viewal"}).depth_test == DepthTest(mode="viewal")


def test_old_ledger_with_two_depth_tests_is_refused_naming_the_file(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    path = tmp_path / "two.sqlite"
    with Ledger(path) as led:
        led.set_config({"al": {**OLD_CONFIG, "scorer": "view_entropy", "scorer_options": {"mode": "viewal"}},
                        "dataset": str(ds.root), "num_classes": ds.num_classes})
    with pytest.raises(LedgerError, match=f"{path.name}: its stored config cannot be read.*start a new run"):
        viewal.ActiveLearner(ds, scorer="view_entropy", ledger=path, **FAST)


# ------------------------------------------------------------------------------------------ one object everywhere

def _spy(monkeypatch, name, calls, *users):
    """Record the calls of kernel ``name``: in ``viewal.kernels`` and in each module of ``users`` that binds it."""
    real = getattr(kernels, name)

    def spy(*args, depth_test=DEPTH_TEST):
        out = real(*args, depth_test=depth_test)
        calls.append((depth_test, args, out))
        return out

    for module in (kernels, *users):
        monkeypatch.setattr(module, name, spy)


def test_one_depth_test_reaches_view_entropy_the_overlap_table_and_visualize(rooms_64x80, tmp_path, monkeypatch):
    import viewal.runs.visualize
    import viewal.scoring.executors
    from viewal.cli import main
    from viewal.runs.layout import RunLayout
    from viewal.selection import pool_frames

    ds = open_dataset(rooms_64x80)
    test = DepthTest(mode="viewal", world_distance=0.3, aggregation="gather", backend="numpy")
    ve_calls, ov_calls = [], []
    _spy(monkeypatch, "view_entropy_divergence", ve_calls, viewal.runs.visualize)
    _spy(monkeypatch, "superpixel_overlap", ov_calls, viewal.scoring.executors)
    layout = RunLayout(tmp_path / "run")
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=layout.ledger("view_entropy", 0),
                                   depth_test=test, **FAST)
    assert learner.config.depth_test == test and learner.scorer.depth_test == test
    learner.query(budget_pixels=800, progress=False)
    n_scenes = len({f.scene_id for f in learner.pool})
    assert len(ve_calls) == n_scenes and len(ov_calls) == n_scenes
    assert all(t is learner.config.depth_test for t, *_ in ve_calls + ov_calls)   # the config's object, unchanged
    assert learner.ledger.config()["al"]["depth_test"] == test.to_dict()          # stored with the run

    # the learner's region scores are the kernel's under that test, and differ under mode "z"
    pool = learner.score_pool(progress=False)
    t, (probs, depths, Ks, poses), (ve, _) = ve_calls[-1]
    sp = np.stack([learner.regions(f) for f in learner.pool if f.scene_id == pool.scene_ids[-1]])
    last = pool.offsets[-1 - len(sp)]
    np.testing.assert_allclose(pool.score[last:], pool_frames(ve, sp)[0], rtol=1e-6)
    ve_z, _ = kernels.view_entropy_divergence(probs, depths, Ks, poses, depth_test=DepthTest(backend="numpy"))
    assert np.nanmax(np.abs(pool_frames(ve_z, sp)[0] - pool.score[last:])) > 1e-3

    # visualize reads the run's stored depth test (only the backend may be overridden)
    learner.save_model(layout.checkpoint("view_entropy", learner.config, learner.ledger.cycle()))
    learner.ledger.close()
    ve_calls.clear()
    scene = ds.scene_ids[0]
    assert main(["visualize", "--run", str(layout.root), "--ply", scene, "--stride", "8"]) == 0
    assert [t for t, *_ in ve_calls] == [test]
    ve_calls.clear()
    assert main(["visualize", "--run", str(layout.root), "--ply", scene, "--stride", "8",
                 "--kernel-backend", "cpu"]) == 0
    assert [t for t, *_ in ve_calls] == [dataclasses.replace(test, backend="cpu")]


def test_mode_viewal_and_z_give_the_learner_different_view_entropy(rooms_64x80, tmp_path):
    """The same model, the same MC masks: the config's depth test alone changes the scores the learner pools."""
    ds = open_dataset(rooms_64x80)
    z = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "z.sqlite", **FAST)
    z.fit(progress=False)
    z.save_model(tmp_path / "m.pt")
    v = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "v.sqlite",
                             depth_test=DepthTest(mode="viewal"), **FAST)
    v.load_model(tmp_path / "m.pt")
    pz, pv = z.score_pool(progress=False), v.score_pool(progress=False)
    assert pz.score.shape == pv.score.shape
    diff = np.abs(pz.score - pv.score)
    assert (diff > 1e-3).mean() > 0.2
    same = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "z2.sqlite",
                                depth_test=DepthTest(backend="numpy"), **FAST)
    same.load_model(tmp_path / "m.pt")
    np.testing.assert_allclose(same.score_pool(progress=False).score, pz.score, atol=1e-5)  # the backend: none
