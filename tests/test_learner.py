"""The region-query API (ActiveLearner) and the experiment runner, end to end on a tiny synthetic dataset."""
import csv
import sqlite3

import numpy as np
import pytest

import viewal
from viewal.cli import main
from viewal.datasets import open_dataset
from viewal.runs.ledger import Ledger

FAST = dict(epochs=1, min_iterations=0, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4, infer_batch_size=4)


def test_query_label_contract(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "run.sqlite", **FAST)
    seed_px = learner.ledger.labelled_pixels()
    assert seed_px == 2 * 64 * 80  # 20 % of 10 pool frames, fully labelled
    budget = 1500
    queries = learner.query(budget_pixels=budget, progress=False)
    assert queries and all(isinstance(q, viewal.RegionQuery) for q in queries)
    q = queries[0]
    assert q.mask.shape == (64, 80) and q.mask.dtype == bool and q.mask.any()
    assert np.isfinite(q.score) and q.frame_key in {f.key for f in ds.split("train")}
    sizes = [int(x.mask.sum()) for x in queries]
    assert sum(sizes) >= budget and sum(sizes) - max(sizes) < budget  # over by at most one region
    # no query touches already-labelled pixels; queries are disjoint
    for x in queries:
        assert not (learner.ledger.labelled_mask(x.frame_key, (64, 80)) & x.mask).any()
    assert learner.label(queries) == len(queries)
    assert learner.ledger.labelled_pixels() == seed_px + sum(sizes)
    assert learner.label(queries) == 0  # nothing labelled twice
    # the labels are the ground truth inside the masks, ignore elsewhere
    lm = learner.ledger.label_map(q.frame_key, (64, 80))
    gt = ds.frame(q.frame_key).labels
    np.testing.assert_array_equal(lm[q.mask], gt[q.mask])
    # labels from a person, validated
    f = next(fr for fr in ds.split("train") if not learner.ledger.labelled_mask(fr.key, (64, 80)).all())
    free = ~learner.ledger.labelled_mask(f.key, (64, 80))
    mask = np.zeros((64, 80), bool)
    mask[tuple(np.argwhere(free)[:10].T)] = True
    learner.add_labels(f.key, mask, np.full((64, 80), 1))
    assert learner.ledger.labelled_pixels() == seed_px + sum(sizes) + 10
    with pytest.raises(ValueError, match="outside"):
        learner.add_labels(f.key, mask, np.full((64, 80), 99))
    with pytest.raises(ValueError, match="must both be"):
        learner.add_labels(f.key, mask[:10], np.full((64, 80), 1))
    res = learner.evaluate()
    assert 0.0 <= res["miou"] <= 1.0 and len(res["per_class_iou"]) == ds.num_classes


def test_resume_returns_the_same_pending_queries(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    a = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "r.sqlite", **FAST)
    qa = a.query(budget_pixels=800, progress=False)
    a.label(qa[:1])
    a.ledger.close()
    b = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "r.sqlite", **FAST)
    qb = b.query(budget_pixels=800, progress=False)  # the unlabelled rest of the same cycle
    assert [x.query_id for x in qb] == [x.query_id for x in qa[1:]]
    assert b.label() == len(qa) - 1
    with pytest.raises(Exception, match="different config"):
        viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "r.sqlite", **FAST)


def test_ledger_from_before_a_setting_existed_resumes_with_its_default(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    a = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "old.sqlite", **FAST)
    stored = a.ledger.config()
    del stored["al"]["pseudo_labels"]  # as written by a viewal without that option
    a.ledger.set_config(stored, overwrite=True)
    a.ledger.close()
    b = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "old.sqlite", **FAST)
    assert b.ledger.config()["al"]["pseudo_labels"] == "none"
    b.ledger.close()
    with pytest.raises(Exception, match="different config"):  # a non-default value is still a different run
        viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "old.sqlite", pseudo_labels="ups", **FAST)
    # resuming with other threads / inference batch (how it runs, not what it is) keeps the run
    c = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "old.sqlite", **{**FAST, "num_threads": 2,
                                                                                    "infer_batch_size": 2})
    assert c.ledger.config()["al"]["num_threads"] == 2 and c.ledger.config()["al"]["infer_batch_size"] == 2
    c.ledger.close()


def test_same_seed_same_queries(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    runs = []
    for k in range(2):
        learner = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / f"d{k}.sqlite", **FAST)
        runs.append([(q.frame_key, q.region_id) for q in learner.query(budget_pixels=1200, progress=False)])
    assert runs[0] == runs[1]
    other = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "d2.sqlite", **{**FAST, "seed": 5})
    assert [(q.frame_key, q.region_id) for q in other.query(budget_pixels=1200, progress=False)] != runs[0]


def test_random_share_spends_part_of_the_budget_on_random_regions(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    plain = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "p.sqlite", **FAST)
    top = [(q.frame_key, q.region_id) for q in plain.query(budget_pixels=600, progress=False)]
    mixed = [viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / f"m{k}.sqlite", random_share=0.5, **FAST)
             for k in range(2)]
    picks = [[(q.frame_key, q.region_id) for q in m.query(budget_pixels=1200, progress=False)] for m in mixed]
    assert picks[0] == picks[1]                      # seeded per run and cycle: a rerun asks the same
    k = len(top)
    assert picks[0][:k] == top                       # half the budget: the scorer's own first picks
    assert len(picks[0]) > k and not set(picks[0][k:]) & set(top)
    # the other half is not what the scorer alone would have asked next with the whole budget
    alone = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "a.sqlite", **FAST)
    whole = [(q.frame_key, q.region_id) for q in alone.query(budget_pixels=1200, progress=False)]
    assert whole[:k] == top and set(picks[0][k:]) != set(whole[k:])
    with pytest.raises(ValueError, match="random_share must be a number in"):
        viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "x.sqlite", random_share=1.0, **FAST)


def test_whole_image_regions(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "w.sqlite", region="image", **FAST)
    queries = learner.query(budget_pixels=64 * 80, progress=False)
    assert len(queries) == 1 and queries[0].mask.all()


def test_experiment_cli_and_resume(rooms_64x80, tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "--data", str(rooms_64x80), "--methods", "view_entropy,random", "--cycles", "2",
            "--budget", "4",
            "--seeds", "1", "--out", str(out), "--iterations", "2", "--mc-passes", "2", "--seed-fraction", "0.2",
            "--threads", "1", "--batch-size", "4"]
    assert main(args) == 0
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 3
    for method in ("view_entropy", "random"):
        fr = [float(r["labelled_fraction"]) for r in rows if r["method"] == method]
        assert fr[0] == pytest.approx(0.2) and fr[0] < fr[1] < fr[2]
        assert fr[2] - fr[0] == pytest.approx(0.08, abs=0.04)  # two cycles of 4 %, region granularity
    assert (out / "curves.png").stat().st_size > 5000
    assert "view_entropy" in capsys.readouterr().out
    # the seed-set model is shared between methods; each cycle has a checkpoint
    assert (out / "models" / "seedset-s0.pt").is_file() and (out / "models" / "random-s0-c2.pt").is_file()
    counts = Ledger(out / "ledgers" / "random-s0.sqlite").counts()
    # resuming a finished experiment trains and labels nothing new
    assert main(args) == 0
    assert Ledger(out / "ledgers" / "random-s0.sqlite").counts() == counts
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6


@pytest.mark.parametrize("option", [{"pseudo_labels": "ups"}, {"augment": "max_entropy"}])
def test_training_options_run_through_the_learner(rooms_64x80, tmp_path, option):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "o.sqlite", **FAST, **option)
    learner.fit(progress=False)
    assert learner.fit_stats  # the option ran and reported what it measured
    assert not hasattr(learner.model, "rotation_head")
    assert 0.0 <= learner.evaluate()["miou"] <= 1.0


def test_pal_uses_its_own_pool_selection(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="pal", ledger=tmp_path / "p.sqlite", **FAST,
                                   scorer_options={"sub_queries": 2, "finetune_steps": 1})
    queries = learner.query(budget_pixels=1500, progress=False)
    sizes = [int(q.mask.sum()) for q in queries]
    assert sum(sizes) >= 1500 and sum(sizes) - max(sizes) < 1500
    assert hasattr(learner.model, "rotation_head")  # prepare_model attached PAL's head before training


def test_loss_prediction_trains_its_head_per_region(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="loss_prediction", ledger=tmp_path / "l.sqlite", **FAST)
    items = learner.training_items()
    assert all(np.array_equal(extra["superpixels"], learner.regions(f)) for f, _, extra in items)
    queries = learner.query(budget_pixels=1000, progress=False)
    assert hasattr(learner.model, "loss_head") and queries
    assert all(np.isfinite(q.score) for q in queries)


def test_method_specs_parse_into_scorer_and_training_aids():
    from viewal.runs.experiment import parse_method

    assert parse_method("view_entropy") == ("view_entropy", {})
    assert parse_method("random+ups") == ("random", {"pseudo_labels": "ups"})
    assert parse_method("entropy+max_entropy+classwise") == ("entropy", {"augment": "max_entropy",
                                                                          "pseudo_labels": "classwise"})
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        parse_method("nope+ups")
    with pytest.raises(ValueError, match="unknown training aid 'flip'"):
        parse_method("random+flip")
    with pytest.raises(ValueError, match="two pseudo_labels aids"):
        parse_method("random+ups+classwise")
    # the region kind is part of a spec: ViewAL's RAND (whole images) next to random superpixels
    assert parse_method("random@image") == ("random", {"region": "image"})
    assert parse_method("entropy@superpixel+ups") == ("entropy", {"region": "superpixel", "pseudo_labels": "ups"})
    with pytest.raises(ValueError, match="unknown region kind 'pixel'"):
        parse_method("random@pixel")
    # :key=value items: a scorer's options or a few ALConfig fields, so ablations share one run
    assert parse_method("view_entropy:selection=greedy:dedup=true") == (
        "view_entropy", {"dedup": True, "scorer_options": {"selection": "greedy"}})
    assert parse_method("view_entropy@image:rank=vd") == ("view_entropy", {"region": "image",
                                                                          "scorer_options": {"rank": "vd"}})
    with pytest.raises(ValueError, match="unknown option"):
        parse_method("entropy:rank=vd")
    with pytest.raises(ValueError, match="'rank' must be one of"):
        parse_method("view_entropy:rank=kl")
    with pytest.raises(ValueError, match="not key=value"):
        parse_method("view_entropy:rank")
    with pytest.raises(ValueError, match="dedup must be true or false"):
        parse_method("view_entropy:dedup=2")
    assert parse_method("random@image:min_iterations=560") == ("random", {"region": "image", "min_iterations": 560})
    with pytest.raises(ValueError, match="'random:min_iterations=0.5': min_iterations must be an integer >= 0"):
        parse_method("random:min_iterations=0.5")  # one check, one range: ALConfig's
    assert parse_method("view_entropy:random_share=0.5") == ("view_entropy", {"random_share": 0.5})
    for bad in ("1", "-0.2", "true", "lots"):
        with pytest.raises(ValueError, match="random_share must be a number in"):
            parse_method(f"entropy:random_share={bad}")
    from viewal.core.config import ALConfig
    from viewal.runs.experiment import method_config

    cfg = method_config(ALConfig(scorer_options={"selection": "greedy"}), "view_entropy:rank=vd", seed=3)
    assert (cfg.scorer, cfg.seed, cfg.scorer_options) == ("view_entropy", 3, {"selection": "greedy", "rank": "vd"})


def test_budget_schedule_and_annotation_costs(rooms_64x80, tmp_path):
    """--budget 3,9 labels about 3 % then 9 % of the pool; random@image picks whole frames; results carry
    regions asked and frames touched."""
    from viewal.runs.experiment import budget_for_cycle, parse_budgets

    assert parse_budgets("2") == [2.0] and parse_budgets("2,4.5") == [2.0, 4.5]
    assert [budget_for_cycle([2, 4], c) for c in (1, 2, 3)] == [2, 4, 4]
    with pytest.raises(ValueError, match="--budget"):
        parse_budgets("2,x")
    with pytest.raises(ValueError, match="positive"):
        parse_budgets("0")
    out = tmp_path / "exp"
    assert main(["experiment", "--data", str(rooms_64x80), "--methods", "random,random@image", "--cycles", "2",
                 "--budget", "3,9", "--seeds", "1", "--out", str(out), "--iterations", "2", "--mc-passes", "2",
                 "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4", "--decoder-channels", "16",
                 "--no-full-data"]) == 0
    with open(out / "results.csv") as fh:
        rows = {(r["method"], int(r["cycle"])): r for r in csv.DictReader(fh)}
    fr = [float(rows["random", c]["labelled_fraction"]) for c in range(3)]
    assert fr[1] - fr[0] == pytest.approx(0.03, abs=0.02) and fr[2] - fr[1] == pytest.approx(0.09, abs=0.02)
    regions = [int(rows["random", c]["regions"]) for c in range(3)]
    frames = [int(rows["random", c]["frames"]) for c in range(3)]
    assert regions[0] == frames[0] == 2  # the seed set: two whole frames, one region each
    assert regions[0] < regions[1] < regions[2] and frames[0] <= frames[1] <= frames[2]
    # whole images: every cycle adds whole frames (one region each), 10 pool frames of 64x80
    img = [(float(rows["random@image", c]["labelled_fraction"]), int(rows["random@image", c]["regions"]),
            int(rows["random@image", c]["frames"])) for c in range(3)]
    for f, r, n in img:
        assert r == n and f == pytest.approx(n / 10)
    assert img[2][2] > img[0][2]


def test_seed_set_model_is_shared_only_between_identical_training_recipes():
    from viewal.core.config import ALConfig
    from viewal.runs.experiment import method_config, seedset_name

    base = ALConfig()
    names = {m: seedset_name(method_config(base, m, 2), m) for m in
             ("view_entropy", "random", "flip_consistency", "loss_prediction", "consistency_loss", "pal",
              "random+ups", "random+max_entropy", "pal+confidence", "random+rotation", "pal+rotation")}
    assert names["view_entropy"] == names["random"] == names["flip_consistency"] == "seedset-s2.pt"
    assert names["loss_prediction"] == names["consistency_loss"] == "seedset-s2-loss_head.pt"
    assert names["pal"] == "seedset-s2-rotation_head.pt"
    assert names["random+ups"] == "seedset-s2-ups.pt" and names["random+max_entropy"] == "seedset-s2-max_entropy.pt"
    assert names["pal+confidence"] == "seedset-s2-rotation_head-confidence.pt"
    # the rotation aid trains what PAL trains: they share a cycle-0 model
    assert names["random+rotation"] == names["pal+rotation"] == names["pal"]


def test_seed_set_name_keys_the_training_a_method_spec_changes():
    from viewal.core.config import ALConfig
    from viewal.runs.experiment import method_config, seedset_name

    # the run's plain recipe (--epochs 8 --iterations 150 --lr 1e-2 ...): today's names, byte for byte
    base = ALConfig(epochs=8, min_iterations=150, lr=1e-2, size=(96, 128), sampling="labels", mc_passes=4)
    plain = {m: seedset_name(method_config(base, m, 0), m) for m in
             ("view_entropy", "random", "random@image", "entropy", "view_entropy:rank=vd", "view_entropy:dedup=true",
              "random+ups", "pal", "pal+rotation")}
    assert plain == {"view_entropy": "seedset-s0.pt", "random": "seedset-s0.pt", "random@image": "seedset-s0.pt",
                     "entropy": "seedset-s0.pt", "view_entropy:rank=vd": "seedset-s0.pt",
                     "view_entropy:dedup=true": "seedset-s0.pt", "random+ups": "seedset-s0-ups.pt",
                     "pal": "seedset-s0-rotation_head.pt", "pal+rotation": "seedset-s0-rotation_head.pt"}
    # a method spec that trains differently gets its own file, named by the value it sets
    more = {m: seedset_name(method_config(base, m, 0), m) for m in
            ("random@image:min_iterations=560", "random:min_iterations=560", "random:min_iterations=300",
             "random+ups:min_iterations=560", "pal@image", "pal:rotation_weight=2")}
    assert more["random@image:min_iterations=560"] == more["random:min_iterations=560"] == "seedset-s0-fit-67a9aa4e.pt"
    assert len(set(more.values()) | set(plain.values())) == len(set(plain.values())) + 5
    assert more["random+ups:min_iterations=560"] == "seedset-s0-ups-fit-67a9aa4e.pt"
    assert more["pal@image"].startswith("seedset-s0-rotation_head-fit-")  # PAL's head trains on its regions


def test_methods_that_train_the_seed_set_differently_keep_their_own_model(rooms_64x80, tmp_path):
    from viewal.core.config import ALConfig
    from viewal.runs.layout import RunLayout

    out = tmp_path / "two"
    methods = ["random", "random@image:min_iterations=3"]
    args = ["experiment", "--data", str(rooms_64x80), "--methods", ",".join(methods), "--cycles", "0", "--seeds", "1",
            "--out", str(out), "--iterations", "1", "--epochs", "1", "--mc-passes", "2", "--seed-fraction", "0.2",
            "--threads", "1", "--batch-size", "4", "--decoder-channels", "16", "--no-full-data", "--validations", "1",
            "--no-propagate"]  # the seed frames' own labels: one batch
    assert main(args) == 0
    models = sorted(p.name for p in (out / "models").glob("*.pt"))
    assert models[1] == "seedset-s0.pt" and models[0].startswith("seedset-s0-fit-") and len(models) == 2
    ds = open_dataset(rooms_64x80)
    for m in methods:  # neither fit overwrote the other: each file is current for its own ledger and recipe
        with Ledger(RunLayout(out).ledger(m, 0)) as led:
            learner = viewal.ActiveLearner(ds, ledger=led, config=ALConfig.from_json(led.config()["al"]))
            assert learner.config.min_iterations == (3 if "@" in m else 1)
            assert led.results()[0]["steps"] == (3 if "@" in m else 1)  # 2 seed frames: 1 batch, then the floor
            assert learner.checkpoint_is_current(RunLayout(out).checkpoint(m, learner.config, 0))


def test_experiment_runs_a_training_aid_next_to_its_plain_method(rooms_64x80, tmp_path, capsys):
    out = tmp_path / "aid"
    # 20 steps at lr 1e-2 make the ImageNet-started model confident enough for some pseudo-labels
    args = ["experiment", "--data", str(rooms_64x80), "--methods", "random,random+confidence", "--cycles", "1",
            "--budget", "4", "--seeds", "1", "--out", str(out), "--iterations", "20", "--mc-passes", "2",
            "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4", "--no-full-data",
            "--decoder-channels", "16", "--lr", "1e-2"]
    assert main(args) == 0
    assert (out / "models" / "seedset-s0.pt").is_file() and (out / "models" / "seedset-s0-confidence.pt").is_file()
    plain = Ledger(out / "ledgers" / "random-s0.sqlite").results()
    aided = Ledger(out / "ledgers" / "random+confidence-s0.sqlite").results()
    assert "fit_stats.precision" not in plain[1] and not any(k.startswith("precision") for k in plain[1]["fit_stats"])
    assert 0.0 <= aided[1]["fit_stats"]["precision"] <= 1.0  # pseudo-label precision recorded per cycle
    assert main(args[:4] + ["random+bogus"] + args[5:]) != 0
    assert "unknown training aid 'bogus'" in capsys.readouterr().err


def test_rotation_aid_trains_a_rotation_head_for_any_scorer(rooms_64x80, tmp_path):
    from viewal.core.config import ALConfig

    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "rot.sqlite", auxiliary="rotation", **FAST)
    learner.fit(progress=False)
    head = learner.model.rotation_head
    before = {k: v.clone() for k, v in head.state_dict().items()}
    fresh, _ = learner._new_model()
    assert hasattr(fresh, "rotation_head")
    # the head was trained (its weights moved away from the same seed's fresh initialisation)
    moved = max(float((before[k] - fresh.rotation_head.state_dict()[k]).abs().max()) for k in before)
    assert moved > 1e-4
    with pytest.raises(ValueError, match="auxiliary"):
        ALConfig(auxiliary="jigsaw")


def test_epochs_make_the_steps_grow_with_the_labelled_frames():
    import argparse

    from viewal.cli import experiment
    from viewal.runs.learner import train_config

    p = argparse.ArgumentParser()
    experiment.configure_parser(p)
    fixed = experiment.config_from_args(p.parse_args(["--data", "d", "--out", "o", "--iterations", "150"]))
    grow = experiment.config_from_args(p.parse_args(["--data", "d", "--out", "o", "--iterations", "150",
                                                     "--epochs", "8", "--batch-size", "8"]))

    def steps(c, n):
        cfg = train_config(c, n)
        return cfg.steps if cfg.steps is not None else cfg.epochs * -(-n // 8)

    assert [steps(fixed, n) for n in (11, 300, 560)] == [150, 150, 150]
    # 8 passes over n frames in batches of 8, never fewer than --iterations steps
    assert [steps(grow, n) for n in (11, 150, 300, 561)] == [150, 152, 304, 568]
    with pytest.raises(ValueError, match="--epochs"):
        experiment.check_experiment_args(p.parse_args(["--data", "d", "--out", "o", "--epochs", "0"]))
    # --validations: one validation = one epoch of all the steps (the demo's cut)
    once = experiment.config_from_args(p.parse_args(["--data", "d", "--out", "o", "--iterations", "40",
                                                     "--validations", "1"]))
    assert once.validations == 1 and train_config(once, 20).steps_per_epoch == 40
    assert train_config(fixed, 20).steps_per_epoch == 30  # 150 steps, 5 validations
    with pytest.raises(ValueError, match="--validations"):
        experiment.check_experiment_args(p.parse_args(["--data", "d", "--out", "o", "--validations", "0"]))


def test_warm_start_continues_from_the_previous_cycles_model(rooms_64x80, tmp_path, monkeypatch):
    """``warm_start``: a cycle's fit starts from the weights of the learner's current model (the seed set's fit
    from the ImageNet/``init`` start); without it every fit starts from the same fresh initialisation. The
    weights are read at the moment training begins."""
    import torch

    import viewal.runs.learner
    from viewal.runs.experiment import parse_method
    from viewal.runs.learner import ALConfig, model_fingerprint, training_key

    starts = []
    real = viewal.runs.learner.run_steps
    monkeypatch.setattr(viewal.runs.learner, "run_steps", lambda steps, state: (
        starts.append({k: v.clone() for k, v in state.model.state_dict().items()}), real(steps, state))[1])
    ds = open_dataset(rooms_64x80)
    for warm in (False, True):
        starts.clear()
        learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / f"w{warm}.sqlite", init="random",
                                       decoder_channels=16, warm_start=warm, **FAST)
        learner.fit(progress=False)
        seed_model = {k: v.clone() for k, v in learner.model.state_dict().items()}
        learner.fit(progress=False)
        first, second = starts
        same_as_fresh = all(torch.equal(first[k], second[k]) for k in first)
        same_as_trained = all(torch.equal(seed_model[k], second[k]) for k in seed_model)
        assert (same_as_fresh, same_as_trained) == ((False, True) if warm else (True, False))
        learner.ledger.close()
    # a method spec sets it for one method; a cold config's training key (its checkpoints' fingerprints) is
    # what it was before the setting existed
    assert parse_method("random:warm_start=true") == ("random", {"warm_start": True})
    with pytest.raises(ValueError, match="warm_start must be true or false"):
        parse_method("random:warm_start=1")
    with pytest.raises(ValueError, match="warm_start must be True or False"):
        ALConfig(warm_start="yes")
    assert ALConfig().warm_start  # the cpu preset's
    assert "warm_start" not in training_key(ALConfig(warm_start=False))
    assert training_key(ALConfig(warm_start=True))["warm_start"] is True
    assert model_fingerprint(ALConfig(warm_start=False), "x") != model_fingerprint(ALConfig(warm_start=True), "x")


def test_warm_start_run_shares_the_cold_full_data_reference(rooms_64x80, tmp_path):
    """The full-data reference is one fit from the start: a warm-start run reuses the cold run's cached one
    (same "seconds": not trained again); another recipe (lr) trains its own."""
    from viewal.core.config import ALConfig
    from viewal.runs.experiment import full_data_miou

    ds = open_dataset(rooms_64x80)
    cold = ALConfig(init="random", decoder_channels=16, steps=2, **FAST)
    first = full_data_miou(ds, cold, tmp_path, progress=False)
    warm = full_data_miou(ds, ALConfig(**{**cold.__dict__, "warm_start": True}), tmp_path, progress=False)
    assert (warm["seconds"], warm["miou"], warm["recipe"]) == (first["seconds"], first["miou"], first["recipe"])
    other = full_data_miou(ds, ALConfig(**{**cold.__dict__, "lr": 1e-3}), tmp_path, progress=False)
    assert other["recipe"] != first["recipe"]


def test_run_cycle_is_open_label_close_and_resumes(rooms_64x80, tmp_path):
    """``run_cycle`` makes a whole cycle with the simulated oracle: the seed set's (no budget), then one that selects;
    a second learner on the same ledger and checkpoints goes on where the first stopped, without training again."""
    ds = open_dataset(rooms_64x80)
    kw = dict(scorer="random", init="random", decoder_channels=16, steps=2, validations=1, **FAST)
    learner = viewal.ActiveLearner(ds, ledger=tmp_path / "r.sqlite", **kw)
    m0 = learner.run_cycle(checkpoint=tmp_path / "c0.pt")
    assert learner.cycle == 1 and m0["regions"] == len(learner.ledger.labels(0)) > 0
    with pytest.raises(ValueError, match="cycle 1 selects regions; give its budget_pixels"):
        learner.run_cycle()
    queries = learner.open_cycle(1500, tmp_path / "c0.pt", progress=False)  # a kill after the selection ...
    learner.ledger.close()
    again = viewal.ActiveLearner(ds, ledger=tmp_path / "r.sqlite", **kw)
    m1 = again.run_cycle(1500, checkpoint=tmp_path / "c1.pt", previous=tmp_path / "c0.pt")
    # ... resumes with the recorded queries answered, not a new selection
    assert [q.query_id for q in queries] == [r["query_id"] for r in again.ledger.labels(1)]
    assert again.cycle == 2 and m1["labelled_fraction"] > m0["labelled_fraction"] and m1["steps"] == 2


def test_each_cycle_fits_from_its_own_seed(rooms_64x80, tmp_path, monkeypatch):
    """A cold run's fits of cycles 0 and 1 start from different initialisations and draw different batches: each
    cycle's seed is ``fit_seed(train seed, cycle)``; two fits of one cycle start alike."""
    import torch

    import viewal.runs.learner
    from viewal.core.seeding import fit_seed

    starts, seeds = [], []
    real = viewal.runs.learner.run_steps
    monkeypatch.setattr(viewal.runs.learner, "run_steps", lambda steps, state: (
        starts.append(state.model.state_dict()["net.segmentation_head.0.weight"].clone()),
        seeds.append(state.config.seed), real(steps, state))[2])
    ds = open_dataset(rooms_64x80)
    with viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "s.sqlite", init="random", decoder_channels=16,
                              warm_start=False, steps=2, validations=1, train_seed=5, **FAST) as learner:
        learner.run_cycle(progress=False)
        learner.run_cycle(1500, progress=False)
        learner.fit(progress=False)  # cycle 2's fit, twice
        learner.fit(progress=False)
        assert learner.train_config(cycle=1).seed == fit_seed(5, 1) == seeds[1]
    assert seeds == [fit_seed(5, 0), fit_seed(5, 1), fit_seed(5, 2), fit_seed(5, 2)]
    assert not torch.equal(starts[0], starts[1]) and torch.equal(starts[2], starts[3])
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):  # the context manager closed the ledger
        learner.ledger.cycle()


def test_close_releases_the_ledger_and_the_model(rooms_64x80, tmp_path):
    ds = open_dataset(rooms_64x80)
    learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "c.sqlite", init="random",
                                   decoder_channels=16, steps=1, validations=1, **FAST)
    learner.run_cycle(progress=False)
    assert learner.model is not None
    learner.close()
    learner.close()  # twice is fine
    assert learner.model is None
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        learner.ledger.cycle()
    with viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "c.sqlite", init="random",
                              decoder_channels=16, steps=1, validations=1, **FAST) as again:
        assert again.cycle == 1  # the ledger was closed whole: it resumes
