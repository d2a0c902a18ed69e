"""Dataset loaders on small files written in each dataset's exact layout, and on the real ScanNet sample.

Every synthetic check of geometry is independent of the loader's formulas: a world point is built
from the *native* intrinsics and the pose as the dataset stores them, and must come back at the
working-size pixel whose centre maps onto it.
"""
from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from viewal.core import geometry as g
from viewal.datasets import DatasetError, open_dataset
from viewal.datasets.canonical import load_depth_png, resize_nearest, viewal_label_shift
from viewal.datasets.matterport import GL_TO_CV
from viewal.datasets.scannet import NYU40_CLASSES
from viewal.datasets.scenenet import NYU13_CLASSES, SCENENET_K, lookat_pose
from viewal.datasets.viewal_original import load_viewal_superpixels

WORK = (240, 320)


# ------------------------------------------------------------------------------------------ helpers

def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return cv2.Rodrigues(axis * angle)[0]


def _pose(axis=(0.2, 1.0, 0.1), angle=0.4, t=(1.0, -0.5, 2.0)):
    T = np.eye(4)
    T[:3, :3] = _rot(axis, angle)
    T[:3, 3] = t
    return T


def _mat_text(m):
    return "\n".join(" ".join(f"{x:.10g}" for x in row) for row in np.asarray(m)) + "\n"


def _write(path: Path, img: np.ndarray, params=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img, params or [])


def _native_point(K, native_shape, u, v, z):
    """Camera-frame point on the ray of *working* pixel (u, v), at depth z, from the native K."""
    sy, sx = native_shape[0] / WORK[0], native_shape[1] / WORK[1]
    xn, yn = (u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5
    return z * np.linalg.solve(K, np.array([xn, yn, 1.0]))


def _check_point(frame, K_native, native_shape, z, u=200, v=70, atol=2e-3):
    """The working pixel (u, v) of a fronto-parallel plane at z back-projects onto the known world point."""
    Xc = _native_point(K_native, native_shape, u, v, z)
    Xw = frame.world_T_cam[:3, :3] @ Xc + frame.world_T_cam[:3, 3]
    got = g.backproject(frame.depth, frame.K, frame.world_T_cam)[v, u]
    np.testing.assert_allclose(got, Xw, atol=atol)
    pu, pv, pz = g.project(Xw, frame.K, frame.world_T_cam)
    np.testing.assert_allclose([pu, pv, pz], [u, v, z], atol=1e-6)


def _edge_depth(shape, near_mm, far_mm, seed=0):
    """uint16 depth with a vertical step edge and random invalid pixels."""
    rng = np.random.default_rng(seed)
    d = np.full(shape, far_mm, np.uint16)
    d[:, : shape[1] // 2 + 7] = near_mm
    d[rng.random(shape) < 0.05] = 0
    return d


# ------------------------------------------------------------------------------------------ ScanNet

SCANNET_KD = np.array([[577.871, 0, 319.5], [0, 577.871, 239.5], [0, 0, 1.0]])
SCANNET_KC = np.array([[1170.19, 0, 647.75], [0, 1170.19, 483.75], [0, 0, 1.0]])
TSV = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\n"
       "1\twall\twall\t8277\t1\t12\twall\n"
       "2\tchair\tchair\t4646\t5\t4\tchair\n"
       "40\tstuff\tstuff\t10\t40\t7\totherprop\n"
       "41\tobject\tobject\t10\t0\t0\t\n")


def _make_scannet(root: Path, scene="scene0000_00", n=4, inf_frames=(), plane_mm=2000, color_full=False,
                  labels=True, tsv=True):
    s = root / scene
    (s / "intrinsic").mkdir(parents=True, exist_ok=True)
    for name, K in (("intrinsic_depth.txt", SCANNET_KD), ("intrinsic_color.txt", SCANNET_KC)):
        m = np.eye(4)
        m[:3, :3] = K
        (s / "intrinsic" / name).write_text(_mat_text(m))
    (s / "pose").mkdir(exist_ok=True)
    rgb_small = np.full((24, 32, 3), (10, 200, 30), np.uint8)  # cheap colour (resized anyway)
    for i in range(n):
        rgb = np.full((968, 1296, 3), (10, 200, 30), np.uint8) if (color_full and i == 0) else rgb_small
        _write(s / "color" / f"{i}.jpg", np.ascontiguousarray(rgb[..., ::-1]))  # file holds BGR
        _write(s / "depth" / f"{i}.png", np.full((480, 640), plane_mm, np.uint16))
        T = np.full((4, 4), -np.inf) if i in inf_frames else _pose(t=(0.1 * i, 0, 0))
        (s / "pose" / f"{i}.txt").write_text(_mat_text(T))
        if labels:
            lab = np.zeros((968, 1296), np.uint16)
            lab[:, 300:600] = 1
            lab[:, 600:900] = 2
            lab[:, 900:1000] = 40
            lab[:, 1000:1100] = 41
            lab[:, 1100:] = 999
            _write(s / "label-filt" / f"{i}.png", lab)
    if tsv:
        (root / "scannetv2-labels.combined.tsv").write_text(TSV)
    return s


def test_scannet_export_geometry_labels_and_sizes(tmp_path):
    _make_scannet(tmp_path, color_full=True)
    ds = open_dataset(tmp_path)  # auto-detected
    assert ds.format == "scannet" and ds.class_names == NYU40_CLASSES and ds.num_classes == 40
    f = ds.frames("scene0000_00")[0]
    assert f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8
    np.testing.assert_allclose(f.rgb[120, 160], (10, 200, 30), atol=6)  # 1296x968 colour resized
    assert f.depth.shape == WORK and f.depth.dtype == np.float32
    np.testing.assert_allclose(f.depth, 2.0)  # millimetres -> metres
    # depth intrinsics scaled 640x480 -> 320x240 (integer pixel centres): cx' = (319.5 + 0.5)/2 - 0.5
    np.testing.assert_allclose(f.K, [[288.9355, 0, 159.5], [0, 288.9355, 119.5], [0, 0, 1]], atol=1e-9)
    np.testing.assert_allclose(f.world_T_cam, _pose(t=(0, 0, 0)))
    _check_point(f, SCANNET_KD, (480, 640), 2.0)
    lab = f.labels
    assert lab.dtype == np.int64 and lab.shape == WORK
    # columns of the 1296-wide label map, nearest-sampled at the 320-wide working size
    col = lambda c: int((c + 0.5) * 1296 / 320)  # noqa: E731
    expect = {0: 255, 300: 0, 600: 4, 900: 39, 1000: 255, 1100: 255}  # raw 0, wall, chair, otherprop, nyu 0, unknown
    for c in range(320):
        raw_col = col(c)
        start = max(k for k in expect if k <= raw_col)
        assert (lab[:, c] == expect[start]).all(), (c, raw_col, np.unique(lab[:, c]))


def test_scannet_depth_nearest_never_interpolates(tmp_path):
    s = _make_scannet(tmp_path, n=1, labels=False)
    raw = _edge_depth((480, 640), 1234, 3456)
    _write(s / "depth" / "0.png", raw)
    d = open_dataset(tmp_path, format="scannet").frames("scene0000_00")[0].depth
    assert set(np.unique(d).tolist()) <= {0.0, np.float32(1.234), np.float32(3.456)}
    assert (d == 0).any()  # invalid stays invalid
    rows = ((np.arange(240) + 0.5) * 2).astype(int)
    cols = ((np.arange(320) + 0.5) * 2).astype(int)
    np.testing.assert_array_equal(d, raw[rows][:, cols].astype(np.float32) / 1000)


def test_scannet_inf_pose_skipped_frame_skip_and_splits(tmp_path):
    _make_scannet(tmp_path, "scene0000_00", n=6, inf_frames=(2, 3), labels=False)
    _make_scannet(tmp_path, "scene0001_00", n=2, labels=False)
    _make_scannet(tmp_path, "scene0002_00", n=2, labels=False)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0999_00\n")  # absent scene dropped
    (tmp_path / "scannetv2_val.txt").write_text("scene0001_00\n")
    with pytest.warns(UserWarning, match=r"skipped 2 frame.*pose[/\\]2\.txt"):
        ds = open_dataset(tmp_path, format="scannet")
    assert [f.frame_id for f in ds.frames("scene0000_00")] == ["0", "1", "4", "5"]
    assert [f.key for f in ds.split("train")] == ["scene0000_00/0", "scene0000_00/1", "scene0000_00/4",
                                                  "scene0000_00/5"]
    assert [f.scene_id for f in ds.split("val")] == ["scene0001_00"] * 2
    assert ds.splits["test"] == []
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        ds2 = open_dataset(tmp_path, format="scannet", frame_skip=2, splits={"train": ["scene0002_00"]})
    assert [f.frame_id for f in ds2.frames("scene0000_00")] == ["0", "4"]  # every 2nd id, -inf id 2 skipped
    assert ds2.splits == {"train": ["scene0002_00/0"], "val": [], "test": []}


def test_scannet_default_splits_keep_rescans_together(tmp_path):
    for sid in ("scene0000_00", "scene0000_01", "scene0001_00", "scene0002_00", "scene0003_00"):
        _make_scannet(tmp_path, sid, n=1, labels=False)
    ds = open_dataset(tmp_path, format="scannet")
    by = {k: sorted({f.scene_id for f in ds.split(k)}) for k in ("train", "val", "test")}
    assert by == {"train": ["scene0000_00", "scene0000_01", "scene0001_00"], "val": ["scene0002_00"],
                  "test": ["scene0003_00"]}


def test_scannet_labels_without_tsv_is_a_clear_error(tmp_path):
    _make_scannet(tmp_path, n=1, tsv=False)
    with pytest.raises(FileNotFoundError, match="scannetv2-labels.combined.tsv.*label_map="):
        open_dataset(tmp_path, format="scannet")
    (tmp_path / "my.tsv").write_text(TSV)
    ds = open_dataset(tmp_path, format="scannet", label_map=tmp_path / "my.tsv")
    assert ds.frames("scene0000_00")[0].labels[0, 100] == 0  # raw 1 = wall
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(DatasetError, match="bad.tsv.*nyu40id"):
        open_dataset(tmp_path, format="scannet", label_map=tmp_path / "bad.tsv")


def test_scannet_bad_inputs_name_the_file(tmp_path):
    s = _make_scannet(tmp_path, n=2, labels=False)
    (s / "pose" / "1.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"pose[/\\]1\.txt"):
        open_dataset(tmp_path, format="scannet")
    T = _pose()
    T[:3, :3] *= 1.2
    (s / "pose" / "1.txt").write_text(_mat_text(T))
    with pytest.raises(g.GeometryError, match=r"pose[/\\]1\.txt.*not rigid"):
        open_dataset(tmp_path, format="scannet")
    (s / "pose" / "1.txt").write_text(_mat_text(_pose()))
    _write(s / "depth" / "1.png", np.zeros((240, 320), np.uint16))  # depth of the wrong size
    ds = open_dataset(tmp_path, format="scannet")
    with pytest.raises(DatasetError, match=r"depth[/\\]1\.png.*320x240, expected 640x480"):
        ds.frames("scene0000_00")[1].depth


# ------------------------------------------------------------------------------------------ SceneNet

def _make_scenenet(root: Path, traj="0/7", frames=(0, 25), z=2.5, labels="class13", pose_style="lookat"):
    t = root / traj
    lines = []
    K = SCENENET_K
    u, v = g.pixel_grid(240, 320)
    ray = z * np.sqrt(1 + ((u - K[0, 2]) / K[0, 0]) ** 2 + ((v - K[1, 2]) / K[1, 1]) ** 2)
    for i, n in enumerate(frames):
        _write(t / "photo" / f"{n}.jpg", np.full((240, 320, 3), 90, np.uint8))
        _write(t / "depth" / f"{n}.png", np.round(ray * 1000).astype(np.uint16))
        cam = np.array([1.0 + 0.2 * i, 1.2, -0.5])
        look = cam + np.array([0.3, -0.2, 1.0])
        if pose_style == "lookat":
            lines.append(f"{n} " + " ".join(f"{x:.9g}" for x in (*cam, *look)))
        else:
            (t / "pose").mkdir(parents=True, exist_ok=True)
            (t / "pose" / f"{n}.txt").write_text(_mat_text(lookat_pose(cam, look)))
        if labels == "class13":
            lab = np.zeros((240, 320), np.uint8)
            lab[:, 100:] = 1   # bed
            lab[:, 200:] = 13  # window
            _write(t / "class13" / f"{n}.png", lab)
        elif labels == "instance":
            inst = np.zeros((240, 320), np.uint16)
            inst[:, 100:] = 3
            inst[:, 200:] = 700
            _write(t / "instance" / f"{n}.png", inst)
    if pose_style == "lookat":
        (t / "poses.txt").write_text("\n".join(lines) + "\n")
    if labels == "instance":
        (t / "instance_class13.txt").write_text("3 12\n700 4\n")
    return t


def test_scenenet_depth_ray_to_z_intrinsics_pose_labels(tmp_path):
    _make_scenenet(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.format == "scenenet" and ds.scene_ids == ["0_7"] and ds.class_names == NYU13_CLASSES
    f = ds.frames("0_7")[1]
    assert f.frame_id == "25"
    np.testing.assert_allclose(f.K, [[277.128, 0, 160], [0, 289.706, 120], [0, 0, 1]], atol=1e-3)
    np.testing.assert_allclose(f.depth, 2.5, atol=6e-4)  # ray length (mm) -> z (m), 1 mm rounding
    # pose from camera position + look-at: the optical axis points at the look-at point, y points down
    cam = np.array([1.2, 1.2, -0.5])
    np.testing.assert_allclose(f.world_T_cam[:3, 3], cam)
    d = np.array([0.3, -0.2, 1.0])
    np.testing.assert_allclose(f.world_T_cam[:3, 2], d / np.linalg.norm(d))
    assert f.world_T_cam[1, 1] < 0  # camera y (down) has a negative world-y (up) component
    _check_point(f, SCENENET_K, (240, 320), 2.5, atol=2e-3)
    np.testing.assert_array_equal(np.unique(f.labels[:, :100]), [255])
    np.testing.assert_array_equal(np.unique(f.labels[:, 100:200]), [0])   # bed
    np.testing.assert_array_equal(np.unique(f.labels[:, 200:]), [12])     # window
    # ViewAL's reading takes the file as z: corners then overestimate depth by the ray factor
    fz = open_dataset(tmp_path, format="scenenet", depth_kind="z").frames("0_7")[0]
    assert fz.depth[0, 0] > 1.2 * 2.5 and abs(fz.depth[120, 160] - 2.5) < 1e-3


def test_scenenet_instance_labels_pose_files_and_resize(tmp_path):
    _make_scenenet(tmp_path, traj="traj_a", labels="instance", pose_style="files")
    ds = open_dataset(tmp_path, format="scenenet", height=120, width=160)
    f = ds.frames("traj_a")[0]
    assert f.depth.shape == (120, 160) and f.rgb.shape == (120, 160, 3)
    np.testing.assert_allclose(f.K[0, 0], 277.1281292110204 / 2)
    lab = f.labels
    assert set(np.unique(lab[:, :50]).tolist()) == {255}
    assert set(np.unique(lab[:, 50:100]).tolist()) == {11}  # instance 3 -> NYU13 12 (wall) -> 11
    assert set(np.unique(lab[:, 100:]).tolist()) == {3}     # instance 700 -> NYU13 4 (chair) -> 3


def test_scenenet_bad_inputs(tmp_path):
    t = _make_scenenet(tmp_path, traj="t0")
    (t / "poses.txt").write_text("0 1 2 3\n")
    with pytest.raises(DatasetError, match=r"poses\.txt:1"):
        open_dataset(tmp_path, format="scenenet")
    (t / "poses.txt").write_text("0 0 0 0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"poses\.txt.*frame 25"):
        open_dataset(tmp_path, format="scenenet")
    (t / "poses.txt").unlink()
    with pytest.raises(FileNotFoundError, match="poses.txt"):
        open_dataset(tmp_path, format="scenenet")


# ------------------------------------------------------------------------------------------ Matterport

MP_K = np.array([[1075.4, 0, 629.7], [0, 1075.1, 522.3], [0, 0, 1.0]])


def _make_matterport(root: Path, house="17DRP5sb8fy", z=3.0, n=2, labels=True):
    h = root / house
    lines = ["dataset matterport", f"n_images {n}", "depth_directory undistorted_depth_images",
             "color_directory undistorted_color_images",
             "intrinsics_matrix " + " ".join(f"{x:.9g}" for x in MP_K.ravel())]
    poses_gl = []
    for i in range(n):
        pano = f"a1b2c3d4{i}"
        color, depth = f"{pano}_i1_{i}.jpg", f"{pano}_d1_{i}.png"
        rgb = np.full((1024, 1280, 3), 40, np.uint8) if i == 0 else np.full((64, 80, 3), 40, np.uint8)
        _write(h / "undistorted_color_images" / color, rgb)
        _write(h / "undistorted_depth_images" / depth, np.full((1024, 1280), int(z * 4000), np.uint16))
        M = _pose(axis=(0, 0, 1), angle=0.3 * i, t=(2.0, 1.0 + i, 1.5))  # a camera-to-world pose, OpenGL camera
        poses_gl.append(M)
        lines.append(f"scan {depth} {color} " + " ".join(f"{x:.10g}" for x in M.ravel()))
        if labels:
            lab = np.zeros((1024, 1280), np.uint8)
            lab[:512] = 22  # ceiling
            lab[512:] = 2   # floor
            _write(h / "label_nyu40" / f"{pano}_i1_{i}.png", lab)
    (h / "undistorted_camera_parameters").mkdir(parents=True, exist_ok=True)
    (h / "undistorted_camera_parameters" / f"{house}.conf").write_text("\n".join(lines) + "\n")
    return h, poses_gl


def test_matterport_units_intrinsics_opengl_pose_and_labels(tmp_path):
    _, poses_gl = _make_matterport(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.format == "matterport" and ds.scene_ids == ["17DRP5sb8fy"] and ds.num_classes == 40
    f = ds.frames("17DRP5sb8fy")[0]
    assert f.frame_id == "a1b2c3d40_i1_0"
    np.testing.assert_allclose(f.depth, 3.0)  # 0.25 mm units
    s_x, s_y = 320 / 1280, 240 / 1024
    np.testing.assert_allclose(f.K, [[1075.4 * s_x, 0, (629.7 + .5) * s_x - .5],
                                     [0, 1075.1 * s_y, (522.3 + .5) * s_y - .5], [0, 0, 1]], atol=1e-9)
    # independent check of the camera convention: a point 0.3 m right of and 0.2 m *above* the axis of
    # the OpenGL camera (which looks down -z, y up), 3 m ahead ...
    M = poses_gl[0]
    Xw = M[:3, :3] @ np.array([0.3, 0.2, -3.0]) + M[:3, 3]
    # ... must appear right of and above (smaller row than) the principal point
    u_nat, v_nat = 629.7 + 1075.4 * 0.3 / 3, 522.3 - 1075.1 * 0.2 / 3
    u, v, z = g.project(Xw, f.K, f.world_T_cam)
    np.testing.assert_allclose([u, v, z], [(u_nat + .5) * s_x - .5, (v_nat + .5) * s_y - .5, 3.0], atol=1e-6)
    np.testing.assert_allclose(f.world_T_cam, M @ GL_TO_CV)
    _check_point(f, MP_K, (1024, 1280), 3.0)
    lab = f.labels
    assert (lab[:120] == 21).all() and (lab[120:] == 1).all()


def test_matterport_bad_inputs(tmp_path):
    h, _ = _make_matterport(tmp_path, n=2, labels=False)
    conf = h / "undistorted_camera_parameters" / "17DRP5sb8fy.conf"
    text = conf.read_text()
    (h / "undistorted_depth_images" / "a1b2c3d41_d1_1.png").rename(h / "x.png")
    with pytest.raises(FileNotFoundError, match=r"17DRP5sb8fy\.conf:7.*a1b2c3d41_d1_1\.png"):
        open_dataset(tmp_path, format="matterport")
    (h / "x.png").rename(h / "undistorted_depth_images" / "a1b2c3d41_d1_1.png")
    conf.write_text(text.replace("scan a1b2c3d41_d1_1.png a1b2c3d41_i1_1.jpg 0.955",
                                 "scan a1b2c3d41_d1_1.png a1b2c3d41_i1_1.jpg 1.955"))
    with pytest.raises(g.GeometryError, match=r"\.conf:7.*not rigid"):
        open_dataset(tmp_path, format="matterport")
    conf.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("intrinsics")))
    with pytest.raises(DatasetError, match="before any intrinsics_matrix"):
        open_dataset(tmp_path, format="matterport")


# ------------------------------------------------------------------------------------------ ViewAL original

INFO = """m_versionNumber = 4
m_sensorName = StructureSensor
m_colorWidth = 1296
m_colorHeight = 968
m_depthWidth = 640
m_depthHeight = 480
m_depthShift = 1000
m_calibrationColorIntrinsic = 1170.19 0 647.75 0 0 1170.19 483.75 0 0 0 1 0 0 0 0 1
m_calibrationDepthIntrinsic = 577.871 0 319.5 0 0 577.871 239.5 0 0 0 1 0 0 0 0 1
m_frames.size = 1041
"""


def _make_viewal(root: Path, scenes=(("scene0007_00", ("000000", "000035")), ("scene0014_00", ("000070",))),
                 z_mm=1800):
    sel = root / "raw" / "selections"
    names = []
    for sid, fids in scenes:
        (sel / "info").mkdir(parents=True, exist_ok=True)
        (sel / "info" / f"{sid}.txt").write_text(INFO)
        for k, fid in enumerate(fids):
            name = f"{sid}_{fid}"
            names.append(name)
            _write(sel / "color" / f"{name}.jpg", np.full((240, 320, 3), 128, np.uint8))
            _write(sel / "depth" / f"{name}.pgm", np.full((480, 640), z_mm, np.uint16))
            lab = np.zeros((240, 320), np.uint8)
            lab[:, 160:] = 40
            lab[:, 100:160] = 1
            _write(sel / "label" / f"{name}.png", lab)
            (sel / "pose").mkdir(parents=True, exist_ok=True)
            (sel / "pose" / f"{name}.txt").write_text(_mat_text(_pose(t=(0, 0.3 * k, 1))))
            sp = (np.arange(320)[None, :] // 40 + 8 * (np.arange(240)[:, None] // 60)).astype(np.uint16)
            _write(sel / "superpixel" / f"{name}.png", sp)
    sdir = root / "selections"
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "train_frames.txt").write_text("\n".join(names[:2]) + "\n")
    (sdir / "val_frames.txt").write_text(names[2] + "\n")
    (sdir / "test_frames.txt").write_text(names[2] + "\n")
    (sdir / "seedset_0_frames.txt").write_text(names[0] + "\n")
    return sel, names


def test_viewal_original_layout(tmp_path):
    _make_viewal(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.format == "viewal-original"
    assert ds.scene_ids == ["scene0007_00", "scene0014_00"]
    assert [f.frame_id for f in ds.frames("scene0007_00")] == ["000000", "000035"]
    assert ds.splits == {"train": ["scene0007_00/000000", "scene0007_00/000035"], "val": ["scene0014_00/000070"],
                         "test": ["scene0014_00/000070"]}
    assert ds.meta["seed_sets"] == {"seedset_0": ["scene0007_00/000000"]}
    f = ds.frame("scene0007_00/000035")
    np.testing.assert_allclose(f.depth, 1.8)
    np.testing.assert_allclose(f.K, [[288.9355, 0, 159.5], [0, 288.9355, 119.5], [0, 0, 1]])
    _check_point(f, np.array([[577.871, 0, 319.5], [0, 577.871, 239.5], [0, 0, 1]]), (480, 640), 1.8)
    lab = f.labels
    assert (lab[:, :100] == 255).all() and (lab[:, 100:160] == 0).all() and (lab[:, 160:] == 39).all()
    sp = load_viewal_superpixels(ds, f)
    assert sp.dtype == np.int32 and sp.shape == WORK and sp[239, 319] == 7 + 8 * 3
    assert np.array_equal(load_viewal_superpixels(ds, "scene0007_00/000000"), sp)


def test_viewal_original_bad_inputs(tmp_path):
    sel, names = _make_viewal(tmp_path)
    _write(sel / "label" / f"{names[1]}.png", np.zeros((480, 640), np.uint8))  # label size != colour size
    ds = open_dataset(tmp_path, format="viewal-original")
    with pytest.raises(DatasetError, match=rf"{names[1]}\.png: label image is 640x480, expected 320x240"):
        ds.frame("scene0007_00/000035").labels
    _write(sel / "color" / f"{names[0]}.jpg", np.zeros((480, 640, 3), np.uint8))  # colour of the wrong size
    with pytest.raises(DatasetError, match=rf"{names[0]}\.jpg: colour image is 640x480, expected 320x240"):
        ds.frame("scene0007_00/000000").rgb
    (sel / "pose" / f"{names[2]}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{names[2]}\.txt"):
        open_dataset(tmp_path, format="viewal-original")
    T = _pose()
    T[0, 1] += 0.3
    (sel / "pose" / f"{names[2]}.txt").write_text(_mat_text(T))
    with pytest.raises(g.GeometryError, match=rf"{names[2]}\.txt.*not rigid"):
        open_dataset(tmp_path, format="viewal-original")
    (sel / "pose" / f"{names[2]}.txt").write_text(_mat_text(np.full((4, 4), -np.inf)))
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        ds = open_dataset(tmp_path, format="viewal-original")  # split entries of a skipped frame are dropped
    assert ds.splits["val"] == [] and len(ds) == 2
    (tmp_path / "selections" / "val_frames.txt").write_text("scene0099_00_000001\n")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match=r"val_frames\.txt:1.*scene0099_00_000001"):
        open_dataset(tmp_path, format="viewal-original")


def _fake_lmdb(entries: dict):
    class Txn:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def get(self, key):
            return entries.get(key)

    class Env:
        def begin(self, write=False):
            return Txn()

    mod = types.ModuleType("lmdb")
    mod.open = lambda *a, **k: Env()
    return mod


def test_viewal_original_lmdb_is_opt_in(tmp_path, monkeypatch):
    import shutil

    sel, names = _make_viewal(tmp_path)
    shutil.rmtree(sel / "color")
    shutil.rmtree(sel / "label")
    rgbl = np.zeros((240, 320, 4), np.uint8)
    rgbl[..., :3] = (1, 2, 3)
    rgbl[..., 3] = 255
    rgbl[:, 100:, 3] = 5  # already shifted by ViewAL's to_lmdb
    entries = {b"__keys__": pickle.dumps([n.encode() for n in names])}
    entries.update({n.encode(): pickle.dumps(rgbl) for n in names})
    (tmp_path / "dataset.lmdb").write_bytes(b"not read without opt-in")
    with pytest.raises(DatasetError, match="pickles.*allow_pickle=True"):
        open_dataset(tmp_path, format="viewal-original")
    monkeypatch.setitem(sys.modules, "lmdb", None)  # not installed
    with pytest.raises(ImportError, match="dataset.lmdb.*'lmdb' package"):
        open_dataset(tmp_path, format="viewal-original", allow_pickle=True)
    monkeypatch.setitem(sys.modules, "lmdb", _fake_lmdb(entries))
    ds = open_dataset(tmp_path, format="viewal-original", allow_pickle=True)
    assert ds.meta["source"] == "lmdb" and len(ds) == 3
    f = ds.frame("scene0014_00/000070")
    assert (f.rgb == (1, 2, 3)).all() and f.rgb.dtype == np.uint8
    assert (f.labels[:, :100] == 255).all() and (f.labels[:, 100:] == 5).all()
    np.testing.assert_allclose(f.depth, 1.8)


# ------------------------------------------------------------------------------------------ common

def test_nan_depth_in_float_file_names_the_file(tmp_path):
    d = np.full((48, 64), 2.0, np.float32)
    d[3, 4] = np.nan
    _write(tmp_path / "depth.tiff", d)
    with pytest.raises(g.GeometryError, match=r"depth\.tiff.*NaN"):
        load_depth_png(tmp_path / "depth.tiff", 1000.0)
    d[3, 4] = 0.5
    _write(tmp_path / "ok.tiff", d)
    out = load_depth_png(tmp_path / "ok.tiff", 1000.0, (24, 32))
    assert out.dtype == np.float32 and set(np.unique(out).tolist()) <= {0.5, 2.0}


def test_unknown_format_and_undetectable_directory(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'nyu'.*'scannet'"):
        open_dataset(tmp_path, format="nyu")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path}.*cannot tell the dataset format"):
        open_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        open_dataset(tmp_path / "does-not-exist")


def test_viewal_label_shift_matches_viewal():
    raw = np.array([0, 1, 2, 39, 40, 41, 255])
    np.testing.assert_array_equal(viewal_label_shift(raw), [255, 0, 1, 38, 39, 255, 255])


# ------------------------------------------------------------------------------------------ real sample

def test_real_sample_reads_as_viewal_stored_it(scannet_sample):
    ds = open_dataset(scannet_sample)
    assert ds.format == "viewal-original" and len(ds) == 37
    assert {s: len(ds.frames(s)) for s in ds.scene_ids} == {"scene0007_00": 10, "scene0014_00": 27}
    sdir = Path(scannet_sample) / "selections"
    for name in ("train", "val", "test"):
        n = len([ln for ln in (sdir / f"{name}_frames.txt").read_text().split() if ln])
        assert len(ds.split(name)) == n
    assert (len(ds.split("train")), len(ds.split("val"))) == (32, 5)
    assert ds.meta["seed_sets"]["seedset_0"] == ["scene0007_00/000000"]
    f = ds.frame("scene0007_00/000035")
    assert f.frame_id == "000035" and f.rgb.shape == (240, 320, 3)
    assert f.depth.shape == WORK and f.depth.dtype == np.float32
    raw = cv2.imread(str(Path(scannet_sample) / "raw/selections/depth/scene0007_00_000035.pgm"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(f.depth, resize_nearest(raw, WORK).astype(np.float32) / 1000)  # no interpolation
    assert (f.depth == 0).sum() == (resize_nearest(raw, WORK) == 0).sum() > 0  # invalid kept 0
    np.testing.assert_allclose(f.K[0, 0], 577.871 / 2)
    values = set()
    for fr in ds.all_frames():
        values |= set(np.unique(fr.labels).tolist())
    assert values == {0, 1, 2, 7, 8, 27, 28, 32, 33, 37, 38, 39, 255}  # raw NYU40 {0,1,2,3,8,9,...,40} shifted
    sp = load_viewal_superpixels(ds, f)
    assert sp.dtype == np.int32 and sp.shape == WORK and 20 <= len(np.unique(sp)) <= 60


def _reprojection_error(a, b, world_T_cam_a=None):
    X = g.backproject(a.depth, a.K, a.world_T_cam if world_T_cam_a is None else world_T_cam_a).reshape(-1, 3)
    X = X[np.isfinite(X).all(1)]
    u, v, z = g.project(X, b.K, b.world_T_cam)
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    ok = (z > 0) & (ui >= 0) & (ui < b.depth.shape[1]) & (vi >= 0) & (vi < b.depth.shape[0])
    D = b.depth[vi[ok], ui[ok]]
    err = np.abs(z[ok] - D)[D > 0]
    return err, ok.mean()


def test_real_sample_consecutive_frames_are_geometrically_consistent(scannet_sample):
    ds = open_dataset(scannet_sample)
    checked, bad_agree = 0, []
    for sid in ds.scene_ids:
        frames = ds.frames(sid)
        for a, b in zip(frames[:-1], frames[1:]):
            if int(b.frame_id) - int(a.frame_id) != 35:  # every 35th frame: neighbours overlap strongly
                continue
            err, in_view = _reprojection_error(a, b)
            assert in_view > 0.3, (a.key, b.key, in_view)
            assert np.median(err) < 0.03, (a.key, b.key, np.median(err))
            assert (err < 0.1).mean() > 0.8
            # the check can fail: a pose off by 30 cm makes far fewer points agree
            T = a.world_T_cam.copy()
            T[:3, 3] += (0.3, 0.0, 0.0)
            bad, _ = _reprojection_error(a, b, T)
            bad_agree.append((bad < 0.1).mean() if bad.size else 0.0)
            checked += 1
    assert checked >= 10
    assert np.mean(bad_agree) < 0.6
