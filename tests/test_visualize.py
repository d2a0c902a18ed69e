"""viewal.runs.visualize: region crops and outlines, contact sheet, view-entropy point cloud (PLY), atomic writes."""
from __future__ import annotations

import numpy as np
import pytest

from viewal.runs.visualize import (
    colorize_values,
    crop_box,
    majority_class,
    mask_contours,
    outline_mask,
    query_contact_sheet,
    region_bbox,
    render_point_cloud_png,
    view_entropy_point_cloud,
    view_entropy_points,
)
from viewal.selection import RegionQuery


@pytest.fixture(scope="module")
def rooms_dataset(rooms_64x80):
    """The shared 4 rooms x 5 frames of 64x80 pixels (tests/conftest.py), opened."""
    from viewal.datasets import open_dataset

    return open_dataset(rooms_64x80)


def _blob(h=40, w=50):
    """A region with a hole and a concave notch."""
    m = np.zeros((h, w), bool)
    m[8:30, 10:40] = True
    m[15:20, 20:26] = False      # hole
    m[8:14, 30:34] = False       # notch
    return m


def _boundary(mask):
    """Mask pixels with a 4-neighbour outside the mask (image border counts as outside)."""
    p = np.pad(mask, 1, constant_values=False)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def test_region_bbox_and_crop_box():
    m = _blob()
    assert region_bbox(m) == (8, 30, 10, 40)
    with pytest.raises(ValueError):
        region_bbox(np.zeros((4, 4), bool))
    y0, y1, x0, x1 = crop_box((8, 30, 10, 40), (40, 50), pad=2, min_frac=0.5)
    assert 0 <= y0 < y1 <= 40 and 0 <= x0 < x1 <= 50
    assert y0 <= 8 and y1 >= 30 and x0 <= 10 and x1 >= 40            # contains the region
    assert abs((x1 - x0) / (y1 - y0) - 50 / 40) < 0.1                  # image aspect ratio
    # a tiny region near a corner: minimum size, shifted back inside the image
    y0, y1, x0, x1 = crop_box((0, 2, 47, 50), (40, 50), pad=1, min_frac=0.5)
    assert (y0, x1) == (0, 50) and y1 - y0 == 20 and x1 - x0 == 25


def test_outline_lies_on_mask_boundary():
    m = _blob()
    out = outline_mask(m)
    b = _boundary(m)
    assert out.any()
    assert not (out & ~m).any(), "outline pixels must be inside the region"
    assert not (out & ~b).any(), "outline pixels must lie on the region's boundary"
    # the hole's contour is found too, and most boundary pixels are covered
    assert out[14:21, 19:27].any()
    assert (out & b).sum() >= 0.9 * b.sum()
    assert len(mask_contours(m)) == 2
    # a region touching the image border
    m2 = np.zeros((10, 12), bool)
    m2[:5, 6:] = True
    o2 = outline_mask(m2)
    assert not (o2 & ~_boundary(m2)).any() and o2[0, 6:].all()


def test_majority_class():
    lab = np.full((4, 4), 255, np.int64)
    lab[:2] = 3
    lab[2, :3] = 5
    m = np.ones((4, 4), bool)
    c, share = majority_class(lab, m)
    assert c == 3 and share == pytest.approx(8 / 11)
    assert majority_class(None, m) is None
    assert majority_class(lab, np.eye(4, dtype=bool) & (lab == 255)) is None


def _queries(ds, n=7):
    rng = np.random.default_rng(0)
    qs = []
    for i, f in enumerate(ds.split("train")[:n]):
        m = np.zeros((ds.height, ds.width), bool)
        y, x = rng.integers(0, ds.height - 12), rng.integers(0, ds.width - 15)
        m[y:y + 12, x:x + 15] = True
        qs.append(RegionQuery(f.scene_id, f.frame_id, m, score=1.0 - 0.1 * i, region_id=i,
                              view_score=None if i % 2 else 0.05 * i))
    return qs


def test_contact_sheet_written(rooms_dataset, tmp_path):
    from viewal.core.io import read_image

    out = query_contact_sheet(rooms_dataset, _queries(rooms_dataset), tmp_path / "sheet.png", cols=4)
    assert out.is_file() and out.stat().st_size > 10_000
    img = read_image(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert img.reshape(-1, 3).std(axis=0).mean() > 20          # not a blank canvas
    red = (img[..., 0] > 200) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 100                                      # the outlines are drawn
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


def test_contact_sheet_shape_mismatch_and_atomic(rooms_dataset, tmp_path):
    q = _queries(rooms_dataset, 1)[0]
    bad = RegionQuery(q.scene_id, q.frame_id, np.ones((10, 10), bool), score=0.5)
    with pytest.raises(ValueError, match="open the dataset at the run's size"):
        query_contact_sheet(rooms_dataset, [bad], tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []                      # nothing written, no temp file left


def _scene_ve(ds):
    frames = ds.frames(ds.scene_ids[0])
    # a synthetic VE map (distinct values, not tied to the geometry) and some invalid depth
    ve = np.random.default_rng(1).random((len(frames), ds.height, ds.width)).astype(np.float32) * 3
    return frames, ve


def test_point_cloud_count_and_colours(rooms_dataset, tmp_path):
    import open3d as o3d
    from matplotlib import colormaps

    frames, ve = _scene_ve(rooms_dataset)
    stride = 2
    valid = sum(int(((f.depth > 0) & np.isfinite(f.depth))[::stride, ::stride].sum()) for f in frames)
    # closed rooms: every pixel has a valid depth
    assert valid == len(frames) * (rooms_dataset.height // stride) * (rooms_dataset.width // stride)
    info = view_entropy_point_cloud(frames, ve, tmp_path / "ve.ply", stride=stride)
    assert info["points"] == valid == info["written"]
    pc = o3d.io.read_point_cloud(str(tmp_path / "ve.ply"))
    assert len(pc.points) == valid
    cols = np.asarray(pc.colors)
    vals = info["values"]
    top = np.asarray(colormaps["viridis"](1.0)[:3])
    bottom = np.asarray(colormaps["viridis"](0.0)[:3])
    q = 0.6 / 255  # PLY stores 8-bit colours
    assert np.allclose(cols[np.argmax(vals)], top, atol=q)
    assert np.allclose(cols[np.argmin(vals)], bottom, atol=q)
    assert np.allclose(info["colors"][np.argmax(vals)], top, atol=1e-9)
    # colours follow VE monotonically: viridis luminance grows with its input
    lum = cols @ np.array([0.299, 0.587, 0.114])
    o = np.argsort(vals)
    assert np.all(np.diff(lum[o]) >= -1.5 / 255)
    assert lum[o[-1]] - lum[o[0]] > 0.5
    # points are the back-projected pixels (first pixel of the first frame)
    from viewal.core.geometry import backproject

    X0 = backproject(frames[0].depth, frames[0].K, frames[0].world_T_cam)[0, 0]
    assert np.allclose(np.asarray(pc.points)[0], X0, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ve.ply"]


def test_point_cloud_invalid_depth_stride_voxel(rooms_dataset, tmp_path):
    frames, ve = _scene_ve(rooms_dataset)

    class F:  # a frame with holes in its depth
        def __init__(self, f):
            self.key, self.K, self.world_T_cam = f.key, f.K, f.world_T_cam
            self.depth = f.depth.copy()
            self.depth[:10, :] = 0
            self.depth[20, 5] = np.nan

    holey = [F(f) for f in frames]
    X, v = view_entropy_points(holey, ve, stride=3)
    expect = sum(int((np.isfinite(f.depth) & (f.depth > 0))[::3, ::3].sum()) for f in holey)
    assert X.shape == (expect, 3) and v.shape == (expect,) and np.isfinite(X).all()
    info = view_entropy_point_cloud(holey, ve, tmp_path / "d.ply", stride=1, voxel_size=0.2)
    assert info["written"] < info["points"]
    with pytest.raises(ValueError, match="stride"):
        view_entropy_points(frames, ve, stride=0)
    with pytest.raises(ValueError, match="ve"):
        view_entropy_points(frames, ve[:2])
    with pytest.raises(ValueError, match=".ply"):
        view_entropy_point_cloud(frames, ve, tmp_path / "x.pcd")


def test_point_cloud_atomic_on_error(rooms_dataset, tmp_path, monkeypatch):
    import open3d as o3d

    frames, ve = _scene_ve(rooms_dataset)
    monkeypatch.setattr(o3d.io, "write_point_cloud", lambda *a, **k: False)
    with pytest.raises(OSError, match="could not write"):
        view_entropy_point_cloud(frames, ve, tmp_path / "ve.ply")
    assert list(tmp_path.iterdir()) == []


def test_colorize_values_and_render(tmp_path):
    c = colorize_values(np.array([0.0, 1.0, 2.0]), "viridis")
    assert c.shape == (3, 3) and np.allclose(colorize_values(np.ones(4)), colorize_values(np.zeros(4)))
    rng = np.random.default_rng(0)
    X = rng.random((3000, 3)) * [4, 3, 2.5]
    out = render_point_cloud_png(X, X[:, 0], tmp_path / "cloud.png", max_points=1000, title="t")
    assert out.is_file() and out.stat().st_size > 5_000


def test_visualize_command_and_experiment_sheets(rooms_dataset, tmp_path):
    """`viewal visualize` on a hand-made run directory: ledger with queries + a checkpoint."""
    import torch

    from viewal.cli import main
    from viewal.core.config import ALConfig
    from viewal.nn.model import build_model
    from viewal.nn.train import save_checkpoint
    from viewal.runs.ledger import Ledger
    from viewal.runs.visualize import write_query_sheets

    run_dir = tmp_path / "run"
    from viewal.kernels import DepthTest

    al = ALConfig(mc_passes=2, depth_test=DepthTest(backend="numpy"), seed_fraction=0.1).to_json()
    with Ledger(run_dir / "ledgers" / "view_entropy-s0.sqlite") as led:
        led.set_config({"al": al, "dataset": str(rooms_dataset.root), "num_classes": rooms_dataset.num_classes})
        led.record_queries(1, _queries(rooms_dataset, 3))
        led.record_queries(2, _queries(rooms_dataset, 5))
    torch.manual_seed(0)
    model = build_model(rooms_dataset.num_classes, encoder="mobilenet_v2")
    save_checkpoint(run_dir / "models" / "view_entropy-s0-c2.pt", model)
    scene = rooms_dataset.scene_ids[0]
    assert main(["visualize", "--run", str(run_dir), "--ply", scene, "--stride", "4"]) == 0
    assert (run_dir / "queries_view_entropy_c2.png").stat().st_size > 5_000        # last cycle by default
    assert (run_dir / f"view_entropy_{scene}.png").stat().st_size > 5_000
    import open3d as o3d

    pc = o3d.io.read_point_cloud(str(run_dir / f"view_entropy_{scene}.ply"))
    n = len(rooms_dataset.frames(scene))
    assert len(pc.points) == n * (rooms_dataset.height // 4) * (rooms_dataset.width // 4)
    assert np.ptp(np.asarray(pc.colors), axis=0).max() > 0.1                      # VE varies over the scene
    # a missing ledger is a clear error naming the file
    assert main(["visualize", "--run", str(run_dir), "--method", "random"]) == 1
    # the experiment's end-of-run hook: one sheet per method with a ledger
    paths = write_query_sheets(rooms_dataset, run_dir, ["view_entropy", "random"], 0, cycle=1)
    assert [p.name for p in paths] == ["queries_view_entropy_c1.png"]
    # a sheet that cannot be drawn (dataset at another size) warns instead of failing the experiment
    from viewal.datasets import open_dataset

    small = open_dataset(rooms_dataset.root, height=32, width=40)
    with pytest.warns(UserWarning, match="not written"):
        assert write_query_sheets(small, run_dir, ["view_entropy"], 0) == []
    with pytest.raises(ValueError):
        write_query_sheets(small, run_dir, ["view_entropy"], 0, strict=True)
    assert not list(run_dir.glob(".*"))                                             # no temp files left


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    """``atomic_path``'s temp file is 0600 (mkstemp); the renamed file has the umask's mode, as open() gives."""
    import os
    import stat

    from viewal.core.io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o640
