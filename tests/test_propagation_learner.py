"""3D label propagation in the learner: settings, training items, selection, metrics, resume, CLI and loop."""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

import viewal
from viewal.cli import main
from viewal.datasets import open_dataset
from viewal.kernels import PropagationRule
from viewal.runs.learner import ALConfig, model_fingerprint, training_key
from viewal.selection import build_pool

FAST = dict(epochs=1, steps=2, validations=1, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4,
            infer_batch_size=4, propagate=False)
RECIPE = ["--iterations", "2", "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4",
          "--decoder-channels", "16", "--init", "random"]
HW = (64, 80)


def learner(rooms_64x80, path, **kw):
    return viewal.ActiveLearner(open_dataset(rooms_64x80), ledger=path, **{**FAST, "scorer": "random", **kw})


# ------------------------------------------------------------------------------------------ settings

def test_settings_are_validated_stored_and_keyed():
    c = ALConfig(propagate=True, propagate_weight=0.5, propagate_rule={"min_agreement": 0.9})
    assert c.propagate_rule == PropagationRule(0.9, 1, 1)
    assert ALConfig.from_json(json.loads(json.dumps(c.to_json()))) == c
    for bad in (dict(propagate="yes"), dict(propagate_weight=-1), dict(propagate_weight=float("nan")),
                dict(propagate_known=0), dict(propagate_known=1.5), dict(propagate_rule={"votes": 2}),
                dict(propagate_rule="strict")):
        with pytest.raises(ValueError, match="propagate|rule"):
            ALConfig(**bad)
    # a run that does not propagate keeps its training key (and so its checkpoints' fingerprints)
    assert ALConfig().propagate and not ALConfig.preset("paper").propagate  # the cpu preset propagates
    plain = training_key(ALConfig(propagate=False))
    assert not any(k.startswith("propagate") for k in plain)
    assert training_key(ALConfig(propagate=False, propagate_weight=0.3, propagate_known=0.9)) == plain
    keys = {model_fingerprint(c, "d") for c in (ALConfig(propagate=False), ALConfig(propagate=True),
                                                ALConfig(propagate=True, propagate_weight=0.5),
                                                ALConfig(propagate=True, propagate_rule=PropagationRule(0.9, 2, 1)))}
    assert len(keys) == 4
    # the selection share is not a training setting
    assert training_key(ALConfig(propagate=True, propagate_known=0.9)) == training_key(ALConfig(propagate=True))


def test_spec_key_and_cli_flag_reach_the_config(rooms_64x80):
    from viewal.cli.experiment import config_from_args, configure_parser
    from viewal.cli.loop import configure_parser as loop_parser
    from viewal.runs.experiment import method_config, parse_method
    from viewal.runs.layout import seedset_name

    assert parse_method("view_entropy:propagate=true:propagate_weight=0.5") == \
        ("view_entropy", {"propagate": True, "propagate_weight": 0.5})
    for bad in ("random:propagate=1", "random:propagate_weight=-2", "random:propagate_known=2"):
        with pytest.raises(ValueError, match="propagate"):
            parse_method(bad)
    off = ALConfig(propagate=False)
    cfg = method_config(off, "random:propagate=true", seed=1)
    assert cfg.propagate and cfg.seed == 1 and not method_config(off, "random", 1).propagate
    assert not method_config(ALConfig(), "random:propagate=false", 1).propagate
    # ablations share one run, each with its own seed-set model
    assert seedset_name(cfg, "random:propagate=true") != seedset_name(method_config(off, "random", 1), "random")
    p = argparse.ArgumentParser()
    configure_parser(p)
    args = p.parse_args(["--data", str(rooms_64x80), "--out", "o", "--propagate", "--propagate-weight", "0.25"])
    c = config_from_args(args)
    assert c.propagate and c.propagate_weight == 0.25
    assert config_from_args(p.parse_args(["--data", str(rooms_64x80), "--out", "o"])).propagate  # the cpu preset
    assert not config_from_args(p.parse_args(["--data", str(rooms_64x80), "--out", "o", "--no-propagate"])).propagate
    assert not config_from_args(p.parse_args(["--data", str(rooms_64x80), "--out", "o", "--preset", "paper"])).propagate
    lp = argparse.ArgumentParser()
    loop_parser(lp)
    c = config_from_args(lp.parse_args(["start", "--data", str(rooms_64x80), "--run", "r", "--propagate"]))
    assert c.propagate and c.propagate_weight == 1.0


# ------------------------------------------------------------------------------------------ training

def test_training_items_carry_propagated_labels_and_their_weight(rooms_64x80, tmp_path):
    L = learner(rooms_64x80, tmp_path / "p.sqlite", propagate=True, propagate_weight=0.5)
    pool = {f.key for f in L.pool}
    items = L.training_items()
    keys = [f.key for f, _, _ in items]
    human_frames = set(L.ledger.labelled_frames())
    assert set(keys) <= pool and human_frames <= set(keys)
    assert set(keys) - human_frames, "frames with propagated labels only are training items"
    n_prop = 0
    for f, lab, ex in items:
        human = L.ledger.labelled_mask(f.key, HW)
        np.testing.assert_array_equal(lab[human], L.ledger.label_map(f.key, HW)[human])
        prop = (lab != 255) & ~human
        np.testing.assert_array_equal(prop, L.propagated_labels(f.key) != 255)
        np.testing.assert_array_equal(ex["weight"], np.where(prop, 0.5, 1.0).astype(np.float32))
        assert ex["superpixels"].shape == HW
        n_prop += int(prop.sum())
    assert n_prop > 0
    # propagation reaches pool frames only: val and test frames never get labels
    ds = L.dataset
    assert {sid for sid in L.propagation()} == {f.scene_id for f in L.pool}
    for split in ("val", "test"):
        with pytest.raises(ValueError, match="pool frame"):
            L.propagated_labels(ds.split(split)[0].key)
        assert not {f.key for f in ds.split(split)} & set(keys)
    # a plain run trains on the ledger's labels alone, without weight maps
    P = learner(rooms_64x80, tmp_path / "plain.sqlite")
    assert [f.key for f, _, _ in P.training_items()] == [k for k in keys if k in human_frames]
    assert all("weight" not in ex for _, _, ex in P.training_items())


def test_a_human_label_wins_over_a_propagated_one(rooms_64x80, tmp_path):
    L = learner(rooms_64x80, tmp_path / "h.sqlite", propagate=True)
    f, lab, _ = next(it for it in L.training_items() if it[0].key not in set(L.ledger.labelled_frames()))
    y, x = np.argwhere(lab != 255)[0]
    other = (int(lab[y, x]) + 1) % L.dataset.num_classes
    mask = np.zeros(HW, bool)
    mask[y, x] = True
    L.add_labels(f.key, mask, np.full(HW, other))
    item = next(it for it in L.training_items() if it[0].key == f.key)
    assert item[1][y, x] == other and item[2]["weight"][y, x] == 1.0
    assert L.propagated_labels(f.key)[y, x] == 255


def test_the_loss_weighs_each_pixel():
    from viewal.nn.train import segmentation_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g)
    labels = torch.randint(0, 5, (2, 6, 7), generator=g)
    labels[0, 0] = 255
    assert torch.allclose(segmentation_loss(logits, labels, torch.ones(2, 6, 7)), segmentation_loss(logits, labels))
    w = torch.ones(2, 6, 7)
    w[1] = 0.0  # weight 0: as if the second image had no labels
    only = labels.clone()
    only[1] = 255
    assert torch.allclose(segmentation_loss(logits, labels, w), segmentation_loss(logits, only))
    w[1] = 0.5
    ce = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    valid = (labels != 255).float()
    want = (ce * valid * w).sum() / (valid * w).sum()
    assert torch.allclose(segmentation_loss(logits, labels, w), want)
    assert float(segmentation_loss(logits, labels, torch.zeros(2, 6, 7))) == 0.0


def test_fit_and_cycle_metrics_keep_costs_human(rooms_64x80, tmp_path):
    L = learner(rooms_64x80, tmp_path / "m.sqlite", propagate=True, propagate_weight=0.5)
    human_px = L.ledger.labelled_pixels()
    m = L.close_cycle(progress=False)
    assert m["propagated_pixels"] > 0 and m["propagated_frames"] > 0
    assert m["propagation_multiplier"] == pytest.approx(m["propagated_pixels"] / human_px)
    assert m["propagation_accuracy"] > 0.9  # the pool's ground truth, where it exists
    assert m["propagated_regions"] > 0
    # the costs count what people labelled
    assert m["labelled_fraction"] == pytest.approx(human_px / L.pool_pixels)
    assert m["regions"] == len(L.ledger.labels()) and m["frames"] == len(L.ledger.labelled_frames())
    assert L.ledger.results()[-1]["propagated_pixels"] == m["propagated_pixels"]


# ------------------------------------------------------------------------------------------ selection

def region_share(learner, frame_key, mask):
    """Share of a region's pixels that carry propagated labels."""
    return float((learner.propagated_labels(frame_key)[mask] != 255).mean())


def test_propagated_coverage_removes_regions_from_selection(rooms_64x80, tmp_path):
    from viewal.scoring.propagation import pool_scenes

    L = learner(rooms_64x80, tmp_path / "s.sqlite", propagate=True)
    P = learner(rooms_64x80, tmp_path / "plain.sqlite")
    removed = 0
    for sid, frames in pool_scenes(L.pool):
        regions = np.stack([L.regions(f) for f in frames])
        human = np.stack([L.ledger.labelled_mask(f.key, HW) for f in frames])
        np.testing.assert_array_equal(human, P.known_masks(frames))  # a plain run: the human masks
        known = L.known_masks(frames)
        assert (known >= human).all()
        score = np.zeros(regions.shape, np.float32)
        fids = [f.frame_id for f in frames]
        before = build_pool(sid, fids, regions, score, labelled=human)
        after = build_pool(sid, fids, regions, score, labelled=known)
        assert not (after.available & ~before.available).any()
        removed += int((before.available & ~after.available).sum())
        for i, f in enumerate(frames):  # a region goes exactly when half of its pixels or more are propagated
            prop = L.propagated_labels(f.key) != 255
            for r in np.unique(regions[i]):
                g = before.offsets[i] + r
                if before.available[g]:
                    assert after.available[g] == (prop[regions[i] == r].mean() < 0.5)
    assert removed > 0
    assert L.propagation_metrics()["propagated_regions"] == removed
    queries = L.query(3000, progress=False)
    for q in queries:
        assert region_share(L, q.frame_key, q.mask) < 0.5
        assert not (L.ledger.labelled_mask(q.frame_key, HW) & q.mask).any()


# ------------------------------------------------------------------------------------------ the cache

def test_the_cache_is_keyed_and_rewritten(rooms_64x80, tmp_path):
    L = learner(rooms_64x80, tmp_path / "c.sqlite", propagate=True)
    first = L.propagation()
    files = sorted(L.propagation_store.directory.glob("*.npz"))
    assert len(files) == len(first) and not list(L.propagation_store.directory.glob(".*"))
    files[0].write_bytes(b"not an npz")  # e.g. a file damaged on disk: propagated again, the same
    again = L.propagation()
    for sid in first:
        for f in ("labels", "propagated", "votes", "agreement"):
            np.testing.assert_array_equal(getattr(first[sid].result, f), getattr(again[sid].result, f))
    # another rule is another key: not read from these files, and the run's own result is rewritten after it
    from dataclasses import replace

    from viewal.scoring.propagation import ledger_propagation

    strict = ledger_propagation(L.pool, L.ledger, replace(L.config, propagate_rule=PropagationRule(1.0, 2, 2)), HW,
                                store=L.propagation_store)
    assert sum(sp.n_propagated for sp in strict.values()) < sum(sp.n_propagated for sp in first.values())
    assert {sid: sp.n_propagated for sid, sp in L.propagation().items()} == \
        {sid: sp.n_propagated for sid, sp in first.items()}


def snapshot(ledger_path):
    con = sqlite3.connect(str(ledger_path))
    try:
        return {"queries": con.execute("SELECT cycle, rank, scene_id, frame_id, region_id, n_pixels, mask FROM queries "
                                       "ORDER BY cycle, rank").fetchall(),
                "labels": con.execute("SELECT cycle, scene_id, frame_id, region_id, source, mask, labels FROM labels "
                                      "ORDER BY id").fetchall(),
                "results": [{"cycle": c, **json.loads(m)}
                            for c, m in con.execute("SELECT cycle, metrics FROM results ORDER BY cycle")]}
    finally:
        con.close()


def experiment(data, out, kill_at=None):
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp", "OMP_NUM_THREADS": "1"}
    env.pop("VIEWAL_TEST_KILL_AT", None)
    if kill_at:
        env["VIEWAL_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "viewal.cli", "experiment", "--data", str(data), "--out", str(out),
                           "--methods", "random", "--cycles", "2", "--budget", "4", "--seeds", "1", "--no-full-data",
                           "--propagate", "--propagate-weight", "0.5", *RECIPE], env=env, capture_output=True,
                          text=True, timeout=900)


def test_resume_after_a_kill_trains_on_the_same_labels(rooms_64x80, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    p = experiment(rooms_64x80, clean)
    assert p.returncode == 0, p.stderr[-3000:]
    p = experiment(rooms_64x80, killed, kill_at="score:1")
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    p = experiment(rooms_64x80, killed)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = (snapshot(d / "ledgers" / "random-s0.sqlite") for d in (clean, killed))
    assert a["queries"] and a["queries"] == b["queries"] and a["labels"] == b["labels"]
    assert len(a["results"]) == 3 and all(r["propagated_pixels"] > 0 for r in a["results"])
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["results"]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in b["results"]]


# ------------------------------------------------------------------------------------------ the loop

def scans_of(rooms_64x80, dest):
    """A copy of ``rooms_64x80`` whose pool scenes have no labels."""
    shutil.copytree(rooms_64x80, dest)
    for sid in open_dataset(dest).split_scenes("train"):
        shutil.rmtree(dest / sid / "label")
    return dest


def test_the_loop_propagates_imported_labels_like_the_oracles(rooms_64x80, tmp_path):
    exp = tmp_path / "exp"
    assert main(["experiment", "--data", str(rooms_64x80), "--methods", "view_entropy", "--cycles", "1",
                 "--budget", "4", "--seeds", "1", "--out", str(exp), "--no-full-data", "--propagate", *RECIPE]) == 0
    scans = scans_of(rooms_64x80, tmp_path / "scans")
    run = tmp_path / "run"
    assert main(["loop", "start", "--data", str(scans), "--run", str(run), "--method", "view_entropy", "--budget", "4",
                 "--propagate", *RECIPE]) == 0
    for cycle in (0, 1):
        folder = run / "queries" / f"cycle-{cycle}"
        assert main(["query", "answer", str(folder), "--run", str(run), "--truth", str(rooms_64x80)]) == 0
        assert main(["query", "import", str(folder), "--run", str(run)]) == 0
        assert main(["loop", "next", "--run", str(run)]) == 0
    sim = snapshot(exp / "ledgers" / "view_entropy-s0.sqlite")
    hum = snapshot(run / "ledgers" / "view_entropy-s0.sqlite")
    assert sim["queries"] and sim["queries"] == [q for q in hum["queries"] if q[0] == 1]  # cycle 0: the seed set
    assert [x[:3] + x[5:] for x in sim["labels"]] == [x[:3] + x[5:] for x in hum["labels"]]
    keys = ("cycle", "miou", "labelled_fraction", "regions", "frames", "propagated_pixels", "propagated_frames",
            "propagation_multiplier", "propagated_regions")
    assert [{k: r[k] for k in keys} for r in sim["results"]] == [{k: r[k] for k in keys} for r in hum["results"]]
    assert all(r["propagated_pixels"] > 0 for r in hum["results"])
    # the pool of the scans has no ground truth: no accuracy there; the simulated run's pool has it
    assert all("propagation_accuracy" not in r for r in hum["results"])
    assert all(r["propagation_accuracy"] > 0.9 for r in sim["results"])
    # the report and the pictures show propagated pixels apart from human ones
    from viewal.runs.cycle_report import write_cycle_report

    page = write_cycle_report(run, "view_entropy", 0, progress=False).read_text()
    assert "3D propagation:" in page and "human and propagated labels after cycle 1" in page
    assert main(["visualize", "--run", str(run), "--method", "view_entropy", "--cycle", "1"]) == 0
    assert (run / "propagated_view_entropy_c1.png").is_file()
