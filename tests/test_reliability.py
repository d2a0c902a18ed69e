"""Reliability: every bad input refused early with an error naming it; resume safety that does
not need a subprocess (the kill-9 tests are in test_resume_kill.py). Each test is listed in
docs/reliability.md (checked by test_reliability_table_names_existing_tests)."""
import json
import re
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

import viewal
from viewal.cli import error_text, main
from viewal.datasets import DatasetError, open_dataset
from viewal.runs.ledger import LabelItem, Ledger, LedgerError

FAST = dict(epochs=1, min_iterations=0, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4, infer_batch_size=4,
            decoder_channels=16, init=None, steps=2)


@pytest.fixture(scope="module")
def rooms_48x64(tmp_path_factory):
    """4 synthetic rooms x 5 frames of 48x64 pixels (seed 3)."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("rel") / "data"
    generate_dataset(root, scenes=4, frames=5, height=48, width=64, seed=3, progress=False)
    return root


@pytest.fixture()
def rooms_48x64_copy(rooms_48x64, tmp_path):
    """A copy of ``rooms_48x64`` a test may change."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(rooms_48x64, dst, ignore=shutil.ignore_patterns(".viewal_cache"))
    return dst


def exp_args(data, out, *extra):
    return ["experiment", "--data", str(data), "--out", str(out), "--methods", "random", "--cycles", "0",
            "--seeds", "1", "--iterations", "1", "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1",
            "--batch-size", "4", "--decoder-channels", "16", "--init", "random", "--no-full-data", *extra]


# ------------------------------------------------------------------------------------------ resume

def test_resume_with_changed_setting_names_it(rooms_48x64, tmp_path):
    ds = open_dataset(rooms_48x64)
    a = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "r.sqlite", **FAST)
    a.ledger.close()
    with pytest.raises(LedgerError, match=r"al\.mc_passes: 2 \(stored\) -> 3 \(now\)"):
        viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "r.sqlite", **{**FAST, "mc_passes": 3})


def test_resume_from_another_spelling_of_the_data_folder(rooms_48x64, rooms_48x64_copy, tmp_path, monkeypatch):
    """A run started with a relative --data resumes with the absolute path or a symlink to the same folder (the
    stored spelling is kept); another folder is still refused, naming the dataset."""
    monkeypatch.chdir(rooms_48x64.parent)
    a = viewal.ActiveLearner(open_dataset(rooms_48x64.name), scorer="random", ledger=tmp_path / "r.sqlite", **FAST)
    a.ledger.close()
    link = tmp_path / "link"
    link.symlink_to(rooms_48x64, target_is_directory=True)
    for spelling in (rooms_48x64.resolve(), link):
        b = viewal.ActiveLearner(open_dataset(spelling), scorer="random", ledger=tmp_path / "r.sqlite", **FAST)
        assert b.ledger.config()["dataset"] == rooms_48x64.name
        b.ledger.close()
    with pytest.raises(LedgerError, match=r"dataset: .*\(stored\) -> .*" + re.escape(str(rooms_48x64_copy))):
        viewal.ActiveLearner(open_dataset(rooms_48x64_copy), scorer="random", ledger=tmp_path / "r.sqlite", **FAST)


def test_corrupt_or_truncated_ledger_is_named(rooms_48x64, tmp_path):
    bad = tmp_path / "garbage.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=re.escape(str(bad)) + ".*corrupt or truncated"):
        Ledger(bad)
    good = tmp_path / "trunc.sqlite"
    led = Ledger(good)
    led.record_labels(0, [LabelItem("s", str(i), np.ones((40, 40), bool), np.full((40, 40), i % 3), "seed")
                          for i in range(60)])
    led.close()
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    for p in good.parent.glob("trunc.sqlite-*"):
        p.unlink()
    with pytest.raises(LedgerError, match=re.escape(str(good))):
        Ledger(good)


def test_corrupt_ledger_cli_message(rooms_48x64, tmp_path, capsys):
    out = tmp_path / "exp"
    (out / "ledgers").mkdir(parents=True)
    (out / "ledgers" / "random-s0.sqlite").write_bytes(b"x" * 4096)
    assert main(exp_args(rooms_48x64, out)) == 1
    err = capsys.readouterr().err
    assert "random-s0.sqlite" in err and "corrupt or truncated" in err and "Traceback" not in err
    assert not (out / "models").exists()  # refused before any training


def test_stale_checkpoint_is_never_reused(rooms_48x64, tmp_path):
    ds = open_dataset(rooms_48x64)
    a = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "a.sqlite", **FAST)
    a.fit(progress=False)
    ck = a.save_model(tmp_path / "c0.pt")
    assert a.checkpoint_is_current(ck)
    # the same labels and recipe in another ledger: interchangeable (the experiment shares seed-set models)
    same = viewal.ActiveLearner(ds, scorer="entropy", ledger=tmp_path / "same.sqlite", **FAST)
    assert same.checkpoint_is_current(ck)
    # other labels (another seed set), another recipe, more labels, an empty file: never reused
    other = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "b.sqlite", **{**FAST, "seed": 7})
    assert other.ledger.labelled_pixels() == a.ledger.labelled_pixels()  # same count, other frames
    assert not other.checkpoint_is_current(ck)
    recipe = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "c.sqlite", **{**FAST, "steps": 3})
    assert not recipe.checkpoint_is_current(ck)
    f = next(fr for fr in ds.split("train") if not a.ledger.labelled_mask(fr.key, (48, 64)).any())
    mask = np.zeros((48, 64), bool)
    mask[:4, :4] = True
    a.add_labels(f.key, mask, np.zeros((48, 64), int))
    assert not a.checkpoint_is_current(ck)
    (tmp_path / "empty.pt").write_bytes(b"")
    assert not same.checkpoint_is_current(tmp_path / "empty.pt")


def test_new_ledger_in_old_out_retrains(rooms_48x64, tmp_path):
    """A fresh ledger in an existing --out whose checkpoint came from other labels retrains (and its
    result is not the old one); the recorded fingerprint is that of the new labels."""
    from viewal.nn.train import checkpoint_meta

    out = tmp_path / "exp"
    assert main(exp_args(rooms_48x64, out)) == 0
    ck = out / "models" / "seedset-s0.pt"
    old = checkpoint_meta(ck)["fingerprint"]
    (out / "ledgers" / "random-s0.sqlite").unlink()
    assert main(exp_args(rooms_48x64, out, "--seed-fraction", "0.3")) == 0  # another seed set, same file names
    led = Ledger(out / "ledgers" / "random-s0.sqlite")
    learner = viewal.ActiveLearner(open_dataset(rooms_48x64), ledger=led, config=_cfg_of(led))
    assert checkpoint_meta(ck)["fingerprint"] != old and learner.checkpoint_is_current(ck)
    led.close()


def _cfg_of(led):
    from viewal.core.config import ALConfig

    return ALConfig.from_json(led.config()["al"])


def test_changed_budget_or_frame_step_refused_overwrite_starts_over(rooms_48x64, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(exp_args(rooms_48x64, out, "--budget", "4")) == 0
    capsys.readouterr()
    assert main(exp_args(rooms_48x64, out, "--budget", "8")) == 1
    assert "--budget 4, not 8" in capsys.readouterr().err
    assert main(exp_args(rooms_48x64, out, "--budget", "4", "--frame-step", "2")) == 1
    assert "--frame-step 1, not 2" in capsys.readouterr().err
    assert main(exp_args(rooms_48x64, out, "--budget", "4", "--mc-passes", "3")) == 1
    err = capsys.readouterr().err
    assert "al.mc_passes: 2 (stored) -> 3 (now)" in err and "--overwrite" in err
    assert main(exp_args(rooms_48x64, out, "--budget", "8", "--overwrite")) == 0
    with Ledger(out / "ledgers" / "random-s0.sqlite") as led:
        assert led.meta("experiment")["budget"] == [8.0]


def test_mc_dropout_and_random_scores_keyed_by_seed_cycle_scene(rooms_48x64, tmp_path):
    """Scores do not depend on what torch's global RNG went through (fitting vs loading a model)."""
    import torch

    ds = open_dataset(rooms_48x64)
    for scorer in ("mc_entropy", "random"):
        learner = viewal.ActiveLearner(ds, scorer=scorer, ledger=tmp_path / f"{scorer}.sqlite", **FAST)
        learner.fit(progress=False)
        a = learner.score_pool(progress=False)
        torch.manual_seed(1234)
        torch.rand(1000)
        np.random.seed(5)
        b = learner.score_pool(progress=False)
        np.testing.assert_array_equal(a.score, b.score)
        assert np.isfinite(a.score[a.available]).all() and np.ptp(a.score[a.available]) > 0
        learner.ledger.close()


def test_stream_seed_is_keyed():
    from viewal.core.seeding import stream_seed

    assert stream_seed(0, "mc", 1, "scene0") == stream_seed(0, "mc", 1, "scene0")
    seeds = {stream_seed(s, "mc", c, sc) for s in (0, 1) for c in (0, 1) for sc in ("a", "b")}
    assert len(seeds) == 8 and all(0 <= s < 2 ** 63 for s in seeds)
    with pytest.raises(ValueError):
        stream_seed(-1)


def test_kill_spec_is_checked():
    from viewal.core.faults import parse_kill_spec

    assert parse_kill_spec("label:2") == ("label", 2) and parse_kill_spec("save") == ("save", None)
    with pytest.raises(ValueError, match="unknown phase"):
        parse_kill_spec("lunch:1")


# ------------------------------------------------------------------------------------------ labels

def test_add_labels_only_for_pool_frames(rooms_48x64, tmp_path):
    ds = open_dataset(rooms_48x64)
    learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "l.sqlite", **FAST)
    before = learner.ledger.counts()["labels"]
    for split in ("val", "test"):
        key = ds.splits[split][0]
        with pytest.raises(ValueError, match=f"{re.escape(key)} is a {split} frame"):
            learner.add_labels(key, np.ones((48, 64), bool), np.zeros((48, 64), int))
    assert learner.ledger.counts()["labels"] == before


def test_float_labels_refused(rooms_48x64, tmp_path):
    ds = open_dataset(rooms_48x64)
    learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "f.sqlite", **FAST)
    f = next(fr for fr in ds.split("train") if not learner.ledger.labelled_mask(fr.key, (48, 64)).any())
    mask = np.zeros((48, 64), bool)
    mask[:2, :3] = True
    with pytest.raises(ValueError, match=r"integer class ids, got \[1\.5"):
        learner.add_labels(f.key, mask, np.full((48, 64), 1.5))
    learner.add_labels(f.key, mask, np.full((48, 64), 2.0))  # whole numbers as floats are fine
    assert (learner.ledger.label_map(f.key, (48, 64))[mask] == 2).all()


def _hitl_export(tmp_path):
    from viewal.selection import RegionQuery

    root = tmp_path / "data"
    from viewal.datasets.canonical import write_frame, write_meta, write_scene_intrinsics

    rng = np.random.default_rng(0)
    write_scene_intrinsics(root, "scene0", np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]]))
    for i in range(2):
        write_frame(root, "scene0", f"{i:03d}", rgb=rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                    depth=np.full((24, 32), 2.0, np.float32), world_T_cam=np.eye(4),
                    labels=rng.integers(0, 3, (24, 32)), color_ext=".png")
    write_meta(root, class_names=["wall", "floor", "chair"], splits={"train": ["scene0"], "val": [], "test": []},
               height=24, width=32)
    db = tmp_path / "run.sqlite"
    m = np.zeros((12, 16), bool)  # the run worked at --size 12x16
    m[2:6, 3:9] = True
    with Ledger(db) as led:
        led.set_config({"al": {"size": [12, 16]}, "num_classes": 3})
        recorded = led.record_queries(1, [RegionQuery("scene0", "000", m, 0.9, region_id=3)])
    return root, db, recorded


def test_hitl_export_with_size_run(tmp_path, capsys):
    root, db, recorded = _hitl_export(tmp_path)
    out = tmp_path / "q"
    assert main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(root)]) == 0
    doc = json.loads((out / "queries.json").read_text())
    assert (doc["queries"][0]["height"], doc["queries"][0]["width"]) == (12, 16)
    prev = cv2.imread(str(out / doc["queries"][0]["preview"]))
    assert prev is not None and prev.shape[0] <= 12 and prev.shape[1] <= 16
    # and the labelled mask at the run's size imports back
    lab = np.full((12, 16), 255, np.uint8)
    lab[recorded[0].mask] = 2
    cv2.imwrite(str(out / doc["queries"][0]["label"]), lab)
    assert main(["query", "import", "--ledger", str(db), "--dir", str(out), "--data", str(root)]) == 0
    with Ledger(db) as led:
        assert led.labelled_pixels() == 24


def test_hitl_import_refuses_paths_outside_the_export(tmp_path, capsys):
    root, db, recorded = _hitl_export(tmp_path)
    out = tmp_path / "q"
    assert main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(root)]) == 0
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((12, 16), 1, np.uint8))
    doc = json.loads((out / "queries.json").read_text())
    for bad in ("../secret.png", str(secret)):
        doc["queries"][0]["label"] = bad
        (out / "queries.json").write_text(json.dumps(doc))
        assert main(["query", "import", "--ledger", str(db), "--dir", str(out)]) == 1
        assert "leads outside the export folder" in capsys.readouterr().err
    with Ledger(db) as led:
        assert led.labelled_pixels() == 0


def test_hitl_import_names_unknown_query_id(tmp_path, capsys):
    root, db, recorded = _hitl_export(tmp_path)
    out = tmp_path / "q"
    assert main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(root)]) == 0
    doc = json.loads((out / "queries.json").read_text())
    lab = np.full((12, 16), 255, np.uint8)
    lab[recorded[0].mask] = 1
    cv2.imwrite(str(out / doc["queries"][0]["label"]), lab)
    doc["queries"][0]["query_id"] = 999
    (out / "queries.json").write_text(json.dumps(doc))
    assert main(["query", "import", "--ledger", str(db), "--dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "query_id 999 is not in the ledger" in err and "already labelled" not in err


# ------------------------------------------------------------------------------------------ arguments

BAD_ARGS = [
    (["--budget", "0"], "--budget: each value must be positive and at most 100"),
    (["--budget", "150"], "--budget: each value must be positive and at most 100"),
    (["--budget", "-5"], "--budget: each value must be positive and at most 100"),
    (["--budget", "nan"], "--budget must be finite"),
    (["--budget", "abc"], "--budget must be a number"),
    (["--budget", "40", "--cycles", "3"], "asks for 140 % of the pool"),
    (["--cycles", "-1"], "--cycles must be >= 0"),
    (["--methods", ","], "--methods names no method"),
    (["--methods", "random,random"], "--methods lists a method twice"),
    (["--mc-passes", "0"], "--mc-passes must be >= 1"),
    (["--seeds", "-1"], "--seeds N needs N >= 1"),
    (["--seeds", "abc"], "--seeds must be a number"),
    (["--seeds", "0,-2"], "non-negative"),
    (["--frame-step", "0"], "--frame-step must be >= 1"),
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--scorer-options", "{bad"], "--scorer-options is not valid JSON"),
    (["--scorer-options", "[1]"], "--scorer-options must be a JSON object"),
    (["--scorer-options", '{"nope": 1}'], "unknown option(s) 'nope'"),
    (["--scorer-options", '{"mode": "viewal"}'], "'mode' set the run's depth test, not a scorer option; use viewal "
                                                  "experiment's flags (mode -> --depth-test)"),
    (["--depth-tol", "0.05"], "depth_test.depth_tol (--depth-tol): expected two finite numbers"),
    (["--depth-tol", "a,b"], "--depth-tol must be two numbers ABS,REL"),
    (["--depth-distance", "0"], "depth_test.world_distance (--depth-distance): must be a positive number"),
    (["--depth-test", "viewal", "--overlap-mode", "z"], "--overlap-mode z and --depth-test viewal disagree"),
    (["--seed-fraction", "0"], "--seed-fraction must lie in"),
    (["--wrong-label-rate", "2"], "--wrong-label-rate must lie in"),
]


@pytest.mark.parametrize("extra,message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_experiment_arguments_refused_before_anything_runs(tmp_path, capsys, extra, message):
    out = tmp_path / "exp"
    # the data folder does not even exist: arguments are checked before any data is read
    assert main(exp_args(tmp_path / "no-data", out, *extra)) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_budget_under_one_pixel_refused_before_training(rooms_48x64, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(exp_args(rooms_48x64, out, "--budget", "0.001", "--cycles", "1")) == 1
    assert "less than one pixel (cycle 1)" in capsys.readouterr().err
    assert not (out / "models").exists()


def test_query_and_config_refuse_bad_numbers_before_training(rooms_48x64, tmp_path):
    ds = open_dataset(rooms_48x64)
    from viewal.core.config import ALConfig

    learner = viewal.ActiveLearner(ds, scorer="random", ledger=tmp_path / "q.sqlite", **FAST)
    for bad in (-100, 0, 2.5):
        with pytest.raises(ValueError, match="budget_pixels must be a positive integer"):
            learner.query(budget_pixels=bad, progress=False)
    assert learner.model is None  # nothing trained
    with pytest.raises(ValueError, match="mc_passes must be an integer >= 1"):
        ALConfig(mc_passes=0)
    with pytest.raises(ValueError, match=r"depth_test.backend \(--kernel-backend\): unknown backend 'gpu'; "
                                         r"valid: numpy, cpu, cuda"):
        ALConfig(depth_test={"backend": "gpu"})


def test_cli_reports_os_attribute_sqlite_unpickling_errors_in_one_line():
    import pickle

    from viewal.cli import USER_ERRORS

    for exc in (OSError("disk full: /x"), AttributeError("'list' object has no attribute 'items'"),
                sqlite3.DatabaseError("database disk image is malformed"), pickle.UnpicklingError("bad pickle")):
        assert isinstance(exc, USER_ERRORS)
        assert "\n" not in error_text(exc) and str(exc) in error_text(exc)
    assert error_text(KeyError("frame 'a/b' not found")) == "frame 'a/b' not found"


class _Evil:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_malicious_init_file_refused_without_weights_only_advice(tmp_path):
    import torch

    from viewal.nn.model import build_model

    path = tmp_path / "evil.pt"
    torch.save({"encoder": "efficientnet-lite0", "payload": _Evil()}, path)
    with pytest.raises(ValueError) as e:
        build_model(3, encoder="efficientnet-lite0", encoder_weights=str(path), decoder_channels=16)
    msg = str(e.value)
    assert str(path) in msg and "weights_only" not in msg and "\n" not in msg
    # and the checkpoint loader says the same
    from viewal.nn.train import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError) as e2:
        load_checkpoint(path)
    assert "weights_only" not in str(e2.value) and str(path) in str(e2.value)


# ------------------------------------------------------------------------------------------ data

def test_truncated_jpeg_refused_and_frame_check_cached(rooms_48x64_copy, tmp_path):
    from viewal.datasets.check import check_frames

    ds = open_dataset(rooms_48x64_copy)
    frames = list(ds.all_frames())
    cache = tmp_path / "check.json"
    assert check_frames(frames, cache=cache, progress=False) == len(frames)
    assert check_frames(frames, cache=cache, progress=False) == 0  # unchanged files: cached
    victim = next((rooms_48x64_copy / "scene0000" / "color").glob("*.jpg"))
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * 0.6)])
    frames = list(open_dataset(rooms_48x64_copy).all_frames())
    with pytest.raises(DatasetError, match=r"(?s)1 of \d+ frames.*truncated JPEG.*" + re.escape(victim.name)):
        check_frames(frames, cache=cache, progress=False)
    victim.write_bytes(b"\x00" * 300)  # not an image at all
    with pytest.raises(DatasetError, match=re.escape(victim.name)):
        check_frames(list(open_dataset(rooms_48x64_copy).all_frames()), cache=cache, progress=False)


def test_experiment_checks_frames_before_training(rooms_48x64_copy, tmp_path, capsys):
    victim = next((rooms_48x64_copy / "scene0003" / "color").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:500])
    out = tmp_path / "exp"
    assert main(exp_args(rooms_48x64_copy, out)) == 1
    err = capsys.readouterr().err
    assert "truncated JPEG" in err and victim.name in err
    assert not (out / "models").exists() and not (out / "ledgers").exists()


def test_explicit_format_must_match_the_folder(rooms_48x64):
    with pytest.raises(DatasetError, match=r"format='scannet' was asked for, but the folder is in the 'viewal' layout"):
        open_dataset(rooms_48x64, format="scannet")
    assert open_dataset(rooms_48x64, format="viewal").format == "viewal"


@pytest.mark.parametrize("edit,message", [
    ({"splits": ["scene0000"]}, "key 'splits' must be an object"),
    ({"class_names": "wall"}, "key 'class_names' must be a non-empty list"),
    ({"height": None}, "missing key 'height'"),
    ({"width": 0}, "key 'width' must be an integer >= 1"),
    ({"depth_scale": 0}, "key 'depth_scale'"),
], ids=["splits-list", "class-names-string", "missing-height", "zero-width", "depth-scale-0"])
def test_viewal_json_schema_names_the_key(rooms_48x64_copy, edit, message):
    path = rooms_48x64_copy / "viewal.json"
    meta = json.loads(path.read_text())
    for k, v in edit.items():
        if v is None:
            del meta[k]
        else:
            meta[k] = v
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        open_dataset(rooms_48x64_copy)


def test_first_frame_depth_of_wrong_size_is_blamed_on_itself(rooms_48x64_copy):
    first = sorted((rooms_48x64_copy / "scene0000" / "depth").glob("*.png"))[0]
    cv2.imwrite(str(first), np.full((10, 12), 1000, np.uint16))
    ds = open_dataset(rooms_48x64_copy)
    frames = ds.frames("scene0000")
    assert frames[1].depth.shape == (48, 64)  # the others load
    with pytest.raises(DatasetError, match=re.escape(first.name)):
        frames[0].depth


def test_cuda_backend_without_gpu_says_so(rooms_48x64, tmp_path):
    from viewal.kernels import check_backend, cuda_available

    if cuda_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ValueError, match=r"no CUDA GPU found.*backends: numpy, cpu, cuda"):
        check_backend("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU found"):
        viewal.ActiveLearner(open_dataset(rooms_48x64), scorer="random", ledger=tmp_path / "g.sqlite",
                             **{**FAST, "depth_test": {"backend": "cuda"}})


# ------------------------------------------------------------------------------------------ docs

def test_reliability_table_names_existing_tests():
    """docs/reliability.md: every test it names exists (here or in test_resume_kill.py), and every test
    of this file and of the kill test is in the table."""
    doc = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", doc))
    here = set(re.findall(r"^def (test_[a-z0-9_]+)", Path(__file__).read_text(), re.M))
    kill = set(re.findall(r"^def (test_[a-z0-9_]+)", (Path(__file__).parent / "test_resume_kill.py").read_text(), re.M))
    loop = set(re.findall(r"^def (test_[a-z0-9_]+)", (Path(__file__).parent / "test_loop.py").read_text(), re.M))
    assert named <= here | kill | loop, sorted(named - here - kill - loop)
    assert loop <= named, sorted(loop - named)  # every test of the loop is in the table
    assert (here | kill) - {"test_reliability_table_names_existing_tests"} <= named, sorted((here | kill) - named)
