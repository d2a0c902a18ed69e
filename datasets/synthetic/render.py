"""The renderer: one Open3D ray cast per frame gives labels (geometry id hit), depth (z of the hit in the
camera frame) and RGB (procedural albedo, Lambert shading from point lights plus ambient, cast shadows)."""
from __future__ import annotations

import numpy as np

from ..base import IGNORE_INDEX
from .primitives import UV_BOX, UV_SPHERE
from .room import SceneSpec
from .sensor import apply_sensor_effects
from .textures import texture

__all__ = ["RoomRenderer", "render_frame"]


class RoomRenderer:
    """Open3D raycasting scene of a :class:`SceneSpec` plus per-geometry class and material tables."""

    def __init__(self, spec: SceneSpec):
        import open3d as o3d

        self.o3d = o3d
        self.spec = spec
        self.scene = o3d.t.geometry.RaycastingScene()
        n = len(spec.parts)
        self.cls = np.full(n + 1, IGNORE_INDEX, dtype=np.uint8)  # last entry: miss
        self.pattern = np.zeros(n + 1, np.int64)
        self.c1 = np.zeros((n + 1, 3))
        self.c2 = np.zeros((n + 1, 3))
        self.scale = np.ones(n + 1)
        self.angle = np.zeros(n + 1)
        self.seed = np.zeros(n + 1, np.int64)
        self.emissive = np.zeros(n + 1, bool)
        self.uv_mode = np.zeros(n + 1, np.int64)
        self.R = np.tile(np.eye(3), (n + 1, 1, 1))
        self.t = np.zeros((n + 1, 3))
        self.radius = np.ones(n + 1)
        for i, p in enumerate(spec.parts):
            v, f = p.mesh()
            gid = self.scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
            if gid != i:
                raise RuntimeError(f"Open3D gave geometry id {gid} to part {i}")
            self.cls[i] = p.cls
            m = p.mat
            self.pattern[i], self.c1[i], self.c2[i] = m.pattern, m.c1, m.c2
            self.scale[i], self.angle[i], self.seed[i], self.emissive[i] = m.scale, m.angle, m.seed, m.emissive
            self.uv_mode[i] = p.uv_mode
            self.R[i], self.t[i] = p.T[:3, :3], p.T[:3, 3]
            if p.shape == "frustum":
                self.radius[i] = (p.dims[0] + p.dims[1]) / 2
            elif p.shape == "sphere":
                self.radius[i] = float(np.mean(p.dims[:2]))

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        """Cast rays (..., 3) origins and directions → ``t_hit``, ``geometry_ids``, ``primitive_normals``."""
        rays = np.concatenate([np.broadcast_to(origins, dirs.shape), dirs], axis=-1).astype(np.float32)
        out = self.scene.cast_rays(self.o3d.core.Tensor(rays))
        return {k: out[k].numpy() for k in ("t_hit", "geometry_ids", "primitive_normals")}

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, tfar: float) -> np.ndarray:
        rays = np.concatenate([origins, dirs], axis=-1).astype(np.float32)
        return self.scene.test_occlusions(self.o3d.core.Tensor(rays), tnear=0.0, tfar=tfar).numpy()

    def uv(self, gid: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Surface coordinates (N, 2) in metres of hits ``p`` (N, 3) with normals ``n`` on parts ``gid``."""
        R = self.R[gid]
        pl = np.einsum("nji,nj->ni", R, p - self.t[gid])
        nl = np.abs(np.einsum("nji,nj->ni", R, n))
        ax = np.argmax(nl, axis=1)
        uv = np.where((ax == 0)[:, None], pl[:, [1, 2]], np.where((ax == 1)[:, None], pl[:, [0, 2]], pl[:, [0, 1]]))
        curved = (self.uv_mode[gid] != UV_BOX) & (ax != 2) | (self.uv_mode[gid] == UV_SPHERE)
        if curved.any():
            ang = np.arctan2(pl[curved, 1], pl[curved, 0])
            uv[curved] = np.stack([ang * self.radius[gid[curved]], pl[curved, 2]], 1)
        return uv


def _pixel_rays(K: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (H, W, 3) in the camera frame through pixel centres, and their z component."""
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d, d[..., 2]


def render_frame(
    renderer: RoomRenderer,
    K: np.ndarray,
    world_T_cam: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator | None = None,
    depth_noise: bool = False,
    holes: bool = False,
    shadows: bool = True,
) -> dict[str, np.ndarray]:
    """Render one view.

    Returns ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres along the optical axis (0 = invalid),
    ``labels`` (H, W) uint8 (255 where a ray hits nothing), ``t_hit`` (H, W) ray length of unit rays and
    ``ray_dirs_cam`` (H, W, 3) their camera-frame directions. ``rng`` drives the sensor effects only.
    """
    d_cam, dz = _pixel_rays(K, height, width)
    R, t = world_T_cam[:3, :3], world_T_cam[:3, 3]
    d_world = d_cam @ R.T
    hit = renderer.cast(t, d_world)
    t_hit = hit["t_hit"].astype(np.float64)
    gid = hit["geometry_ids"].astype(np.int64)
    valid = np.isfinite(t_hit) & (gid != renderer.scene.INVALID_ID)
    gid = np.where(valid, gid, len(renderer.cls) - 1)
    labels = renderer.cls[gid]
    depth = np.where(valid, t_hit * dz, 0.0)

    # shading
    idx = np.flatnonzero(valid.ravel())
    g = gid.ravel()[idx]
    dw = d_world.reshape(-1, 3)[idx]
    p = t + dw * t_hit.ravel()[idx, None]
    n = hit["primitive_normals"].reshape(-1, 3)[idx].astype(np.float64)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    facing = np.einsum("ij,ij->i", n, dw)
    n[facing > 0] *= -1  # normals face the camera
    mats = {
        "pattern": renderer.pattern[g],
        "c1": renderer.c1[g],
        "c2": renderer.c2[g],
        "scale": renderer.scale[g],
        "angle": renderer.angle[g],
        "seed": renderer.seed[g],
    }
    albedo = texture(renderer.uv(g, p, n), mats)
    spec = renderer.spec
    light = np.full(len(idx), spec.ambient) * (0.8 + 0.2 * np.abs(n[:, 2]))
    for lp, inten in spec.lights:
        L = lp - p
        dist = np.linalg.norm(L, axis=1)
        ldir = L / dist[:, None]
        lam = np.clip(np.einsum("ij,ij->i", n, ldir), 0, None)
        if shadows:
            lit = lam > 0
            occ = np.zeros(len(idx), bool)
            if lit.any():
                occ[lit] = renderer.occluded(p[lit] + n[lit] * 2e-3, L[lit], tfar=0.999)
            lam = np.where(occ, 0.0, lam)
        light += inten * lam / (1.0 + 0.08 * dist**2)
    em = renderer.emissive[g]
    col = albedo * np.where(em, 1.0, light)[:, None]
    rgb_lin = np.zeros((height * width, 3))
    rgb_lin[idx] = col
    rgb_lin = 1.0 - np.exp(-spec.exposure * rgb_lin)  # soft highlight roll-off instead of clipping
    rgb = (np.clip(rgb_lin, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3)

    if depth_noise or holes:
        if rng is None:
            raise ValueError("render_frame: depth_noise/holes need an rng")
        glass = np.zeros(height * width, bool)
        glass[idx] = renderer.emissive[g]  # window panes: no return from glass
        depth = apply_sensor_effects(
            depth,
            rng,
            K,
            cos_incidence=_cos_map(facing, idx, height, width),
            noise=depth_noise,
            holes=holes,
            no_return=glass.reshape(height, width),
        )
    return {
        "rgb": rgb,
        "depth": depth.astype(np.float32),
        "labels": labels.astype(np.uint8),
        "t_hit": np.where(valid, t_hit, np.inf).astype(np.float32),
        "ray_dirs_cam": d_cam,
    }


def _cos_map(facing: np.ndarray, idx: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros(h * w)
    out[idx] = np.abs(facing)
    return out.reshape(h, w)
