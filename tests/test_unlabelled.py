"""Datasets without labels: every format opens, frames without labels say so, and only what needs ground truth
(the simulated oracle, mIoU, ``viewal train``) refuses them, naming the frame; reports without ground truth."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_loaders import _make_matterport, _make_scannet, _make_scenenet, _make_viewal

from viewal.datasets import MissingLabelsError, open_dataset
from viewal.datasets.base import Frame, RGBDDataset
from viewal.datasets.check import check_frames
from viewal.nn.metrics import (
    label_class_counts,
    label_summary,
    predicted_class_shares,
    summary_without_ground_truth,
)

torch.set_num_threads(1)


def _labelled_keys(ds) -> list[str]:
    return [f.key for f in ds.all_frames() if f.has_labels]


def _assert_frames_load(ds) -> None:
    """Every frame loads (labels only where it has them; None elsewhere), as a run's up-front check does."""
    assert check_frames(list(ds.all_frames()), progress=False) == len(ds)
    for f in ds.all_frames():
        assert (f.labels is not None) == f.has_labels
        if f.has_labels:
            assert f.labels.shape == (ds.height, ds.width) and f.labels.dtype == np.int64


# ------------------------------------------------------------------------------------------ loaders

def _write_canonical(root: Path, scenes=("a", "b"), n=2, h=12, w=16):
    from viewal.datasets.canonical import write_frame, write_meta, write_scene_intrinsics

    K = np.array([[10.0, 0, 7.5], [0, 10.0, 5.5], [0, 0, 1]])
    for s in scenes:
        write_scene_intrinsics(root, s, K)
        for i in range(n):
            lab = np.full((h, w), i % 3, np.uint8)
            lab[0] = 255
            write_frame(root, s, f"{i:06d}", rgb=np.full((h, w, 3), 50 * i, np.uint8),
                        depth=np.full((h, w), 2.0, np.float32), world_T_cam=np.eye(4), labels=lab, color_ext=".png")
    write_meta(root, class_names=["x", "y", "z"], splits={"train": [scenes[0]], "val": [scenes[1]], "test": []},
               height=h, width=w)


def test_canonical_without_labels_all_some_scenes_some_frames(tmp_path):
    _write_canonical(tmp_path)
    (tmp_path / "b" / "label" / "000001.png").unlink()              # one frame of scene b
    ds = open_dataset(tmp_path)
    assert _labelled_keys(ds) == ["a/000000", "a/000001", "b/000000"]
    assert [f.key for f in ds.unlabelled()] == ["b/000001"] and [f.key for f in ds.labelled("val")] == ["b/000000"]
    lab = ds.frame("a/000001").labels
    assert (lab[0] == 255).all() and (lab[1:] == 1).all()
    _assert_frames_load(ds)
    shutil.rmtree(tmp_path / "a" / "label")                          # a whole scene
    ds = open_dataset(tmp_path)
    assert _labelled_keys(ds) == ["b/000000"] and ds.labelled("train") == []
    shutil.rmtree(tmp_path / "b" / "label")                          # every scene
    ds = open_dataset(tmp_path)
    assert _labelled_keys(ds) == [] and len(ds.unlabelled()) == 4 and ds.frame("b/000000").labels is None
    _assert_frames_load(ds)


def test_scannet_without_labels(tmp_path):
    _make_scannet(tmp_path, "scene0000_00", n=2)
    _make_scannet(tmp_path, "scene0001_00", n=2)
    shutil.rmtree(tmp_path / "scene0001_00" / "label-filt")
    (tmp_path / "scene0000_00" / "label-filt" / "1.png").unlink()
    ds = open_dataset(tmp_path)
    assert ds.format == "scannet" and len(ds) == 4
    assert _labelled_keys(ds) == ["scene0000_00/0"]
    assert set(np.unique(ds.frame("scene0000_00/0").labels).tolist()) == {255, 0, 4, 39}
    _assert_frames_load(ds)
    # no label folder anywhere: no label map needed either
    shutil.rmtree(tmp_path / "scene0000_00" / "label-filt")
    (tmp_path / "scannetv2-labels.combined.tsv").unlink()
    ds = open_dataset(tmp_path, format="scannet")
    assert _labelled_keys(ds) == [] and ds.meta["label_map"] is None


def test_scenenet_without_labels(tmp_path):
    _make_scenenet(tmp_path, traj="0/7", frames=(0, 25))
    _make_scenenet(tmp_path, traj="0/8", frames=(0,), labels=None)
    (tmp_path / "0" / "7" / "class13" / "25.png").unlink()
    ds = open_dataset(tmp_path)
    assert ds.format == "scenenet" and len(ds) == 3
    assert _labelled_keys(ds) == ["0_7/0"]
    assert set(np.unique(ds.frame("0_7/0").labels).tolist()) == {255, 0, 12}
    _assert_frames_load(ds)


def test_scenenet_instance_labels_missing_one_frame(tmp_path):
    _make_scenenet(tmp_path, labels="instance")
    (tmp_path / "0" / "7" / "instance" / "0.png").unlink()
    ds = open_dataset(tmp_path)
    assert _labelled_keys(ds) == ["0_7/25"]
    _assert_frames_load(ds)


def test_matterport_without_labels(tmp_path):
    _make_matterport(tmp_path, house="h1", n=2)
    _make_matterport(tmp_path, house="h2", n=1, labels=False)
    (tmp_path / "h1" / "label_nyu40" / "a1b2c3d41_i1_1.png").unlink()
    ds = open_dataset(tmp_path)
    assert ds.format == "matterport" and len(ds) == 3
    assert _labelled_keys(ds) == ["h1/a1b2c3d40_i1_0"]
    _assert_frames_load(ds)


def test_viewal_original_without_labels(tmp_path):
    sel, names = _make_viewal(tmp_path)
    (sel / "label" / f"{names[1]}.png").unlink()
    ds = open_dataset(tmp_path)
    assert ds.format == "viewal-original"
    assert _labelled_keys(ds) == ["scene0007_00/000000", "scene0014_00/000070"]
    _assert_frames_load(ds)
    shutil.rmtree(sel / "label")
    ds = open_dataset(tmp_path)
    assert _labelled_keys(ds) == [] and len(ds) == 3
    _assert_frames_load(ds)


# ------------------------------------------------------------------------------------------ training

def _tiny_model(num_classes=3, seed=0):
    from viewal.nn.model import build_model

    torch.manual_seed(seed)
    return build_model(num_classes, "mobilenet_v2", decoder_channels=16, encoder_weights="random")


def _frame(i, labelled=True, h=32, w=32):
    rng = np.random.default_rng(i)
    lab = np.zeros((h, w), np.int64)
    lab[:, w // 2:] = 1
    lab[h // 2:, :] = 2
    palette = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]], np.uint8)
    rgb = np.clip(palette[lab].astype(np.int16) + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return Frame("s", f"{i:03d}", rgb=rgb, depth=np.ones((h, w), np.float32), K=np.eye(3), world_T_cam=np.eye(4),
                 labels=lab if labelled else None)


def test_fit_without_labelled_validation_keeps_the_final_weights():
    from viewal.nn.train import TrainConfig, fit

    train = [_frame(i) for i in range(4)]
    cfg = TrainConfig(epochs=2, batch_size=2, lr=0.01, bn_recalibrate=0)
    with pytest.warns(UserWarning, match=r"none of the 2 validation frames has labels \(e.g. s/100\): training "
                                         r"without validation, keeping the final weights"):
        res = fit(_tiny_model(), train, [_frame(100, False), _frame(101, False)], cfg, progress=False)
    assert np.isnan(res.best_miou) and res.best_epoch == 2
    assert [h["val_miou"] for h in res.history] == [None, None]


def test_fit_skips_unlabelled_validation_frames():
    from viewal.nn.train import TrainConfig, evaluate, fit

    train = [_frame(i) for i in range(4)]
    val = [_frame(100, False), _frame(101)]
    model = _tiny_model()
    with pytest.warns(UserWarning, match=r"1 of 2 validation frames have no labels \(e.g. s/100\) and are skipped"):
        res = fit(model, train, val, TrainConfig(epochs=2, batch_size=2, lr=0.01, bn_recalibrate=0), progress=False)
    assert all(h["val_miou"] is not None for h in res.history)
    assert res.best_miou == pytest.approx(evaluate(model, [val[1]], 3)["miou"])  # measured on the labelled one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every validation frame labelled: no warning
        fit(_tiny_model(), train, [val[1]], TrainConfig(epochs=1, batch_size=2, bn_recalibrate=0), progress=False)


def test_evaluate_names_the_frame_without_labels():
    from viewal.nn.train import evaluate

    frames = [_frame(0), _frame(7, False), _frame(8, False)]
    with pytest.raises(MissingLabelsError, match=r"evaluation \(mIoU\) of the val/test frames needs ground-truth "
                                                 r"labels, but frame s/007 has none \(2 of 3 frames have no labels\)"):
        evaluate(_tiny_model(), frames, 3)
    assert issubclass(MissingLabelsError, ValueError)


def test_oracle_refuses_a_frame_without_labels():
    from viewal.runs.oracle import Oracle

    frames = [_frame(0, h=4, w=6), _frame(1, False, h=4, w=6)]
    ds = RGBDDataset(root=Path("."), format="memory", class_names=["a", "b", "c"], scenes={"s": frames},
                     splits={}, height=4, width=6)
    oracle = Oracle(ds)
    mask = np.zeros((4, 6), bool)
    mask[:2, :3] = True
    assert oracle.label("s/000", mask)[:2, :3].tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(MissingLabelsError, match="simulated oracle answers from ground truth, but frame s/001 has no "
                                                 "labels"):
        oracle.label("s/001", mask)
    assert oracle.n_answered == 1


def test_pseudo_label_precision_is_measured_on_the_labelled_pool_frames():
    from viewal.nn.pseudo import pseudo_label_items

    model = _tiny_model()
    frames = [_frame(0, False), _frame(1), _frame(2, False)]
    items, stats = pseudo_label_items(model, frames, "confidence", threshold=0.0, mc_passes=1, batch_size=3,
                                      with_precision=True, keep_empty=True)
    assert stats["precision_frames"] == 1 and len(items) == 3
    gt = frames[1].labels
    assert stats["precision"] == pytest.approx(float(np.mean(items[1][1] == gt)))
    assert stats["n_correct"] == int((items[1][1] == gt).sum())
    _, stats = pseudo_label_items(model, [frames[0], frames[2]], "confidence", threshold=0.0, mc_passes=1,
                                  with_precision=True)
    assert stats["precision_frames"] == 0 and "precision" not in stats and stats["coverage"] == 1.0


def test_compare_models_measures_the_labelled_frames_only():
    from viewal.runs.diagnostics import compare_models

    labelled = [_frame(0), _frame(1)]
    mixed = [_frame(9, False), *labelled]
    model = _Constant(2, 3)
    got, want = compare_models({"m": model}, mixed, 3), compare_models({"m": model}, labelled, 3)
    np.testing.assert_array_equal(got["truth"], want["truth"])
    assert got["m"]["miou"] == want["m"]["miou"] == pytest.approx(0.5 / 3)  # IoU of class 2: its share, 1/2
    with pytest.raises(MissingLabelsError, match=r"none of the 1 frames has labels \(e.g. s/009\)"):
        compare_models({"m": model}, mixed[:1], 3)


# ------------------------------------------------------------------------------------------ viewal train

def test_cli_train_refuses_unlabelled_train_frames_and_skips_unlabelled_val(tmp_path, capsys):
    from viewal.cli import main

    data = tmp_path / "data"
    _write_canonical(data, scenes=("a", "b"), n=3, h=32, w=32)
    (data / "a" / "label" / "000001.png").unlink()
    (data / "a" / "label" / "000002.png").unlink()
    shutil.rmtree(data / "b" / "label")  # the val scene has no labels at all
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "2",
            "--encoder", "mobilenet_v2", "--init", "random", "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert ("train frame a/000001 has none (2 of 3 train frames have no labels); label them, or pass "
            "--skip-unlabelled to train on the 1 that have labels") in err
    assert not out.exists()  # nothing written
    assert main(args + ["--skip-unlabelled"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_frames"] == 1 and metrics["train_frames_without_labels"] == 2
    assert metrics["val_frames"] == 0 and metrics["val_frames_without_labels"] == 3
    assert metrics["val_miou"] is None and metrics["best_epoch"] == 1
    printed = capsys.readouterr().out
    assert ("(without labels, left out: 2 train, 3 val; no labelled val frame: no validation, the final weights "
            "are kept)") in printed
    shutil.rmtree(data / "a" / "label")
    assert main(args + ["--skip-unlabelled"]) == 1
    assert "train frame a/000000 has none (3 of 3 train frames have no labels)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ metrics

class _Constant(torch.nn.Module):
    """Predicts class ``k`` everywhere (logits (B, C, H, W))."""

    def __init__(self, k: int, num_classes: int) -> None:
        super().__init__()
        self.k, self.num_classes = k, num_classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.num_classes, x.shape[2], x.shape[3])
        out[:, self.k] = 1.0
        return out


class _LeftRight(_Constant):
    """Class 0 on the left quarter of the image, class 2 elsewhere."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.num_classes, x.shape[2], x.shape[3])
        out[:, 0, :, : x.shape[3] // 4] = 1.0
        out[:, 2, :, x.shape[3] // 4:] = 1.0
        return out


def test_label_class_counts_and_summary():
    maps = [np.array([[0, 2], [255, 2]]), np.full((3, 1), 255), np.array([[3, 3, 0]], np.uint8)]
    np.testing.assert_array_equal(label_class_counts(maps, 5), [2, 0, 2, 2, 0])
    assert label_class_counts(maps, 5).dtype == np.int64
    s = label_summary(maps, 5)
    assert s == {"labelled_pixels": 6, "labelled_frames": 2, "class_pixels": [2, 0, 2, 2, 0], "classes_seen": [0, 2, 3]}
    assert label_summary([], 2) == {"labelled_pixels": 0, "labelled_frames": 0, "class_pixels": [0, 0],
                                    "classes_seen": []}
    with pytest.raises(ValueError, match=r"label map 2 has labels outside 0..2 \(got 0..3; 255 = none\)"):
        label_class_counts(maps, 3)
    with pytest.raises(ValueError, match="label map 0 must be an \\(H, W\\) integer array"):
        label_class_counts([np.zeros((2, 2), np.float32)], 3)


def test_predicted_class_shares_exact():
    frames = [_frame(0, False, h=8, w=8), _frame(1, True, h=8, w=8)]  # labels are not read
    np.testing.assert_array_equal(predicted_class_shares(_Constant(1, 4), frames, 4), [0.0, 1.0, 0.0, 0.0])
    shares = predicted_class_shares(_LeftRight(0, 3), frames, 3, batch_size=1)
    np.testing.assert_allclose(shares, [0.25, 0.0, 0.75])
    assert shares.dtype == np.float64 and shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(predicted_class_shares(_LeftRight(0, 3), frames, 3, size=(4, 12)), [3 / 12, 0, 9 / 12])
    with pytest.raises(ValueError, match="the model predicts 4 classes, num_classes is 3"):
        predicted_class_shares(_Constant(1, 4), frames, 3)
    with pytest.raises(ValueError, match="no frames"):
        predicted_class_shares(_Constant(1, 4), [], 4)


def test_summary_without_ground_truth_has_no_miou():
    test = [_frame(i, False, h=8, w=8) for i in range(3)]
    labels = [np.array([[1, 1], [255, 0]]), np.full((2, 2), 255)]
    out = summary_without_ground_truth(_Constant(2, 3), test, 3, labels)
    assert out == {"labelled_pixels": 3, "labelled_frames": 1, "class_pixels": [1, 2, 0], "classes_seen": [0, 1],
                   "predicted_frames": 3, "predicted_class_shares": [0.0, 0.0, 1.0]}
    assert not any("miou" in k.lower() for k in out)
    assert json.loads(json.dumps(out)) == out
