"""Canonical layout: writer/reader round trip, resizing, split helpers, bad input."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from viewal.core import geometry as g
from viewal.datasets import DatasetError, Frame, open_dataset
from viewal.datasets.canonical import (
    default_splits,
    load_depth_png,
    read_canonical,
    resize_nearest,
    select_frames,
    write_frame,
    write_meta,
    write_scene_intrinsics,
)

K = np.array([[300.0, 0, 159.5], [0, 310.0, 119.5], [0, 0, 1]])


def _pose(i):
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.array([0.1, 0.3 * i, 0.05]))[0]
    T[:3, 3] = (i, 0.5, -1.0)
    return T


def _write_dataset(root, scenes=("a", "b"), n=3, size=(240, 320)):
    rng = np.random.default_rng(0)
    truth = {}
    for sid in scenes:
        write_scene_intrinsics(root, sid, K)
        for i in range(n):
            rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            depth = rng.uniform(0.5, 5.0, size=size).astype(np.float32)
            depth[rng.random(size) < 0.1] = 0
            labels = rng.integers(0, 4, size=size)
            labels[0, :] = 255
            write_frame(root, sid, f"{i:06d}", rgb=rgb, depth=depth, world_T_cam=_pose(i), labels=labels,
                        color_ext=".png")
            truth[f"{sid}/{i:06d}"] = (rgb, depth, labels)
    write_meta(root, class_names=["w", "x", "y", "z"], height=size[0], width=size[1],
               splits={"train": ["a"], "val": ["b/000000"] if "b" in scenes else [],
                       "test": ["b/000001", "b/000002"] if "b" in scenes else []})
    return truth


def test_round_trip(tmp_path):
    truth = _write_dataset(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.format == "viewal" and ds.scene_ids == ["a", "b"] and ds.num_classes == 4 and len(ds) == 6
    assert [f.key for f in ds.split("train")] == ["a/000000", "a/000001", "a/000002"]
    assert [f.key for f in ds.split("test")] == ["b/000001", "b/000002"]
    for key, (rgb, depth, labels) in truth.items():
        f = ds.frame(key)
        assert isinstance(f, Frame)
        np.testing.assert_array_equal(f.rgb, rgb)
        np.testing.assert_allclose(f.depth, depth, atol=5e-4)  # millimetre rounding
        assert ((f.depth == 0) == (depth == 0)).all()
        np.testing.assert_array_equal(f.labels, labels)
        np.testing.assert_allclose(f.K, K)
        i = int(key[-1])
        np.testing.assert_allclose(f.world_T_cam, _pose(i), atol=1e-8)


def test_working_size_resizes_nearest_and_scales_K(tmp_path):
    truth = _write_dataset(tmp_path, scenes=("a",), n=1)
    f = read_canonical(tmp_path, height=120, width=160).frame("a/000000")
    rgb, depth, labels = truth["a/000000"]
    mm = np.round(depth * 1000).astype(np.uint16).astype(np.float32) / 1000
    np.testing.assert_array_equal(f.depth, mm[1::2, 1::2])  # nearest at pixel centres, no interpolation
    np.testing.assert_array_equal(f.labels, labels[1::2, 1::2])
    np.testing.assert_allclose(f.K, g.scale_intrinsics(K, (240, 320), (120, 160)))
    np.testing.assert_allclose(f.K[0, 2], 79.5)
    assert f.rgb.shape == (120, 160, 3)


def test_resize_nearest_samples_pixel_centres():
    a = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(resize_nearest(a, (6, 8)), np.repeat(np.repeat(a, 2, 0), 2, 1))
    np.testing.assert_array_equal(resize_nearest(np.arange(6)[None], (1, 3)), [[1, 3, 5]])


def test_nonfinite_pose_skipped_with_warning(tmp_path):
    _write_dataset(tmp_path, scenes=("a", "b"))
    (tmp_path / "a" / "pose" / "000001.txt").write_text("-inf -inf -inf -inf\n" * 4)
    meta = json.loads((tmp_path / "viewal.json").read_text())
    meta["splits"]["train"] = ["a"]
    (tmp_path / "viewal.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match=r"skipped 1 frame.*000001\.txt"):
        ds = open_dataset(tmp_path)
    assert [f.frame_id for f in ds.frames("a")] == ["000000", "000002"]


def test_bad_inputs_name_the_file(tmp_path):
    _write_dataset(tmp_path, scenes=("a",), n=2)
    cv2.imwrite(str(tmp_path / "a" / "label" / "000001.png"), np.full((240, 320), 7, np.uint8))
    with pytest.raises(DatasetError, match=r"000001\.png: label values \[7\]"):
        open_dataset(tmp_path).frame("a/000001").labels
    cv2.imwrite(str(tmp_path / "a" / "depth" / "000001.png"), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"depth[/\\]000001\.png.*single-channel"):
        open_dataset(tmp_path).frame("a/000001").depth
    (tmp_path / "a" / "depth" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000001\.png"):
        open_dataset(tmp_path)
    with pytest.raises(ValueError, match="labels of a/x: shape"):
        write_frame(tmp_path, "a", "x", rgb=np.zeros((4, 5, 3), np.uint8), depth=np.ones((4, 5)),
                    world_T_cam=np.eye(4), labels=np.zeros((5, 4)))
    (tmp_path / "viewal.json").write_text('{"class_names": ["a"]}')
    with pytest.raises(DatasetError, match=r"viewal\.json: missing key 'splits'"):
        open_dataset(tmp_path)


def test_float_depth_file_with_nan_is_an_error(tmp_path):
    d = np.ones((8, 8), np.float32)
    d[2, 2] = np.nan
    cv2.imwrite(str(tmp_path / "d.tiff"), d)
    with pytest.raises(g.GeometryError, match=r"d\.tiff.*1 NaN"):
        load_depth_png(tmp_path / "d.tiff", 1000.0)


def _scenes(names, n=1):
    return {s: [Frame(s, str(i), rgb=None, depth=None, K=None, world_T_cam=None) for i in range(n)] for s in names}


def test_default_splits_rules():
    sp = default_splits(_scenes([f"s{i}" for i in range(10)]))
    scn = {k: [key.split("/")[0] for key in v] for k, v in sp.items()}
    assert scn == {"train": [f"s{i}" for i in range(6)], "val": ["s6", "s7"], "test": ["s8", "s9"]}
    sp = default_splits(_scenes(["x", "y"], n=2))
    assert sp == {"train": ["x/0", "x/1"], "val": ["y/0", "y/1"], "test": ["y/0", "y/1"]}
    sp = default_splits(_scenes(["only"], n=20))
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (14, 3, 3)
    assert sp["test"][-1] == "only/19" and not set(sp["train"]) & set(sp["test"])


def test_select_frames():
    ids = [str(i) for i in range(80)]
    assert select_frames(ids, 35) == ["0", "35", "70"]
    assert select_frames(["a", "b", "c", "d"], 2) == ["a", "c"]
    with pytest.raises(ValueError, match="frame_skip"):
        select_frames(ids, 0)


def test_every_keeps_every_kth_frame_and_its_splits(tmp_path):
    from viewal.datasets import open_dataset
    from viewal.datasets.synthetic import generate_dataset

    root = generate_dataset(tmp_path / "d", scenes=3, frames=5, height=32, width=48, seed=0, progress=False)
    ds = open_dataset(root)
    sub = ds.every(2)
    for sid in ds.scene_ids:
        assert [f.frame_id for f in sub.frames(sid)] == [f.frame_id for f in ds.frames(sid)][::2]
    assert len(sub.split("train")) == sum(len(sub.frames(s)) for s in sub.split_scenes("train"))
    assert {f.key for f in sub.split("test")} <= {f.key for f in ds.split("test")}
