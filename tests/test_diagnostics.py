"""viewal.runs.diagnostics: what a cycle's picks were, seen by the model that picked them."""
import numpy as np
import pytest
import torch

from viewal.runs.diagnostics import class_histogram, diagnose_cycle, selection_counts, summarise_counts
from viewal.runs.ledger import LabelItem, Ledger

C = 3


def test_selection_counts_by_true_class_and_error():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 0], [2, 0, 0, 1]])
    picked = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool)  # (1,2) is ignore: skipped
    available = np.ones_like(picked)
    c = selection_counts(pred, gt, picked, available, C)
    np.testing.assert_array_equal(c["picked"], [2, 1, 0])
    np.testing.assert_array_equal(c["picked_err"], [1, 0, 0])
    np.testing.assert_array_equal(c["pool"], [2, 3, 2])
    np.testing.assert_array_equal(c["pool_err"], [1, 1, 1])
    # rows = truth: class 0 -> predicted 0 and 1; class 1 -> 1, 0, 1; class 2 -> 2, 0
    np.testing.assert_array_equal(c["confusion"], [[1, 1, 0], [1, 2, 0], [1, 0, 1]])


def test_selection_counts_refuses_mismatched_shapes_and_bad_classes():
    a = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match="one shape"):
        selection_counts(a, a, np.zeros((3, 2), bool), a.astype(bool), C)
    with pytest.raises(ValueError, match="outside 0..2"):
        selection_counts(a, a + 3, a.astype(bool), a.astype(bool), C)


def test_summary_enrichment_weak_share_and_diversity():
    counts = {"picked": np.array([0, 4, 4]), "picked_err": np.array([0, 4, 2]),
              "pool": np.array([80, 10, 10]), "pool_err": np.array([8, 6, 6]),
              # IoU: class 0 = 72 / (80 + 12 - 72)... built so that class 0 is strong, 1 and 2 weak
              "confusion": np.array([[72, 4, 4], [3, 4, 3], [3, 3, 4]])}
    s = summarise_counts(counts)
    assert s["picked_pixels"] == 8 and s["pool_pixels"] == 100
    assert s["error_picked"] == pytest.approx(6 / 8)
    assert s["error_pool"] == pytest.approx(20 / 100)
    assert s["error_enrichment"] == pytest.approx((6 / 8) / (20 / 100))
    # IoUs 72/86, 4/14, 4/14: median 4/14, so no class is strictly below it -> no weak class
    assert s["weak_share_picked"] == 0.0 and s["weak_share_pool"] == 0.0
    counts["confusion"] = np.array([[72, 4, 4], [3, 5, 2], [3, 3, 4]])  # class 1 (5/15) above class 2 (4/16)
    s = summarise_counts(counts)
    assert s["weak_share_picked"] == pytest.approx(4 / 8)  # class 2 only
    assert s["weak_share_pool"] == pytest.approx(10 / 100)
    assert s["classes_picked"] == pytest.approx(2.0)  # two classes, equal counts
    p = np.array([0.8, 0.1, 0.1])
    assert s["classes_pool"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


class ConstantModel(torch.nn.Module):
    """Predicts class ``k`` everywhere."""

    def __init__(self, k: int, num_classes: int):
        super().__init__()
        self.k, self.c = k, num_classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.c, x.shape[2], x.shape[3])
        out[:, self.k] = 1.0
        return out


def test_diagnose_cycle_reads_the_cycles_picks_from_the_ledger(rooms_64x80, tmp_path):
    from viewal.datasets import open_dataset

    ds = open_dataset(rooms_64x80)
    pool = ds.split("train")[:3]
    gts = [np.asarray(f.labels).astype(np.int64) for f in pool]
    h, w = gts[0].shape
    rng = np.random.default_rng(0)
    seed_mask = np.ones((h, w), bool)  # frame 0 fully labelled in cycle 0
    picks = [rng.random((h, w)) < 0.2 for _ in pool]  # cycle 1: random pixels of frames 1 and 2
    with Ledger(tmp_path / "l.sqlite") as led:
        led.record_labels(0, [LabelItem(pool[0].scene_id, pool[0].frame_id, seed_mask, gts[0], source="seed")])
        led.record_labels(1, [LabelItem(f.scene_id, f.frame_id, picks[i], gts[i]) for i, f in enumerate(pool)
                              if i > 0])
        led.record_labels(2, [LabelItem(pool[1].scene_id, pool[1].frame_id, ~picks[1], gts[1])])  # later: unseen
        k = int(np.bincount(np.concatenate([g[g != 255] for g in gts])).argmax())
        out = diagnose_cycle(ConstantModel(k, ds.num_classes), led, pool, 1, ds.num_classes)
    picked = np.concatenate([g[p & (g != 255)] for g, p in zip(gts[1:], picks[1:])])
    pool_px = np.concatenate([g[g != 255] for g in gts[1:]])
    assert out["picked_pixels"] == picked.size and out["pool_pixels"] == pool_px.size
    assert out["error_picked"] == pytest.approx(np.mean(picked != k))
    assert out["error_pool"] == pytest.approx(np.mean(pool_px != k))
    assert out["regions"] == 2 and out["frames"] == 2
    assert "error_picked_after" not in out
    # the model trained on the picks (``after``): another constant one, scored on the picks and on the rest
    other = (k + 1) % ds.num_classes
    with Ledger(tmp_path / "l.sqlite") as led:
        out = diagnose_cycle(ConstantModel(k, ds.num_classes), led, pool, 1, ds.num_classes,
                             after=ConstantModel(other, ds.num_classes))
    still = np.concatenate([g[~p & (g != 255)] for g, p in zip(gts[1:], picks[1:])])
    assert out["error_picked_after"] == pytest.approx(np.mean(picked != other))
    assert out["error_pool_after"] == pytest.approx(np.mean(still != other))
    with pytest.raises(ValueError, match="cycle must be >= 1"):
        diagnose_cycle(ConstantModel(k, ds.num_classes), led, pool, 0, ds.num_classes)


def test_class_balance_counts_what_each_method_labelled_by_a_cycle(rooms_64x80, tmp_path):
    """Per class: the share of the labelled pixels a method had by a cycle (seed set included, later cycles
    not), averaged over seeds, next to the pool's share and the cycle's test IoU from the ledger."""
    from viewal.datasets import open_dataset
    from viewal.runs.diagnostics import class_balance, class_histogram
    from viewal.runs.layout import RunLayout

    ds = open_dataset(rooms_64x80)
    pool = ds.split("train")
    gts = [np.asarray(f.labels).astype(np.int64) for f in pool]
    c = ds.num_classes
    layout = RunLayout(tmp_path)
    layout.ledgers.mkdir(parents=True)
    rng = np.random.default_rng(1)
    want_share, want_iou = [], []
    for seed in (0, 1):
        picks = [rng.random(g.shape) < 0.3 for g in gts[:3]]
        with Ledger(layout.ledger("m", seed)) as led:
            led.record_labels(0, [LabelItem(pool[0].scene_id, pool[0].frame_id, np.ones(gts[0].shape, bool),
                                            gts[0], source="seed")])
            led.record_labels(1, [LabelItem(pool[i].scene_id, pool[i].frame_id, picks[i], gts[i]) for i in (1, 2)])
            led.record_labels(2, [LabelItem(pool[3].scene_id, pool[3].frame_id, np.ones(gts[3].shape, bool), gts[3])])
            iou = rng.random(c)
            for cyc in (0, 1, 2):
                led.record_result(cyc, {"miou": float(iou.mean()), "per_class_iou": (iou + cyc).tolist()})
        labelled = np.concatenate([gts[0].ravel()] + [gts[i][picks[i]] for i in (1, 2)])
        labelled = labelled[labelled != 255]
        want_share.append(np.bincount(labelled, minlength=c) / labelled.size)
        want_iou.append(iou + 1)
    bal = class_balance(tmp_path, ds, ["m"], [0, 1], 1, progress=False)
    assert bal["classes"] == list(ds.class_names) and bal["cycle"] == 1
    np.testing.assert_allclose(bal["m"]["share"], np.mean(want_share, 0))
    np.testing.assert_allclose(bal["m"]["iou"], np.mean(want_iou, 0))
    every = np.concatenate([g[g != 255] for g in gts])
    np.testing.assert_allclose(bal["pool"], np.bincount(every, minlength=c) / every.size)
    assert sum(bal["m"]["share"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cycle 3 has no result"):
        class_balance(tmp_path, ds, ["m"], [0], 3, progress=False)
    with Ledger(layout.ledger("m", 1)) as led:  # a result written before per-class IoU was stored
        led.record_result(2, {"miou": 0.1})
    with pytest.raises(ValueError, match="m-s1.sqlite: cycle 2's result has no per_class_iou"):
        class_balance(tmp_path, ds, ["m"], [0, 1], 2, progress=False)
    with pytest.raises(FileNotFoundError, match="other-s0.sqlite"):
        class_balance(tmp_path, ds, ["other"], [0], 1, progress=False)
    with pytest.raises(ValueError, match="labels outside 0..2"):
        class_histogram([np.array([[0, 3], [255, 1]])], 3)
    np.testing.assert_array_equal(class_histogram([np.array([[0, 2], [255, 2]])], 3), [1, 0, 2])


def test_compare_models_reports_iou_and_the_classes_each_model_predicts(rooms_64x80):
    from viewal.datasets import open_dataset
    from viewal.runs.diagnostics import compare_models

    ds = open_dataset(rooms_64x80)
    frames = ds.split("test")
    C = ds.num_classes
    truth = class_histogram((f.labels for f in frames), C).astype(float)
    truth /= truth.sum()
    k = int(np.argmax(truth))                    # the commonest class
    other = int(np.argsort(truth)[-2])
    cmp = compare_models({"common": ConstantModel(k, C), "other": ConstantModel(other, C)}, frames, C)
    assert np.allclose(cmp["truth"], truth)
    pred = cmp["common"]["predicted"]
    assert pred[k] == pytest.approx(1.0) and pred.sum() == pytest.approx(1.0)
    assert cmp["common"]["iou"][k] == pytest.approx(truth[k])     # all pixels called k: IoU = k's share
    assert cmp["other"]["iou"][other] == pytest.approx(truth[other])
    present = (truth > 0).sum()
    assert cmp["common"]["miou"] == pytest.approx(truth[k] / present)
    with pytest.raises(ValueError, match="no models"):
        compare_models({}, frames, C)


def test_compare_checkpoints_script_refuses_bad_arguments(rooms_64x80, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_checkpoints.py"
    spec = importlib.util.spec_from_file_location("compare_checkpoints", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = tmp_path / "a.pt"
    a.write_bytes(b"x")
    for argv, match in ((["missing.pt", "--data", "d"], "no such checkpoint: missing.pt"),
                        ([str(a), "--names", "x,y", "--data", "d"], "gives 2 names for 1 checkpoints"),
                        ([str(a)], "give --run"),
                        ([str(a), "--data", str(tmp_path / "nope")], "dataset path does not exist"),
                        ([str(a), "--data", str(rooms_64x80)], "a.pt: not a loadable checkpoint"),
                        ([str(a), "--data", str(rooms_64x80), "--split", "dev"], "--split 'dev': the dataset has")):
        with pytest.raises(SystemExit) as e:
            mod.main(argv)
        assert e.value.code == 2 and match in capsys.readouterr().err
