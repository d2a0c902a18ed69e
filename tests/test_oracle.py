"""Simulated oracle: ground truth inside the region, 255 outside; seeded per-region wrong labels."""
from pathlib import Path

import numpy as np
import pytest

from viewal.datasets.base import Frame, RGBDDataset
from viewal.runs.oracle import Oracle, majority_class, oracle_labels
from viewal.selection import RegionQuery

H, W, C = 8, 10, 5


def make_dataset(n_frames=4, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        gt = rng.integers(0, C, (H, W))
        gt[0, :3] = 255                      # some ignore pixels
        frames.append(Frame("s", f"{i}", rgb=np.zeros((H, W, 3), np.uint8), depth=np.ones((H, W), np.float32),
                            K=np.eye(3), world_T_cam=np.eye(4), labels=gt))
    return RGBDDataset(root=Path("."), format="memory", class_names=[f"c{c}" for c in range(C)],
                       scenes={"s": frames}, splits={}, height=H, width=W)


def test_oracle_labels_inside_mask_only():
    gt = np.arange(12).reshape(3, 4) % 3
    gt[0, 0] = 255
    m = np.zeros((3, 4), bool)
    m[:2, :2] = True
    out = oracle_labels(gt, m)
    assert out.dtype == np.int64
    assert out[:2, :2].tolist() == [[255, 1], [1, 2]] and (out[~m] == 255).all()
    wrong = oracle_labels(gt, m, wrong_class=4)
    assert wrong[:2, :2].tolist() == [[255, 4], [4, 4]] and (wrong[~m] == 255).all()   # ignore stays ignore
    assert majority_class(gt, m) == 1 and majority_class(np.full((2, 2), 255), np.ones((2, 2), bool)) is None


def test_perfect_oracle_returns_ground_truth():
    ds = make_dataset()
    o = Oracle(ds)
    m = np.zeros((H, W), bool)
    m[2:6, 3:9] = True
    fr = ds.frame("s/1")
    out = o.label("s/1", m)
    assert np.array_equal(out[m], fr.labels[m]) and (out[~m] == 255).all()
    q = RegionQuery("s", "1", m, 0.5, region_id=3)
    assert np.array_equal(o.label_query(q), out)
    with pytest.raises(ValueError, match="does not match"):
        o.label("s/1", np.ones((H, W + 1), bool))
    with pytest.raises(ValueError, match="wrong_label_rate"):
        Oracle(ds, wrong_label_rate=1.5)


def _regions(rng, n):
    for k in range(n):
        m = np.zeros((H, W), bool)
        y, x = rng.integers(0, H - 2), rng.integers(0, W - 3)
        m[y:y + 2 + k % 3, x:x + 3] = True
        yield f"s/{k % 4}", m


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_wrong_label_rate_is_respected_and_wrong_class_differs(rate):
    ds = make_dataset()
    o = Oracle(ds, wrong_label_rate=rate, seed=3)
    rng = np.random.default_rng(1)
    n = 1500
    n_wrong = 0
    for key, m in _regions(rng, n):
        gt = ds.frame(key).labels
        out = o.label(key, m)
        valid = m & (gt != 255)
        assert (out[m & (gt == 255)] == 255).all() and (out[~m] == 255).all()
        if np.array_equal(out[valid], gt[valid]):
            continue
        n_wrong += 1
        vals = np.unique(out[valid])
        assert vals.size == 1                                   # the whole region gets one class ...
        assert vals[0] != majority_class(gt, m)                 # ... different from its majority class
        assert 0 <= vals[0] < C
    assert o.n_answered == n and o.n_wrong == n_wrong
    # binomial std at n=1500 is <= 0.013; allow 4 sigma
    assert abs(n_wrong / n - rate) < 0.05


def test_wrong_labels_seeded_and_order_independent():
    ds = make_dataset()
    regions = list(_regions(np.random.default_rng(2), 200))
    a = [Oracle(ds, 0.3, seed=7).label(k, m) for k, m in regions]
    o = Oracle(ds, 0.3, seed=7)
    b = {i: o.label(*regions[i]) for i in reversed(range(len(regions)))}   # reversed order, same answers
    assert all(np.array_equal(a[i], b[i]) for i in range(len(regions)))
    c = [Oracle(ds, 0.3, seed=8).label(k, m) for k, m in regions]
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_a_resumed_oracle_counts_what_the_uninterrupted_one_counted(tmp_path):
    """Answering a run's queries in two processes (an oracle each, the second one resumed from the ledger) gives
    the labels and counts of one oracle answering all of them; people's answers are not the oracle's."""
    from viewal.runs.ledger import LabelItem, Ledger

    ds = make_dataset()
    regions = list(_regions(np.random.default_rng(4), 60))
    queries = [RegionQuery(k.split("/")[0], k.split("/")[1], m, score=1.0, region_id=i) for i, (k, m) in
               enumerate(regions)]
    whole = Oracle(ds, 0.4, seed=5)
    want = [whole.label_query(q) for q in queries[:50]]
    with Ledger(tmp_path / "run.sqlite") as led:
        led.finish_cycle(0)
        qs = led.record_queries(1, queries)
        first = Oracle(ds, 0.4, seed=5)
        for q in qs[:20]:
            led.record_labels(1, [LabelItem.from_query(q, first.label_query(q), "oracle")], overlap="allow")
        people = [LabelItem.from_query(q, ds.frame(f"s/{q.frame_id}").labels, "human") for q in qs[50:]]
        led.record_labels(1, people, overlap="allow")
        resumed = Oracle(ds, 0.4, seed=5).resume(led)
        assert (resumed.n_answered, resumed.n_wrong) == (first.n_answered, first.n_wrong) == (20, first.n_wrong)
        for q in qs[20:50]:
            led.record_labels(1, [LabelItem.from_query(q, resumed.label_query(q), "oracle")], overlap="allow")
        assert (resumed.n_answered, resumed.n_wrong) == (whole.n_answered, whole.n_wrong) == (50, whole.n_wrong)
        assert 10 <= whole.n_wrong <= 30                                            # ~40 % of 50 regions
        assert Oracle(ds, 0.4, seed=5).resume(led).n_wrong == whole.n_wrong        # a third process counts the same
        assert Oracle(ds, 0.4, seed=6).resume(led).n_wrong != whole.n_wrong         # the count is the seed's draw
        assert Oracle(ds, 0.0, seed=5).resume(led).n_wrong == 0
        again = [Oracle(ds, 0.4, seed=5).label_query(q) for q in qs[:50]]                # the ledger's masks
        assert all(np.array_equal(a, b) for a, b in zip(want, again))
