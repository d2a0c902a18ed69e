"""The ledger's promise, tested on the real ``viewal experiment``: a run killed with SIGKILL at any phase
of a cycle resumes to exactly the ledger, selections and results of an uninterrupted run.

Kills are placed deterministically with ``VIEWAL_TEST_KILL_AT=phase:cycle`` (``viewal.core.faults``). The
phases that exercised bugs (training in cycle >= 1: the stuck run; scoring: MC-dropout masks drawn
from torch's global RNG) run in CI; the others are marked slow.
"""
import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from viewal.core.faults import ENV_VAR, PHASES, parse_kill_spec

ARGS = ["--methods", "view_entropy", "--cycles", "2", "--budget", "4", "--seeds", "1", "--iterations", "2",
        "--mc-passes", "2", "--seed-fraction", "0.2", "--threads", "1", "--batch-size", "4",
        "--decoder-channels", "16", "--init", "random", "--no-full-data", "--no-warm-start"]


@pytest.fixture(scope="module")
def rooms_48x64_seed5(tmp_path_factory):
    """4 synthetic rooms x 5 frames of 48x64 pixels (seed 5)."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("killdata") / "data"
    generate_dataset(root, scenes=4, frames=5, height=48, width=64, seed=5, progress=False)
    return root


def experiment(data, out, kill_at=None, extra=()):
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp", "OMP_NUM_THREADS": "1"}
    env.pop(ENV_VAR, None)
    if kill_at:
        env[ENV_VAR] = kill_at
    return subprocess.run([sys.executable, "-m", "viewal.cli", "experiment", "--data", str(data), "--out", str(out),
                           *ARGS, *extra], env=env, capture_output=True, text=True, timeout=900)


def snapshot(ledger_path):
    """Everything a ledger records, without row ids and timestamps."""
    con = sqlite3.connect(str(ledger_path))
    try:
        queries = con.execute("SELECT cycle, rank, scene_id, frame_id, region_id, score, view_score, n_pixels, mask "
                              "FROM queries ORDER BY cycle, rank").fetchall()
        labels = con.execute("SELECT l.cycle, l.scene_id, l.frame_id, l.region_id, q.rank, l.source, l.n_pixels, "
                             "l.mask, l.labels FROM labels l LEFT JOIN queries q ON q.id = l.query_id "
                             "ORDER BY l.id").fetchall()
        results = con.execute("SELECT cycle, metrics FROM results ORDER BY cycle").fetchall()
        cycle = con.execute("SELECT value FROM meta WHERE key = 'cycle'").fetchone()
    finally:
        con.close()
    return {"queries": queries, "labels": labels, "results": results, "cycle": cycle}


def assert_same_run(got, want):
    """Same selections (frames, regions, masks, order), labels and results; query scores equal up to float
    rounding (a process that trained other models first may sum in another order: ~1e-8 relative)."""
    assert got["cycle"] == want["cycle"] and got["labels"] == want["labels"] and got["results"] == want["results"]
    assert len(got["queries"]) == len(want["queries"])
    for g, w in zip(got["queries"], want["queries"]):
        assert g[:5] == w[:5] and g[7:] == w[7:]
        assert g[5] == pytest.approx(w[5], rel=1e-5)
        assert (g[6] is None) == (w[6] is None) and (g[6] is None or g[6] == pytest.approx(w[6], rel=1e-4, abs=1e-6))


def read_results(out):
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def reference(rooms_48x64_seed5, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    p = experiment(rooms_48x64_seed5, out)
    assert p.returncode == 0, p.stderr[-3000:]
    snap = snapshot(out / "ledgers" / "view_entropy-s0.sqlite")
    assert len({q[0] for q in snap["queries"]}) == 2 and len(snap["results"]) == 3
    assert sum(1 for q in snap["queries"] if q[0] == 1) >= 2  # "while labelling" leaves some pending
    return out, snap


def _kill_and_resume(rooms_48x64_seed5, tmp_path, reference, spec):
    ref_out, ref = reference
    out = tmp_path / "run"
    killed = experiment(rooms_48x64_seed5, out, kill_at=spec)
    assert killed.returncode == -signal.SIGKILL, \
        f"not killed at {spec}: rc {killed.returncode}\n{killed.stderr[-2000:]}"
    phase, cycle = parse_kill_spec(spec)
    part = snapshot(out / "ledgers" / "view_entropy-s0.sqlite")
    assert int(part["cycle"][0] if part["cycle"] else 0) == cycle  # killed inside that cycle
    if phase in ("queried", "label"):
        assert {q[0] for q in part["queries"]} >= {cycle}
    resumed = experiment(rooms_48x64_seed5, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(snapshot(out / "ledgers" / "view_entropy-s0.sqlite"), ref)
    assert read_results(out) == read_results(ref_out)
    assert not list((out / "models").glob(".*")), "a half-written checkpoint was left behind"


FAST = ["train:1", "score:1"]
SLOW = ["train:0", "scene:1", "select:1", "queried:1", "label:1", "save:0", "save:1", "evaluate:1", "evaluate:2"]


def test_every_phase_is_covered():
    assert {parse_kill_spec(s)[0] for s in FAST + SLOW} == set(PHASES)


@pytest.mark.parametrize("spec", FAST)
def test_kill_and_resume_equals_uninterrupted(rooms_48x64_seed5, tmp_path, reference, spec):
    _kill_and_resume(rooms_48x64_seed5, tmp_path, reference, spec)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW)
def test_kill_and_resume_equals_uninterrupted_slow(rooms_48x64_seed5, tmp_path, reference, spec):
    _kill_and_resume(rooms_48x64_seed5, tmp_path, reference, spec)


def test_warm_started_run_killed_in_a_later_fit_resumes_from_the_previous_model(rooms_48x64_seed5, tmp_path, reference):
    """With ``--warm-start`` a cycle's fit continues from the previous cycle's model. A kill during cycle 2's fit
    leaves no model in memory: the resume must load cycle 1's checkpoint and reach the uninterrupted warm run.
    The warm run differs from the cold reference, so this test sees whether the warm start happened."""
    warm = ["--warm-start"]
    ref_out = tmp_path / "warm_ref"
    p = experiment(rooms_48x64_seed5, ref_out, extra=warm)
    assert p.returncode == 0, p.stderr[-3000:]
    want = snapshot(ref_out / "ledgers" / "view_entropy-s0.sqlite")
    assert want["results"][0] == reference[1]["results"][0]  # the seed set's fit is the same cold fit
    assert want["results"][2] != reference[1]["results"][2]
    out = tmp_path / "run"
    killed = experiment(rooms_48x64_seed5, out, kill_at="train:2", extra=warm)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    lost = tmp_path / "lost"  # the same kill with the model it must start from gone: refused, naming it
    shutil.copytree(out, lost)
    (lost / "models" / "view_entropy-s0-c1.pt").unlink()
    refused = experiment(rooms_48x64_seed5, lost, extra=warm)
    assert refused.returncode != 0 and "previous cycle's model" in refused.stderr
    assert "view_entropy-s0-c1.pt" in refused.stderr and "Traceback" not in refused.stderr
    resumed = experiment(rooms_48x64_seed5, out, extra=warm)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(snapshot(out / "ledgers" / "view_entropy-s0.sqlite"), want)


def test_wrong_label_run_killed_while_labelling_labels_as_an_uninterrupted_one(rooms_48x64_seed5, tmp_path):
    """With a wrong-label rate, a run killed after the first answer of cycle 1 and resumed in a new process
    records the uninterrupted run's labels (the simulated oracle's draws are keyed by seed, frame and region,
    not by a running stream), and the count of wrong regions taken from its ledger is the uninterrupted run's."""
    import json

    from viewal.datasets import open_dataset
    from viewal.runs.ledger import Ledger
    from viewal.runs.oracle import Oracle

    noisy = ["--wrong-label-rate", "0.5"]
    ref_out, out = tmp_path / "ref", tmp_path / "run"
    p = experiment(rooms_48x64_seed5, ref_out, extra=noisy)
    assert p.returncode == 0, p.stderr[-3000:]
    want = snapshot(ref_out / "ledgers" / "view_entropy-s0.sqlite")
    killed = experiment(rooms_48x64_seed5, out, kill_at="label:1", extra=noisy)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    part = snapshot(out / "ledgers" / "view_entropy-s0.sqlite")
    asked = sum(1 for q in want["queries"] if q[0] == 1)
    assert asked >= 2 and sum(1 for lab in part["labels"] if lab[0] == 1) == 1   # killed mid-cycle
    resumed = experiment(rooms_48x64_seed5, out, extra=noisy)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = snapshot(out / "ledgers" / "view_entropy-s0.sqlite")
    assert got["labels"] == want["labels"] and got["cycle"] == want["cycle"]
    assert [q[:5] + q[7:] for q in got["queries"]] == [q[:5] + q[7:] for q in want["queries"]]
    ds = open_dataset(rooms_48x64_seed5)
    with Ledger(ref_out / "ledgers" / "view_entropy-s0.sqlite") as led:
        uninterrupted = Oracle(ds, 0.5, seed=0).resume(led)
    with Ledger(out / "ledgers" / "view_entropy-s0.sqlite") as led:
        after_resume = Oracle(ds, 0.5, seed=0).resume(led)
    recorded = json.loads(want["results"][-1][1])["oracle_wrong_regions"]
    assert uninterrupted.n_answered == sum(1 for q in want["queries"] if q[0] >= 1) > asked
    assert (after_resume.n_answered, after_resume.n_wrong) == (uninterrupted.n_answered, uninterrupted.n_wrong)
    assert after_resume.n_wrong == recorded > 0                 # what the uninterrupted run counted, in one process
    strip = [{k: v for k, v in json.loads(m).items() if k != "oracle_wrong_regions"} for _, m in got["results"]]
    assert strip == [{k: v for k, v in json.loads(m).items() if k != "oracle_wrong_regions"}
                     for _, m in want["results"]]
