"""The labelling loop with people (viewal loop, viewal query import/answer): unlabelled data in, one cycle at a
time, and the human path ends where the simulated oracle's does."""
import json
import shutil

import pytest

import viewal
from viewal.cli import main
from viewal.datasets import open_dataset
from viewal.runs.ledger import Ledger

RECIPE = ["--iterations", "2", "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4"]


def scans_of(rooms_64x80, dest, splits=("train",)):
    """A copy of ``rooms_64x80`` whose ``splits`` scenes have no labels (a team's scans before anyone labels them)."""
    shutil.copytree(rooms_64x80, dest)
    ds = open_dataset(dest)
    for split in splits:
        for sid in ds.split_scenes(split):
            shutil.rmtree(dest / sid / "label")
    return dest


def test_python_api_on_unlabelled_scans(rooms_64x80, tmp_path):
    scans = scans_of(rooms_64x80, tmp_path / "scans", splits=("train", "val", "test"))
    ds = open_dataset(scans)
    assert not any(f.has_labels for s in ("train", "val", "test") for f in ds.split(s))
    learner = viewal.ActiveLearner(ds, scorer="view_entropy", ledger=tmp_path / "api.sqlite", epochs=1, steps=2,
                                   validations=1, mc_passes=2, seed_fraction=0.2, num_threads=1, batch_size=4)
    assert learner.config.seed_set == "ask"  # no labels anywhere: the seed set is asked from people
    seed = learner.query(2000, progress=False)
    n = round(0.2 * len(learner.pool))
    assert len(seed) == n and all(q.mask.all() and q.cycle == 0 for q in seed)
    assert learner.ledger.labelled_pixels() == 0
    with pytest.raises(ValueError, match="no labels"):
        learner.label(seed)  # the simulated oracle needs ground truth, and says which frame has none
    hidden = open_dataset(rooms_64x80)
    for q in seed:  # a person labels the seed frames
        learner.add_labels(q.frame_key, q.mask, hidden.frame(q.frame_key).labels, query=q)
    assert learner.ledger.pending_queries(0) == []
    with pytest.raises(RuntimeError, match="cycle 0 already has labelled queries"):
        learner.query(2000, progress=False)  # cycle 0 is answered: it closes before the next queries
    metrics = learner.close_cycle(progress=False)
    # no labelled test frame: no mIoU, what can be said without ground truth instead
    assert metrics["miou"] is None and metrics["eval_frames"] == 0
    assert sum(metrics["class_pixels"]) == learner.ledger.labelled_pixels() == n * 64 * 80
    assert metrics["classes_seen"] == sorted(metrics["classes_seen"]) and len(metrics["classes_seen"]) >= 3
    assert sum(metrics["predicted_class_shares"]) == pytest.approx(1.0)
    queries = learner.query(2000, progress=False)  # cycle 1: regions, scored by the model trained on people's labels
    assert queries and all(q.cycle == 1 and not q.mask.all() for q in queries)
    assert sum(int(q.mask.sum()) for q in queries) >= 2000 - max(int(q.mask.sum()) for q in queries)


def test_seed_set_from_the_users_own_labels(rooms_64x80, tmp_path):
    scans = scans_of(rooms_64x80, tmp_path / "scans")
    ds = open_dataset(scans)
    pool = ds.split("train")
    keep = pool[3]  # the user labelled one frame of the pool
    src = rooms_64x80 / keep.scene_id / "label" / f"{keep.frame_id}.png"
    (scans / keep.scene_id / "label").mkdir()
    shutil.copy(src, scans / keep.scene_id / "label" / src.name)
    learner = viewal.ActiveLearner(open_dataset(scans), scorer="random", ledger=tmp_path / "own.sqlite",
                                   epochs=1, steps=2, validations=1, mc_passes=2, num_threads=1, batch_size=4)
    assert learner.config.seed_set == "labels" and learner.ledger.labelled_frames() == [keep.key]
    assert learner.ledger.queries() == [] and learner.ledger.labels()[0]["origin"].startswith("dataset labels")
    assert learner.ledger.labelled_pixels() == int((open_dataset(rooms_64x80).frame(keep.key).labels != 255).sum())


def test_spread_rule_covers_every_scene_first(rooms_64x80):
    from viewal.runs.seedset import seed_frame_indices

    pool = open_dataset(rooms_64x80).split("train")
    scenes = {f.scene_id for f in pool}
    picks = seed_frame_indices(pool, len(scenes) / len(pool), seed=0, rule="spread")
    assert {pool[i].scene_id for i in picks} == scenes
    assert seed_frame_indices(pool, 0.5, seed=1, rule="spread") == seed_frame_indices(pool, 0.5, seed=1, rule="spread")


def test_experiment_refuses_data_without_ground_truth(rooms_64x80, tmp_path, capsys):
    scans = scans_of(rooms_64x80, tmp_path / "scans")
    args = ["experiment", "--data", str(scans), "--methods", "random", "--cycles", "1", "--out", str(tmp_path / "e"),
            "--no-full-data", *RECIPE]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "has no labels" in err and "train split" in err and "viewal loop" in err


def _ledger_state(path, cycles, shape):
    with Ledger(path) as led:
        queries = [(q.cycle, q.scene_id, q.frame_id, q.region_id, round(q.score, 12), q.mask.tobytes())
                   for q in led.queries() if 1 <= q.cycle <= cycles]
        maps = {(k, c): led.label_map(k, shape, max_cycle=c).tobytes()
                for k in led.labelled_frames() for c in range(cycles + 1)}
        results = [(r["cycle"], r["miou"], r["labelled_fraction"], r["frames"]) for r in led.results()
                   if r["cycle"] <= cycles]
        return queries, maps, results, led.labelled_pixels()


def test_human_path_equals_simulated_path(rooms_64x80, tmp_path, capsys):
    """Two cycles through viewal loop with a scripted labeller answering each export (PNG, COCO, Label Studio)
    from a hidden copy of the ground truth end with the ledger of viewal experiment's simulated run."""
    exp = tmp_path / "exp"
    assert main(["experiment", "--data", str(rooms_64x80), "--methods", "view_entropy", "--cycles", "2",
                 "--budget", "4", "--seeds", "1", "--out", str(exp), "--no-full-data", *RECIPE]) == 0
    scans = scans_of(rooms_64x80, tmp_path / "scans")  # val and test keep the team's own labels: an mIoU per cycle
    run = tmp_path / "run"
    assert main(["loop", "start", "--data", str(scans), "--run", str(run), "--method", "view_entropy",
                 "--budget", "4", *RECIPE]) == 0
    out = capsys.readouterr().out
    assert "seed set is 2 whole frames" in out
    # cycle 0 (the seed set) as PNG, cycle 1 as COCO for two annotators, cycle 2 in Label Studio
    answers = [[run / "queries" / "cycle-0"]]
    for cycle, fmt, k in ((1, "coco", 2), (2, "label-studio", 1)):
        for folder in answers[-1]:
            assert main(["query", "answer", str(folder), "--run", str(run), "--truth", str(rooms_64x80)]) == 0
            src = folder / "label_studio" / "answers.json" if (folder / "label_studio").is_dir() else folder
            assert main(["query", "import", str(src), "--run", str(run)]) == 0
        # the cycle is answered: nothing pending; next fits, selects and exports
        assert main(["loop", "next", "--run", str(run), "--format", fmt, "--annotators", str(k)]) == 0
        base = run / "queries" / f"cycle-{cycle}"
        answers.append([base / f"annotator-{a}" for a in range(1, k + 1)] if k > 1 else [base])
        assert all((f / "queries.json").is_file() for f in answers[-1])
    for folder in answers[-1]:
        assert main(["query", "answer", str(folder), "--run", str(run), "--truth", str(rooms_64x80)]) == 0
        assert main(["query", "import", str(folder / "label_studio" / "answers.json"), "--run", str(run)]) == 0
    assert main(["loop", "next", "--run", str(run)]) == 0  # closes cycle 2 (and asks cycle 3)
    shape = (64, 80)
    sim = _ledger_state(exp / "ledgers" / "view_entropy-s0.sqlite", 2, shape)
    hum = _ledger_state(run / "ledgers" / "view_entropy-s0.sqlite", 2, shape)
    assert len(sim[0]) > 0 and sim[0] == hum[0]          # the same regions asked, in the same order, same scores
    assert sim[1] == hum[1]                               # the same label maps, cycle by cycle
    assert sim[2] == hum[2] and all(r[1] is not None for r in hum[2])  # the same models: the same mIoU
    assert sim[3] == hum[3]
    # status shows each cycle's progress
    capsys.readouterr()
    assert main(["loop", "status", "--run", str(run)]) == 0
    status = capsys.readouterr().out
    assert "cycle 3 open" in status


def test_next_refuses_pending_and_force_closes(rooms_64x80, tmp_path, capsys):
    scans = scans_of(rooms_64x80, tmp_path / "scans")
    run = tmp_path / "run"
    assert main(["loop", "start", "--data", str(scans), "--run", str(run), "--budget", "4", "--method", "random",
                 *RECIPE]) == 0
    export = run / "queries" / "cycle-0"
    doc = json.loads((export / "queries.json").read_text())
    assert [e["cycle"] for e in doc["queries"]] == [0, 0]
    assert main(["loop", "next", "--run", str(run)]) == 1
    assert "2 of 2 queries still unanswered" in capsys.readouterr().err
    # one of the two seed frames answered; --force closes the cycle with it
    assert main(["query", "answer", str(export), "--run", str(run), "--truth", str(rooms_64x80)]) == 0
    (export / doc["queries"][1]["label"]).unlink()
    assert main(["query", "import", str(export), "--run", str(run), "--skip-missing"]) == 0
    assert main(["loop", "next", "--run", str(run)]) == 1
    assert "1 of 2 queries still unanswered" in capsys.readouterr().err
    assert main(["loop", "next", "--run", str(run), "--force"]) == 0
    with Ledger(run / "ledgers" / "random-s0.sqlite") as led:
        assert led.cycle() == 1 and led.pending_queries(1) and len(led.labelled_frames()) == 1
    # starting again with other settings is refused, naming them
    assert main(["loop", "start", "--data", str(scans), "--run", str(run), "--budget", "4", "--method", "entropy",
                 *RECIPE]) == 1
    assert "method: 'random' -> 'entropy'" in capsys.readouterr().err


@pytest.mark.parametrize("point", ["save", "score", "queried"])
def test_killed_next_resumes_to_the_same_selection(rooms_64x80, tmp_path, point):
    """A `viewal loop next` killed (SIGKILL) at each point of the cycle, then run again, records the queries an
    uninterrupted one records."""
    import os
    import signal
    import subprocess
    import sys

    scans = scans_of(rooms_64x80, tmp_path / "scans")
    runs = {}
    for name in ("clean", "killed"):
        run = tmp_path / name
        assert main(["loop", "start", "--data", str(scans), "--run", str(run), "--budget", "4", "--method",
                     "view_entropy", *RECIPE]) == 0
        assert main(["query", "answer", str(run / "queries" / "cycle-0"), "--run", str(run),
                     "--truth", str(rooms_64x80)]) == 0
        assert main(["query", "import", str(run / "queries" / "cycle-0"), "--run", str(run)]) == 0
        runs[name] = run
    assert main(["loop", "next", "--run", str(runs["clean"])]) == 0
    env = {**os.environ, "VIEWAL_TEST_KILL_AT": point}
    cmd = [sys.executable, "-m", "viewal.cli", "loop", "next", "--run", str(runs["killed"])]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert main(["loop", "next", "--run", str(runs["killed"])]) == 0  # resumes; exports what a kill left unexported
    assert (runs["killed"] / "queries" / "cycle-1" / "queries.json").is_file()
    got = [_ledger_state(runs[n] / "ledgers" / "view_entropy-s0.sqlite", 1, (64, 80)) for n in ("clean", "killed")]
    assert got[0][0] and got[0] == got[1]


def test_a_seed_set_the_data_cannot_give_stores_nothing(rooms_64x80, tmp_path, capsys):
    scans = scans_of(rooms_64x80, tmp_path / "scans")
    run = tmp_path / "run"
    args = ["loop", "start", "--data", str(scans), "--run", str(run), "--budget", "4", *RECIPE]
    assert main(["loop", "start", "--data", str(tmp_path / "nope"), "--run", str(run), *RECIPE]) == 1
    assert f"--data {tmp_path / 'nope'}: no such dataset folder" in capsys.readouterr().err and not run.exists()
    assert main(["query", "import", "answers.json", "--run", str(tmp_path / "nope")]) == 1
    assert "not a loop run" in capsys.readouterr().err
    assert main([*args, "--seed-set", "labels"]) == 1
    assert "no train-split frame has a labelled pixel" in capsys.readouterr().err
    assert main(args) == 0  # the same run asked from people: nothing of the refused start is in the way
    with Ledger(run / "ledgers" / "view_entropy-s0.sqlite") as led:
        assert len(led.pending_queries(0)) == 2
    with pytest.raises(ValueError, match="seed_set='oracle'.*has no labels"):
        viewal.ActiveLearner(open_dataset(scans), scorer="random", ledger=tmp_path / "o.sqlite", seed_set="oracle")
    with Ledger(tmp_path / "o.sqlite") as led:
        assert led.config() == {} and not led.labels()
