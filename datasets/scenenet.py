"""SceneNet RGB-D, as ViewAL used it (``format="scenenet"``).

SceneNet RGB-D ships renders per trajectory (``photo/``, ``depth/``, ``instance/``) and keeps poses
and the instance → class tables in a protobuf that needs SceneNet's compiled ``scenenet.proto``.
This reader does not parse the protobuf: it expects the renders as shipped plus plain-text poses
and labels, which a few lines of pySceneNetRGBD can dump. Expected layout::

    <root>/<traj>/photo/<n>.jpg        320×240 colour; n = SceneNet frame number (0, 25, 50, …)
    <root>/<traj>/depth/<n>.png        uint16 millimetres, 0 = invalid; SceneNet stores the Euclidean
                                       *ray length* from the camera centre (see ``depth_kind``)
    poses, one of:
    <root>/<traj>/poses.txt            one line per frame, either
                                         ``n cam_x cam_y cam_z look_x look_y look_z`` (the view's camera
                                         position and look-at, as in the protobuf; SceneNet's own
                                         convention: interpolate shutter open/close at 0.5, up = +y), or
                                         ``n`` followed by 16 numbers: 4×4 camera-to-world, row-major, OpenCV
    <root>/<traj>/pose/<n>.txt         4×4 camera-to-world (OpenCV axes)
    labels (optional, per trajectory and per frame), the first folder that exists:
    <root>/<traj>/class13/<n>.png      NYU13 ids 0..13 (0 = unknown), e.g. pySceneNetRGBD's
                                       instance → class13 conversion
    <root>/<traj>/instance/<n>.png     16-bit instance ids, with
    <root>/<traj>/instance_class13.txt lines ``instance_id nyu13_id`` (unlisted instances → 0 = unknown)
    <root>/{train,val,test}.txt        optional split lists (scene ids or ``scene/frame`` keys)

A trajectory without labels, or a frame without its label image, opens with ``Frame.labels`` None.

``<traj>`` may be one level deeper, as SceneNet ships it (``<root>/0/223/photo``); the scene id is then
the relative path with ``/`` replaced by ``_`` (``0_223``, ViewAL's naming).

As ViewAL used it: 13 classes (:data:`NYU13_CLASSES`: NYU13 id k ∈ 1..13 → class k − 1, 0 → 255
ignore, the same shift as NYU40), depth in millimetres (÷ 1000), fixed intrinsics at 320×240
fx = 277.128 (= 160 / tan 30°), fy = 289.706 (= 120 / tan 22.5°), cx = 160, cy = 120. Other working
sizes scale K with :func:`viewal.core.geometry.scale_intrinsics` and resize depth/labels nearest.
Note: with integer pixel centres, the centre of a 320×240 render is (159.5, 119.5); ViewAL's
cx = 160, cy = 120 is half a pixel off. Pass ``K=`` to override.

Depth: SceneNet documents its depth as ray length, while viewal's depth is z along the optical
axis. ``depth_kind="ray"`` (default) converts at the native resolution,
z = r / sqrt(1 + ((u − cx)/fx)² + ((v − cy)/fy)²) (up to 1/cos(37°) ≈ 1.25 at the image corners);
``depth_kind="z"`` takes the file as z-depth, which is what ViewAL's loader did (``depth / 1000``).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewal.core import geometry

from .base import DatasetError, RGBDDataset
from .canonical import (
    label_files,
    load_depth_png,
    load_label_png,
    make_frame,
    natural_key,
    optional_labels,
    pose_or_skip,
    resize_nearest,
    resolve_splits,
    viewal_label_shift,
    warn_skipped,
)

__all__ = ["read_scenenet", "looks_like", "NYU13_CLASSES", "SCENENET_K", "lookat_pose", "ray_to_z"]

#: NYU13 class names for class ids 0..12 (= NYU13 id − 1, ViewAL's shift; NYU13 id 0 "unknown" → 255).
NYU13_CLASSES = ["bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
                 "tv", "wall", "window"]

#: ViewAL's SceneNet intrinsics at 320×240.
SCENENET_K = np.array([[277.1281292110204, 0.0, 160.0], [0.0, 289.7056274847714, 120.0], [0.0, 0.0, 1.0]])
NATIVE_SHAPE = (240, 320)
DEPTH_SCALE = 1000.0


def lookat_pose(camera: np.ndarray, lookat: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """SceneNet's camera position + look-at point → (4, 4) camera-to-world, OpenCV axes.

    Camera z looks at ``lookat``; x = z × up; y = z × x (points "down", away from ``up``).
    """
    c = np.asarray(camera, dtype=np.float64)
    z = np.asarray(lookat, dtype=np.float64) - c
    nz = np.linalg.norm(z)
    if nz == 0:
        raise ValueError("look-at point equals camera position")
    z /= nz
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("view direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, c
    return T


def ray_to_z(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Ray length (H, W) → depth along the optical axis (H, W), with (3, 3) ``K`` of the same size."""
    h, w = depth.shape
    u, v = geometry.pixel_grid(h, w)
    scale = np.sqrt(1.0 + ((u - K[0, 2]) / K[0, 0]) ** 2 + ((v - K[1, 2]) / K[1, 1]) ** 2)
    return (depth / scale).astype(np.float32)


def _traj_dirs(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if not p.is_dir():
            continue
        if (p / "photo").is_dir():
            out.append(p)
        else:
            out.extend(q for q in sorted(p.iterdir(), key=lambda q: natural_key(q.name))
                       if q.is_dir() and (q / "photo").is_dir())
    return out


def looks_like(path: Path) -> bool:
    """True if ``path`` holds SceneNet trajectory directories (``<traj>/photo`` and ``<traj>/depth``)."""
    path = Path(path)
    return path.is_dir() and any((t / "depth").is_dir() for t in _traj_dirs(path))


def _read_poses_txt(path: Path) -> dict[str, np.ndarray]:
    """``poses.txt`` → frame number → raw 4×4 (non-finite entries kept: the caller skips them)."""
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        try:
            vals = np.array([float(t) for t in tok[1:]])
        except ValueError:
            raise DatasetError(f"{path}:{i}: non-numeric pose values") from None
        if len(vals) == 6:
            if not np.all(np.isfinite(vals)):
                T = np.full((4, 4), np.nan)
            else:
                try:
                    T = lookat_pose(vals[:3], vals[3:])
                except ValueError as e:
                    raise DatasetError(f"{path}:{i}: {e}") from None
        elif len(vals) == 16:
            T = vals.reshape(4, 4)
        else:
            raise DatasetError(f"{path}:{i}: expected 'n cx cy cz lx ly lz' (7 fields) or 'n' + 16 matrix values "
                               f"(17 fields), got {len(tok)} fields")
        out[tok[0]] = T
    return out


def _read_instance_map(path: Path) -> np.ndarray:
    pairs = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        try:
            inst, cls = int(tok[0]), int(tok[1])
        except (ValueError, IndexError):
            raise DatasetError(f"{path}:{i}: expected 'instance_id nyu13_id'") from None
        if not 0 <= cls <= 13 or inst < 0:
            raise DatasetError(f"{path}:{i}: NYU13 id {cls} outside 0..13 (or negative instance id)")
        pairs.append((inst, cls))
    table = np.zeros(max((p[0] for p in pairs), default=0) + 1, dtype=np.int64)
    for inst, cls in pairs:
        table[inst] = cls
    return table


def _label_loaders(tdir: Path, size) -> Callable[[str], Callable[[], np.ndarray] | None]:
    """Frame number → zero-argument loader of its labels, or None (no label folder, or no file for that frame)."""
    n = len(NYU13_CLASSES)
    if (tdir / "class13").is_dir():
        files = label_files(tdir / "class13")

        def load(p: Path) -> np.ndarray:
            return load_label_png(p, size, n, viewal_label_shift, native_shape=NATIVE_SHAPE)
        return lambda fid: optional_labels(files, fid, load)
    map_path = tdir / "instance_class13.txt"
    if (tdir / "instance").is_dir() and map_path.is_file():
        table = _read_instance_map(map_path)
        files = label_files(tdir / "instance")

        def mapping(inst):
            cls = np.zeros_like(inst)
            known = inst < len(table)
            cls[known] = table[inst[known]]
            return viewal_label_shift(cls)

        def load_instances(p: Path) -> np.ndarray:
            return load_label_png(p, size, n, mapping, native_shape=NATIVE_SHAPE)
        return lambda fid: optional_labels(files, fid, load_instances)
    return lambda fid: None


def read_scenenet(
    root: str | Path,
    height: int = 240,
    width: int = 320,
    *,
    depth_kind: str = "ray",
    K: np.ndarray | None = None,
    splits: dict[str, list[str]] | None = None,
) -> RGBDDataset:
    """Open SceneNet RGB-D trajectories in the layout of the module docstring.

    Args:
        height, width: working size (native and ViewAL's: 320×240).
        depth_kind: ``"ray"`` (SceneNet's documented depth, converted to z) or ``"z"`` (ViewAL's reading).
        K: (3, 3) intrinsics at 320×240 overriding :data:`SCENENET_K`.
        splits: split name → scene ids or ``scene/frame`` keys; default ``<root>/{train,val,test}.txt``,
            else :func:`viewal.datasets.canonical.default_splits`.
    """
    root = Path(root)
    if depth_kind not in ("ray", "z"):
        raise ValueError(f"depth_kind must be 'ray' or 'z', got {depth_kind!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"SceneNet root is not a directory: {root}")
    size = (int(height), int(width))
    K_native = geometry.check_intrinsics(SCENENET_K if K is None else K, name="K")
    trajs = _traj_dirs(root)
    if not trajs:
        raise DatasetError(f"{root}: no SceneNet trajectory directories (expected <root>/<traj>/photo/<n>.jpg)")

    scenes = {}
    skipped: list[str] = []
    for tdir in trajs:
        sid = tdir.relative_to(root).as_posix().replace("/", "_")
        photos = {p.stem: p for p in (tdir / "photo").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        poses_txt = tdir / "poses.txt"
        table = _read_poses_txt(poses_txt) if poses_txt.is_file() else None
        if table is None and not (tdir / "pose").is_dir():
            raise FileNotFoundError(f"{tdir}: no poses: expected {poses_txt} or {tdir / 'pose'}/<n>.txt")
        labels_of = _label_loaders(tdir, size)
        frames = []
        for fid in sorted(photos, key=natural_key):
            depth_path = tdir / "depth" / f"{fid}.png"
            if not depth_path.is_file():
                raise FileNotFoundError(f"missing depth file for frame {fid}: {depth_path}")
            if table is not None:
                if fid not in table:
                    raise DatasetError(f"{poses_txt}: no pose for frame {fid} ({photos[fid]})")
                where = f"{poses_txt} frame {fid}"
                if np.all(np.isfinite(table[fid])):
                    pose = geometry.check_pose(table[fid], source=where)
                else:
                    pose = None
                    skipped.append(where)
            else:
                pose = pose_or_skip(tdir / "pose" / f"{fid}.txt", skipped)
            if pose is None:
                continue

            def depth_loader(p=depth_path):
                d = load_depth_png(p, DEPTH_SCALE, None, native_shape=NATIVE_SHAPE)
                if depth_kind == "ray":
                    d = ray_to_z(d, K_native)
                return resize_nearest(d, size)

            frames.append(make_frame(sid, fid, color=photos[fid], depth=depth_loader, K_native=K_native,
                                     native_shape=NATIVE_SHAPE, size=size, world_T_cam=pose,
                                     labels=labels_of(fid), source=tdir))
        if frames:
            scenes[sid] = frames
    warn_skipped(root, skipped)
    if not scenes:
        raise DatasetError(f"{root}: no frames with a valid pose")
    candidates = {name: [root / f"{name}.txt"] for name in ("train", "val", "test")}
    split_keys, origin = resolve_splits(splits, scenes, root, candidates)
    meta = {"depth_kind": depth_kind, "K_320x240": K_native.tolist(), "splits_from": origin,
            "skipped_frames": skipped, "depth_scale": DEPTH_SCALE}
    return RGBDDataset(root=root, format="scenenet", class_names=list(NYU13_CLASSES), scenes=scenes,
                       splits=split_keys, height=size[0], width=size[1], meta=meta)
