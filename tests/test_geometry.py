import numpy as np
import pytest

from viewal.core import geometry as g


def _pose(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = rng.normal(size=3)
    return T


def test_backproject_project_round_trip():
    rng = np.random.default_rng(0)
    K = np.array([[200.0, 0, 31.5], [0, 210.0, 23.5], [0, 0, 1]])
    T = _pose(rng)
    depth = rng.uniform(0.5, 4.0, size=(48, 64)).astype(np.float32)
    X = g.backproject(depth, K, T)
    u, v, z = g.project(X, K, T)
    uu, vv = g.pixel_grid(48, 64)
    np.testing.assert_allclose(u, uu, atol=1e-6)
    np.testing.assert_allclose(v, vv, atol=1e-6)
    np.testing.assert_allclose(z, depth, rtol=1e-6)


def test_invalid_depth_backprojects_to_nan():
    K = np.array([[100.0, 0, 5], [0, 100.0, 5], [0, 0, 1]])
    d = np.ones((4, 4), np.float32)
    d[0, 0] = 0
    d[1, 1] = np.nan
    X = g.backproject(d, K)
    assert np.isnan(X[0, 0]).all() and np.isnan(X[1, 1]).all() and np.isfinite(X[2, 2]).all()


def test_scale_intrinsics_maps_pixel_centres():
    K = np.array([[577.871, 0, 319.5], [0, 577.871, 239.5], [0, 0, 1]])
    K2 = g.scale_intrinsics(K, (480, 640), (240, 320))
    # the optical centre of a 640x480 image with centre 319.5 is the centre of the 320x240 image
    assert K2[0, 2] == pytest.approx(159.5) and K2[1, 2] == pytest.approx(119.5)
    assert K2[0, 0] == pytest.approx(577.871 / 2)


@pytest.mark.parametrize("bad, msg", [
    (np.diag([1.0, 1.0, 2.0, 1.0]), "not rigid"),
    (np.full((4, 4), -np.inf), "non-finite"),
    (np.eye(3), "4x4"),
])
def test_check_pose_rejects(bad, msg):
    with pytest.raises(g.GeometryError, match=msg) as e:
        g.check_pose(bad, source="scene0/pose/12.txt")
    assert "scene0/pose/12.txt" in str(e.value)


def test_check_pose_accepts_rigid():
    T = _pose(np.random.default_rng(3))
    np.testing.assert_array_equal(g.check_pose(T), T)


def test_check_depth():
    d = np.array([[1.0, np.nan], [0.0, 2.0]], np.float32)
    out = g.check_depth(d)
    assert out[0, 1] == 0 and out[0, 0] == 1
    with pytest.raises(g.GeometryError, match="NaN"):
        g.check_depth(d, source="depth/3.png", allow_nonfinite=False)
    with pytest.raises(g.GeometryError, match="negative"):
        g.check_depth(-d)
    with pytest.raises(g.GeometryError, match="2-D"):
        g.check_depth(np.zeros((2, 2, 2)))


def test_check_intrinsics():
    K4 = np.eye(4)
    K4[0, 0] = K4[1, 1] = 100
    assert g.check_intrinsics(K4).shape == (3, 3)
    with pytest.raises(g.GeometryError, match="focal"):
        g.check_intrinsics(np.diag([0.0, 1.0, 1.0]), name="K_bad")
