"""The synthetic generator: determinism, depth convention, multi-view label consistency, classes, I/O."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from viewal.core import geometry as g
from viewal.datasets import open_dataset
from viewal.datasets import synthetic as syn

H, W = 60, 80


@pytest.fixture(scope="module")
def two_rooms(tmp_path_factory) -> Path:
    """2 synthetic rooms x 4 frames of HxW pixels (seed 3)."""
    return syn.generate_dataset(tmp_path_factory.mktemp("syn") / "a", scenes=2, frames=4, height=H, width=W, seed=3,
                                progress=False)


@pytest.fixture(scope="module")
def room():
    spec = syn.build_scene(np.random.default_rng([11, 0]))
    return spec, syn.RoomRenderer(spec)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_files(two_rooms, tmp_path):
    again = syn.generate_dataset(tmp_path / "b", scenes=2, frames=4, height=H, width=W, seed=3, progress=False)
    files = _files(two_rooms)
    assert files == _files(again)
    assert len(files) > 2 * 4 * 4  # colour, depth, pose, label per frame, plus intrinsics and meta
    _, mismatch, errors = filecmp.cmpfiles(two_rooms, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_gives_other_scenes(two_rooms, tmp_path):
    other = syn.generate_dataset(tmp_path / "c", scenes=1, frames=1, height=H, width=W, seed=4, progress=False)
    a = open_dataset(two_rooms).frames("scene0000")[0]
    b = open_dataset(other).frames("scene0000")[0]
    assert not np.array_equal(a.labels, b.labels) or not np.array_equal(a.rgb, b.rgb)


def test_depth_is_z_in_camera_frame_not_ray_length(room):
    spec, renderer = room
    K = syn.default_intrinsics(H, W)
    pose = syn.camera_trajectory(np.random.default_rng(0), spec, 3)[1]
    r = syn.render_frame(renderer, K, pose, H, W)
    # independent cast with unit ray directions through the pixel centres
    u, v = g.pixel_grid(H, W)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    hit = renderer.cast(pose[:3, 3], d @ pose[:3, :3].T)
    t = hit["t_hit"].astype(np.float64)
    assert np.isfinite(t).all(), "rays escaped a closed room"
    np.testing.assert_allclose(r["depth"], t * d[..., 2], rtol=1e-5, atol=1e-5)
    # off-axis pixels: depth is strictly shorter than the ray length
    corner = r["depth"][0, 0]
    assert corner < t[0, 0] * 0.99
    # back-projecting the depth gives the ray's hit point
    X = g.backproject(r["depth"], K, pose)
    P = pose[:3, 3] + (d @ pose[:3, :3].T) * t[..., None]
    np.testing.assert_allclose(X, P, atol=2e-4)


def test_stored_depth_matches_render(two_rooms):
    ds = open_dataset(two_rooms)
    f = ds.frames("scene0001")[2]
    spec = syn.build_scene(np.random.default_rng([3, 1]))
    pose = syn.camera_trajectory(np.random.default_rng([3, 1, 1]), spec, 4)[2]
    np.testing.assert_allclose(f.world_T_cam, pose, atol=1e-6)
    r = syn.render_frame(syn.RoomRenderer(spec), f.K, f.world_T_cam, H, W)
    np.testing.assert_allclose(f.depth, r["depth"], atol=0.0006)  # millimetre PNG
    np.testing.assert_array_equal(f.labels, r["labels"])


def test_cross_projection_lands_on_same_class(tmp_path):
    h, w = 120, 160
    root = syn.generate_dataset(tmp_path / "x", scenes=1, frames=5, height=h, width=w, seed=5, progress=False)
    frames = open_dataset(root).frames("scene0000")
    checked, agree = 0, 0
    for i in range(len(frames)):
        for j in range(len(frames)):
            if i == j:
                continue
            fi, fj = frames[i], frames[j]
            X = g.backproject(fi.depth, fi.K, fi.world_T_cam)
            u, v, z = g.project(X, fj.K, fj.world_T_cam)
            ok = np.isfinite(u) & (z > 0)
            ui = np.where(ok, np.round(u), -1).astype(int)
            vi = np.where(ok, np.round(v), -1).astype(int)
            ok &= (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
            dj = np.zeros_like(z)
            dj[ok] = fj.depth[vi[ok], ui[ok]]
            ok &= (dj > 0) & (np.abs(z - dj) < 0.02 + 0.01 * z)
            checked += int(ok.sum())
            agree += int((fi.labels[ok] == fj.labels[vi[ok], ui[ok]]).sum())
    assert checked > 0.3 * h * w * len(frames), "consecutive views should overlap heavily"
    assert agree / checked >= 0.95, f"only {agree / checked:.3f} of visible cross-projected pixels keep their class"


def test_views_overlap_and_occlude(tmp_path):
    """Consecutive views share most of their content; some pixels are hidden in the other view."""
    h, w = 60, 80
    root = syn.generate_dataset(tmp_path / "o", scenes=1, frames=6, height=h, width=w, seed=8, progress=False)
    fr = open_dataset(root).frames("scene0000")
    fi, fj = fr[2], fr[3]
    X = g.backproject(fi.depth, fi.K, fi.world_T_cam)
    u, v, z = g.project(X, fj.K, fj.world_T_cam)
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    inside = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    assert inside.mean() > 0.5
    dj = fj.depth[vi[inside], ui[inside]]
    occluded = z[inside] > dj + 0.05
    assert occluded.sum() > 0


def test_all_classes_occur(tmp_path):
    # every class is built somewhere in a handful of rooms ...
    built = set()
    for k in range(6):
        built |= {p.cls for p in syn.build_scene(np.random.default_rng([0, k])).parts}
    assert built == set(range(len(syn.CLASS_NAMES)))
    # ... and a small rendered dataset shows at least 10 of them
    root = syn.generate_dataset(tmp_path / "c", scenes=3, frames=4, height=H, width=W, seed=0, progress=False)
    seen = set()
    for f in open_dataset(root).all_frames():
        seen |= set(np.unique(f.labels).tolist())
    assert 255 not in seen, "every ray must hit something in a closed room"
    assert len(seen) >= 10, f"only classes {sorted(seen)} visible"


def test_round_trip_through_open_dataset(two_rooms):
    ds = open_dataset(two_rooms, format="auto")
    assert ds.format == "viewal"
    assert ds.class_names == syn.CLASS_NAMES and ds.num_classes >= 10
    assert ds.scene_ids == ["scene0000", "scene0001"]
    assert (ds.height, ds.width) == (H, W)
    assert all(len(ds.split(s)) > 0 for s in ("train", "val", "test"))
    assert len(ds) == 8
    f = ds.frames("scene0000")[0]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (H, W) and f.depth.dtype == np.float32
    assert f.labels.shape == (H, W) and f.labels.dtype == np.int64
    assert f.K.shape == (3, 3) and f.world_T_cam.shape == (4, 4)
    np.testing.assert_allclose(f.K, syn.default_intrinsics(H, W), atol=1e-9)
    assert (f.depth > 0.2).all() and (f.depth < 10).all()
    meta = json.loads((two_rooms / "viewal.json").read_text())
    assert meta["generator"]["seed"] == 3


def test_camera_height_and_roll(room):
    spec, _ = room
    poses = syn.camera_trajectory(np.random.default_rng(1), spec, 20)
    for T in poses:
        g.check_pose(T)
        assert 1.15 < T[2, 3] < 1.75
        # small roll: the camera x axis stays nearly horizontal
        assert abs(T[2, 0]) < np.sin(np.radians(5))
        assert 0 < T[0, 3] < spec.size[0] and 0 < T[1, 3] < spec.size[1]
    # smooth walk: consecutive optical axes turn by less than 35 degrees
    for a, b in zip(poses, poses[1:]):
        assert np.dot(a[:3, 2], b[:3, 2]) > np.cos(np.radians(35))


def test_depth_noise_and_holes_leave_labels_and_rgb_exact(tmp_path):
    kw = dict(scenes=1, frames=2, height=H, width=W, seed=2, progress=False, color_ext=".png")
    clean = open_dataset(syn.generate_dataset(tmp_path / "clean", **kw)).frames("scene0000")
    noisy = open_dataset(syn.generate_dataset(tmp_path / "noisy", depth_noise=True, holes=True,
                                              **kw)).frames("scene0000")
    for a, b in zip(clean, noisy):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert (b.depth == 0).any(), "holes should invalidate some pixels"
        both = (a.depth > 0) & (b.depth > 0)
        assert not np.array_equal(a.depth[both], b.depth[both])
        rel = np.abs(b.depth[both] - a.depth[both]) / a.depth[both]
        assert np.median(rel) < 0.01 and rel.max() < 0.1


def test_split_scenes():
    ids = [f"s{i}" for i in range(12)]
    fr = {s: ["0", "1"] for s in ids}
    sp = syn.split_scenes(ids, fr)
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (8, 2, 2)
    assert set(sp["train"]) | set(sp["val"]) | set(sp["test"]) == set(ids)
    sp3 = syn.split_scenes(ids[:3], fr)
    assert all(len(sp3[k]) == 1 for k in ("train", "val", "test"))
    sp2 = syn.split_scenes(ids[:2], {s: ["0", "1", "2", "3"] for s in ids[:2]})
    assert sp2["train"] == ["s0"] and sp2["val"] == ["s1/0", "s1/1"] and sp2["test"] == ["s1/2", "s1/3"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="scenes"):
        syn.generate_dataset(tmp_path / "bad", scenes=0, frames=2, progress=False)
    with pytest.raises(ValueError, match="color_ext"):
        syn.generate_dataset(tmp_path / "bad", scenes=1, frames=1, color_ext=".bmp", progress=False)


def test_cli_generate_and_preview(tmp_path):
    from viewal.cli import main

    out = tmp_path / "cli"
    assert (
        main(["generate", str(out), "--scenes", "1", "--frames", "2", "--height", "48", "--width", "64", "--seed", "1"])
        == 0
    )
    ds = open_dataset(out)
    assert len(ds) == 2 and ds.height == 48
    png = tmp_path / "prev.png"
    assert main(["preview", str(out), "-o", str(png), "--frames", "2"]) == 0
    from viewal.core.io import read_image

    img = read_image(png)
    assert img.shape[0] > 100 and img.shape[1] > 300 and img.std() > 10


def test_regenerating_replaces_old_output_and_stale_cache(tmp_path):
    from viewal.core.superpixels import SuperpixelCache

    out = tmp_path / "re"
    syn.generate_dataset(out, scenes=3, frames=1, height=H, width=W, seed=0, progress=False)
    ds = open_dataset(out)
    SuperpixelCache(out, "seeds").get(ds.frames("scene0000")[0])
    assert (out / ".viewal_cache").is_dir()
    syn.generate_dataset(out, scenes=1, frames=1, height=H, width=W, seed=1, progress=False)
    assert not (out / ".viewal_cache").exists(), "superpixels of the old images must not survive"
    assert open_dataset(out).scene_ids == ["scene0000"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        syn.generate_dataset(foreign, scenes=1, frames=1, height=H, width=W, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_rooms_keep_their_furniture_inside_and_one_door_and_window():
    # the room builder's steps (shell, openings, furniture, tables, things on tops, pictures, lights) on 20 rooms:
    # furniture stands inside the room, at most reaching into the walls' thickness (0.12 m, e.g. a bed's
    # headboard: 0.04 m); plants are left out (their leaves are random spheres that may reach through a wall)
    C = {n: i for i, n in enumerate(syn.CLASS_NAMES)}
    shell = {C["wall"], C["floor"], C["ceiling"], C["window"], C["door"], C["plant"]}
    for k in range(20):
        spec = syn.build_scene(np.random.default_rng([7, k]))
        Lx, Ly, Lz = spec.size
        lo, hi = np.array([-0.12, -0.12, -0.001]), np.array([Lx + 0.12, Ly + 0.12, Lz])
        for p in spec.parts:
            if p.cls in shell:
                continue
            v, _ = p.mesh()
            assert (v >= lo).all() and (v <= hi).all(), (k, syn.CLASS_NAMES[p.cls], v.min(0), v.max(0))
        classes = [p.cls for p in spec.parts]
        assert classes.count(C["floor"]) == 1 and classes.count(C["ceiling"]) == 1
        assert C["door"] in classes and C["window"] in classes and C["picture"] in classes
        assert 1 <= len(spec.lights) <= 3 and all(0 < pos[2] < Lz for pos, _ in spec.lights)
        assert 1.3 - 1e-9 <= sum(i for _, i in spec.lights) <= 1.9 + 1e-9
        assert spec.kind in ("living", "bedroom", "office")
