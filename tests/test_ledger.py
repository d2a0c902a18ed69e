"""Ledger: API, atomic steps, and crash/resume with real SIGKILLs of a subprocess."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from viewal.runs.ledger import LabelItem, Ledger, LedgerError, decode_labels, decode_mask, encode_labels, encode_mask
from viewal.selection import RegionQuery


def square(h, w, y, x, s):
    m = np.zeros((h, w), bool)
    m[y:y + s, x:x + s] = True
    return m


def test_codecs_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((37, 53)) < 0.3
    assert np.array_equal(decode_mask(encode_mask(m), m.shape), m)
    lab = rng.integers(0, 256, (37, 53))
    assert np.array_equal(decode_labels(encode_labels(lab)), lab)
    with pytest.raises(ValueError, match="0..255"):
        encode_labels(np.array([[300]]))


def test_config_queries_labels_results(tmp_path):
    led = Ledger(tmp_path / "run.sqlite")
    assert led.cycle() == 0 and led.config() == {} and led.results() == []
    led.set_config({"method": "view_entropy", "seed": 1, "superpixels": {"kind": "seeds", "n": 40}})
    led.set_config({"method": "view_entropy", "seed": 1, "superpixels": {"kind": "seeds", "n": 40}})  # same: fine
    with pytest.raises(LedgerError, match="different config"):
        led.set_config({"method": "random"})
    # seed set: a whole frame
    full = np.ones((6, 8), bool)
    led.record_labels(0, [LabelItem("s", "0", full, np.full((6, 8), 2), source="seed")])
    qs = led.record_queries(0, [RegionQuery("s", "1", square(6, 8, 0, 0, 3), 0.9, region_id=4, view_score=0.2),
                                RegionQuery("s", "1", square(6, 8, 3, 3, 3), 0.8, region_id=5)])
    assert [q.query_id for q in qs] == [1, 2] and qs[0].cycle == 0
    with pytest.raises(LedgerError, match="already has"):
        led.record_queries(0, qs)
    assert [q.region_id for q in led.pending_queries(0)] == [4, 5]
    gt = np.arange(48).reshape(6, 8) % 5
    led.record_labels(0, [LabelItem.from_query(qs[0], gt)])
    assert [q.region_id for q in led.pending_queries()] == [5]
    with pytest.raises(LedgerError, match="already labelled"):
        led.record_labels(0, [LabelItem.from_query(qs[0], gt)])
    lm = led.label_map("s/1")
    assert np.array_equal(lm[qs[0].mask], gt[qs[0].mask]) and (lm[~qs[0].mask] == 255).all()
    assert np.array_equal(led.labelled_mask("s/1"), qs[0].mask)
    assert led.labelled_mask("s/9") is None and not led.labelled_mask("s/9", (2, 2)).any()
    assert (led.label_map("s/9", (2, 2)) == 255).all()
    assert led.labelled_pixels() == 48 + 9 and led.labelled_pixels("seed") == 48
    led.finish_cycle(0, {"miou": 0.25})
    assert led.cycle() == 1 and led.results() == [{"cycle": 0, "miou": 0.25}]
    with pytest.raises(LedgerError, match="current cycle"):
        led.finish_cycle(0)
    led.close()
    # persisted
    led = Ledger(tmp_path / "run.sqlite")
    assert led.cycle() == 1 and led.config()["superpixels"]["n"] == 40
    assert led.labelled_frames() == ["s/0", "s/1"]
    assert [r["source"] for r in led.labels()] == ["seed", "oracle"]


def test_labelling_step_is_atomic_and_overlaps_refused(tmp_path):
    led = Ledger(tmp_path / "run.sqlite")
    a, b = square(6, 6, 0, 0, 3), square(6, 6, 2, 2, 3)   # overlap at one pixel
    gt = np.ones((6, 6), int)
    with pytest.raises(LedgerError, match="overlaps"):
        led.record_labels(0, [LabelItem("s", "f", a, gt), LabelItem("s", "f", b, gt)])
    assert led.labels() == [] and led.labelled_pixels() == 0          # nothing of the failed step remains
    with pytest.raises(ValueError, match="empty mask"):
        led.record_labels(0, [LabelItem("s", "f", a, gt), LabelItem("s", "g", np.zeros((6, 6), bool), gt)])
    assert led.labels() == []
    led.record_labels(0, [LabelItem("s", "f", a, gt)])
    with pytest.raises(LedgerError, match="overlaps 1 already-labelled"):
        led.record_labels(0, [LabelItem("s", "f", b, gt)])
    led.record_labels(0, [LabelItem("s", "f", b, gt * 3, source="human")], overlap="allow")   # a correction
    assert led.labelled_pixels() == 9 + 9 - 1
    assert led.label_map("s/f")[2, 2] == 3                                # later label wins
    with pytest.raises(LedgerError, match="unknown query"):
        led.record_labels(0, [LabelItem("s", "f", a, gt, query_id=99)], overlap="allow")


def test_wal_and_synchronous_full(tmp_path):
    led = Ledger(tmp_path / "run.sqlite")
    assert led._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert led._con.execute("PRAGMA synchronous").fetchone()[0] == 2    # FULL


WORKER = textwrap.dedent('''
    import sys
    import numpy as np
    from viewal.runs.ledger import LabelItem, Ledger
    from viewal.selection import RegionQuery

    path, cycles, per_cycle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    H = W = 16
    FRAMES, S = 20, 4                                   # 19 pool frames x 16 regions of 4x4 pixels

    def mask(r):
        m = np.zeros((H, W), bool)
        m[(r // S) * 4:(r // S) * 4 + 4, (r % S) * 4:(r % S) * 4 + 4] = True
        return m

    def gt(f):
        return (np.arange(H * W).reshape(H, W) // 7 + f) % 9

    led = Ledger(path)
    led.set_config({"cycles": cycles, "per_cycle": per_cycle, "seed": 0})
    if not led.labels():
        led.record_labels(0, [LabelItem("s", "0", np.ones((H, W), bool), gt(0), source="seed")])
    while (c := led.cycle()) < cycles:
        if not led.queries(c):
            rng = np.random.default_rng(c)
            cand = [(f, r) for f in range(1, FRAMES) for r in range(S * S)
                    if not led.labelled_mask(f"s/{f}", (H, W))[mask(r)].any()]
            score = rng.random(len(cand))
            order = np.argsort(-score, kind="stable")[:per_cycle]
            led.record_queries(c, [RegionQuery("s", str(cand[i][0]), mask(cand[i][1]), float(score[i]),
                                               region_id=cand[i][1]) for i in order])
            print("step", flush=True)
        for q in led.pending_queries(c):
            led.record_labels(c, [LabelItem.from_query(q, gt(int(q.frame_id)))])
            print("step", flush=True)
        led.finish_cycle(c, {"labelled_pixels": led.labelled_pixels()})
        print("step", flush=True)
    print("DONE", flush=True)
''')


def test_sigkill_at_random_moments_then_resume(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    db = tmp_path / "run.sqlite"
    cycles, per_cycle = 8, 30
    env = dict(os.environ, NUMBA_THREADING_LAYER="omp")
    cmd = [sys.executable, str(script), str(db), str(cycles), str(per_cycle)]
    rng = np.random.default_rng(1234)
    progress = []
    for _attempt in range(6):
        # let the worker commit a random number of steps, then SIGKILL it at a random moment of the next ones
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = int(rng.integers(3, 30))
        for _ in range(target):
            if not p.stdout.readline():
                break
        time.sleep(float(rng.uniform(0.0, 0.015)))
        assert p.poll() is None, "the worker finished before it could be killed: make the run longer"
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL
        con = sqlite3.connect(str(db))
        progress.append(con.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
        con.close()
    assert progress == sorted(progress) and 0 < progress[-1] < cycles * per_cycle + 1, progress
    print("labels after each kill:", progress)
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert p.returncode == 0 and b"DONE" in p.stdout, p.stderr.decode()[-2000:]

    led = Ledger(db)
    c = led.counts()
    assert c["cycle"] == cycles and c["results"] == cycles
    assert c["queries"] == cycles * per_cycle                     # every cycle's queries recorded once
    assert c["labelled_queries"] == c["queries"] and led.pending_queries() == []
    assert c["labels"] == c["queries"] + 1                        # + the seed frame
    rows = led.labels()
    keys = [(r["frame_id"], r["region_id"]) for r in rows if r["source"] == "oracle"]
    assert len(keys) == len(set(keys)), "a region was labelled twice"
    assert led.labelled_pixels() == 256 + 16 * c["queries"]       # masks disjoint, counts consistent
    res = led.results()
    assert [r["labelled_pixels"] for r in res] == [256 + 16 * per_cycle * (k + 1) for k in range(cycles)]
    for f in {r["frame_id"] for r in rows}:
        lm = led.label_map(f"s/{f}")
        m = led.labelled_mask(f"s/{f}")
        truth = (np.arange(256).reshape(16, 16) // 7 + int(f)) % 9
        assert np.array_equal(lm[m], truth[m]) and (lm[~m] == 255).all()
    assert led._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_label_origin_relabel_and_old_ledgers(tmp_path):
    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        (q,) = led.record_queries(1, [RegionQuery("s", "1", square(6, 8, 1, 1, 3), 0.9, region_id=4)])
        led.record_labels(1, [LabelItem.from_query(q, np.zeros((6, 8), int))])      # no origin (oracle)
    # a ledger written before labels had an origin: the column is dropped, then the ledger reopened
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE labels DROP COLUMN origin")
    con.commit()
    con.close()
    with Ledger(db) as led:
        assert led.labels()[0]["origin"] is None and led.labels()[0]["source"] == "oracle"
        (q2,) = led.record_queries(2, [RegionQuery("s", "2", square(6, 8, 0, 0, 2), 0.5, region_id=1)])
        item = LabelItem.from_query(q2, np.ones((6, 8), int), "human")
        item.origin = "png labels /a/labels (annotator 1 of 2)"
        assert led.record_labels(2, [item]) == 1
        assert led.labels()[1]["origin"] == item.origin
        # the same origin again: skipped when asked; another origin: refused, naming both
        assert led.record_labels(2, [item], relabel="skip-same-origin") == 0
        other = LabelItem.from_query(q2, np.full((6, 8), 2), "human")
        other.origin = "label-studio /b.json task 3 (annotator 5)"
        msg = (f"query {q2.query_id} .* already labelled \\(label 2, from png labels /a/labels "
               "\\(annotator 1 of 2\\)\\); refused the second label from label-studio /b.json task 3 \\(annotator 5\\)")
        with pytest.raises(LedgerError, match=msg):
            led.record_labels(2, [other], relabel="skip-same-origin")
        with pytest.raises(LedgerError, match="from oracle\\); refused the second label from human"):
            led.record_labels(2, [LabelItem.from_query(q, np.zeros((6, 8), int), "human")])
        assert len(led.labels()) == 2
        with pytest.raises(ValueError, match="relabel must be"):
            led.record_labels(2, [], relabel="replace")
