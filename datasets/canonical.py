"""The canonical on-disk layout (``format="viewal"``) = ScanNet's exported-frames layout.

::

    <root>/viewal.json                       class names, splits, working resolution
    <root>/<scene>/color/<id>.jpg|png        RGB (any size; resized to the working size, area filter)
    <root>/<scene>/depth/<id>.png            uint16 depth in millimetres (``depth_scale`` units/m), 0 = invalid
    <root>/<scene>/pose/<id>.txt             4×4 camera-to-world
    <root>/<scene>/intrinsic/intrinsic_depth.txt   4×4 (or 3×3) intrinsics of the depth image
    <root>/<scene>/intrinsic/intrinsic_color.txt   4×4 (or 3×3) intrinsics of the colour image
    <root>/<scene>/label/<id>.png            uint8 class id, 255 = ignore (optional)

``viewal.json``::

    {"format": "viewal", "class_names": [...], "height": 240, "width": 320, "depth_scale": 1000,
     "splits": {"train": ["scene_a", "scene_b/000010", ...], "val": [...], "test": [...]}}

A split entry is a scene id (all its frames) or a frame key ``"<scene>/<frame>"``.

Depth is resized with nearest neighbour (never interpolated across depth edges) and the depth
intrinsics are scaled to match; colour is resized to the same working size. Frames whose pose is
non-finite (ScanNet writes ``-inf`` when tracking failed) are reported once and skipped.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from viewal import geometry
from viewal.io import read_image, write_image, write_json, write_text

from .base import IGNORE_INDEX, DatasetError, Frame, RGBDDataset

__all__ = ["read_canonical", "write_frame", "write_scene_intrinsics", "write_meta", "load_pose", "load_matrix",
           "load_depth_png", "resize_nearest", "natural_key", "META_FILE"]

META_FILE = "viewal.json"
COLOR_EXTS = (".jpg", ".jpeg", ".png")


def natural_key(s: str):
    """Sort key putting ``"2"`` before ``"10"``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def load_matrix(path: Path, shape_options=((4, 4), (3, 3))) -> np.ndarray:
    """Read a whitespace-separated matrix text file; error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing matrix file: {path}")
    try:
        m = np.loadtxt(path, dtype=np.float64)
    except ValueError as e:
        raise DatasetError(f"{path}: not a numeric matrix ({e})") from None
    if m.shape not in shape_options:
        raise DatasetError(f"{path}: expected a matrix of shape {' or '.join(map(str, shape_options))}, got {m.shape}")
    return m


def load_pose(path: Path) -> np.ndarray:
    """4×4 camera-to-world pose from a text file, checked rigid (error names the file)."""
    return geometry.check_pose(load_matrix(path, ((4, 4),)), name="pose", source=path)


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label or depth map to (H, W), sampling at pixel centres."""
    h, w = size
    if a.shape[:2] == (h, w):
        return a
    rows = np.minimum(((np.arange(h) + 0.5) * a.shape[0] / h).astype(np.int64), a.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * a.shape[1] / w).astype(np.int64), a.shape[1] - 1)
    return a[rows[:, None], cols[None, :]]


def load_depth_png(path: Path, scale: float, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint16 depth image (``scale`` units per metre) → float32 metres (H, W), nearest-resized to ``size``."""
    raw = read_image(path, rgb=False)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: depth image must be single-channel, got shape {raw.shape}")
    if raw.dtype not in (np.uint16, np.uint8, np.float32):
        raise DatasetError(f"{path}: depth image must be 16-bit, got {raw.dtype}")
    d = raw.astype(np.float32)
    if raw.dtype != np.float32:
        d = d / float(scale)
    d = geometry.check_depth(d, name="depth", source=path, allow_nonfinite=False)
    if size is not None:
        d = resize_nearest(d, size)
    return d


def load_color(path: Path, size: tuple[int, int]) -> np.ndarray:
    img = read_image(path)
    img = geometry.check_image(img, name="color", source=path)
    if img.shape[:2] != tuple(size):
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return img


def load_label_png(path: Path, size: tuple[int, int], num_classes: int,
                   mapping: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Label image → int64 (H, W), nearest-resized; values ≥ num_classes other than 255 are an error."""
    raw = read_image(path, rgb=False)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: label image must be single-channel, got shape {raw.shape}")
    lab = raw.astype(np.int64)
    if mapping is not None:
        lab = mapping(lab)
    lab = resize_nearest(lab, size)
    bad = (lab >= num_classes) & (lab != IGNORE_INDEX) | (lab < 0)
    if bad.any():
        raise DatasetError(f"{path}: label values {np.unique(lab[bad])[:10].tolist()} outside 0..{num_classes - 1} "
                           f"(255 = ignore)")
    return lab


def _find_color(scene_dir: Path) -> dict[str, Path]:
    cdir = scene_dir / "color"
    out = {}
    for p in cdir.iterdir():
        if p.suffix.lower() in COLOR_EXTS and not p.name.startswith("."):
            out[p.stem] = p
    return out


def read_scene_frames(
    scene_dir: Path,
    scene_id: str,
    size: tuple[int, int],
    depth_scale: float,
    label_loader: Callable[[str], np.ndarray] | None,
    skipped: list[str],
) -> list[Frame]:
    """Build the lazily loaded frames of one scene directory (canonical / ScanNet export layout)."""
    colors = _find_color(scene_dir)
    if not colors:
        raise DatasetError(f"{scene_dir / 'color'}: no colour images")
    depth_dir, pose_dir = scene_dir / "depth", scene_dir / "pose"
    K_path = scene_dir / "intrinsic" / "intrinsic_depth.txt"
    K_depth = geometry.check_intrinsics(load_matrix(K_path), name="intrinsic_depth", source=K_path)

    frames = []
    for fid in sorted(colors, key=natural_key):
        pose_path = pose_dir / f"{fid}.txt"
        depth_path = depth_dir / f"{fid}.png"
        if not depth_path.is_file():
            raise FileNotFoundError(f"missing depth file for frame {fid}: {depth_path}")
        m = load_matrix(pose_path, ((4, 4),))
        if not np.all(np.isfinite(m)):
            skipped.append(str(pose_path))
            continue
        pose = geometry.check_pose(m, name="pose", source=pose_path)

        def depth_and_K(depth_path=depth_path):
            return load_depth_png(depth_path, depth_scale, size)

        def K_loader(depth_path=depth_path):
            hw = _image_size(depth_path)
            return geometry.scale_intrinsics(K_depth, hw, size)

        frames.append(Frame(
            scene_id, fid,
            rgb=lambda p=colors[fid]: load_color(p, size),
            depth=depth_and_K,
            K=K_loader,
            world_T_cam=pose,
            labels=(lambda fid=fid: label_loader(fid)) if label_loader is not None else None,
            source=scene_dir,
        ))
    return frames


_size_cache: dict[str, tuple[int, int]] = {}


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file (cached per directory: all frames of a scene share a sensor)."""
    key = str(Path(path).parent)
    if key not in _size_cache:
        img = read_image(path, rgb=False)
        _size_cache[key] = img.shape[:2]
    return _size_cache[key]


def read_meta(root: Path) -> dict:
    path = Path(root) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"missing dataset description: {path}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON ({e})") from None
    for k in ("class_names", "splits"):
        if k not in meta:
            raise DatasetError(f"{path}: missing key {k!r}")
    return meta


def expand_splits(splits: dict[str, list[str]], scenes: dict[str, list[Frame]], where: Path) -> dict[str, list[str]]:
    """Split entries (scene ids or frame keys) → frame keys."""
    out = {}
    for name, entries in splits.items():
        keys: list[str] = []
        for e in entries:
            if "/" in e:
                keys.append(e)
            elif e in scenes:
                keys.extend(f.key for f in scenes[e])
            else:
                raise DatasetError(f"{where}: split {name!r} names unknown scene {e!r}")
        out[name] = keys
    return out


def read_canonical(root: str | Path, height: int | None = None, width: int | None = None) -> RGBDDataset:
    """Open a dataset in the canonical layout (see module docstring)."""
    root = Path(root)
    meta = read_meta(root)
    size = (int(height or meta.get("height", 240)), int(width or meta.get("width", 320)))
    class_names = list(meta["class_names"])
    scale = float(meta.get("depth_scale", 1000.0))
    scenes: dict[str, list[Frame]] = {}
    skipped: list[str] = []
    for scene_dir in sorted((p for p in root.iterdir() if (p / "color").is_dir()), key=lambda p: natural_key(p.name)):
        sid = scene_dir.name
        label_dir = scene_dir / "label"
        label_loader = None
        if label_dir.is_dir():
            def label_loader(fid, label_dir=label_dir):
                return load_label_png(label_dir / f"{fid}.png", size, len(class_names))
        scenes[sid] = read_scene_frames(scene_dir, sid, size, scale, label_loader, skipped)
    if not scenes:
        raise DatasetError(f"{root}: no scene directories (expected <root>/<scene>/color/...)")
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} frames with non-finite poses, e.g. {skipped[0]}", stacklevel=2)
    splits = expand_splits(meta["splits"], scenes, root / META_FILE)
    return RGBDDataset(root=root, format="viewal", class_names=class_names, scenes=scenes, splits=splits,
                       height=size[0], width=size[1], meta=meta)


# ---------------------------------------------------------------------------------------------- writing

def _matrix_text(m: np.ndarray) -> str:
    return "\n".join(" ".join(f"{x:.9g}" for x in row) for row in np.asarray(m)) + "\n"


def write_scene_intrinsics(root: str | Path, scene_id: str, K: np.ndarray, K_color: np.ndarray | None = None) -> None:
    """Write ``intrinsic_depth.txt`` and ``intrinsic_color.txt`` (4×4, ScanNet style)."""
    d = Path(root) / scene_id / "intrinsic"
    for name, k in (("intrinsic_depth.txt", K), ("intrinsic_color.txt", K if K_color is None else K_color)):
        m = np.eye(4)
        m[:3, :3] = geometry.check_intrinsics(k, name=name)
        write_text(d / name, _matrix_text(m))


def write_frame(root: str | Path, scene_id: str, frame_id: str, *, rgb: np.ndarray, depth: np.ndarray,
                world_T_cam: np.ndarray, labels: np.ndarray | None = None, depth_scale: float = 1000.0,
                color_ext: str = ".jpg", jpeg_quality: int = 95) -> None:
    """Write one frame in the canonical layout (every file atomically)."""
    sdir = Path(root) / scene_id
    rgb = geometry.check_image(rgb, name="rgb", source=f"{scene_id}/{frame_id}")
    depth = geometry.check_depth(depth, name="depth", source=f"{scene_id}/{frame_id}", shape=rgb.shape[:2])
    pose = geometry.check_pose(world_T_cam, source=f"{scene_id}/{frame_id}")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if color_ext == ".jpg" else []
    write_image(sdir / "color" / f"{frame_id}{color_ext}", rgb, params=params)
    mm = np.clip(np.round(depth * depth_scale), 0, 65535).astype(np.uint16)
    write_image(sdir / "depth" / f"{frame_id}.png", mm, rgb=False)
    write_text(sdir / "pose" / f"{frame_id}.txt", _matrix_text(pose))
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != rgb.shape[:2]:
            raise ValueError(f"labels of {scene_id}/{frame_id}: shape {lab.shape} != image {rgb.shape[:2]}")
        if lab.min() < 0 or lab.max() > 255:
            raise ValueError(f"labels of {scene_id}/{frame_id}: values must be 0..255")
        write_image(sdir / "label" / f"{frame_id}.png", lab.astype(np.uint8), rgb=False)


def write_meta(root: str | Path, *, class_names: list[str], splits: dict[str, list[str]], height: int, width: int,
               depth_scale: float = 1000.0, **extra) -> None:
    """Write ``viewal.json`` (atomically)."""
    meta = {"format": "viewal", "version": 1, "class_names": list(class_names), "height": int(height),
            "width": int(width), "depth_scale": depth_scale, "ignore_index": IGNORE_INDEX, "splits": splits}
    meta.update(extra)
    write_json(Path(root) / META_FILE, meta)
