"""Matterport3D, undistorted images, as ViewAL used it (``format="matterport"``).

Expected layout (Matterport3D's own directory names, one directory per house)::

    <root>/<house>/undistorted_camera_parameters/<house>.conf
    <root>/<house>/undistorted_color_images/<pano>_i<cam>_<yaw>.jpg     1280×1024 colour
    <root>/<house>/undistorted_depth_images/<pano>_d<cam>_<yaw>.png     1280×1024 uint16, 0.25 mm units
                                                                        (÷ 4000 → metres), 0 = invalid
    <root>/<house>/<label_dir>/<pano>_i<cam>_<yaw>.png                  optional, preprocessed labels:
                                                                        NYU40 ids 0..40 (0 = unannotated),
                                                                        any size (nearest-resized)
    <root>/scenes_{train,val,test}.txt                                  optional house lists

``label_dir`` defaults to ``label_nyu40``; a house without it, or an image without its label png, opens
with ``Frame.labels`` None. Matterport3D ships no per-image labels: they come from
rendering its annotated meshes (``house_segmentations``, mpcat40 / NYU40 categories) into each
camera, as ViewAL's preprocessing did; this reader takes the result as one 8- or 16-bit png per
colour image, named like the colour image.

``<house>.conf`` is read line by line: ``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` sets the
intrinsics of the following ``scan <depth file> <colour file> <16 numbers>`` lines, whose matrix
(row-major) is camera-to-world for Matterport's canonical camera, which looks down −z with +y up
(OpenGL). viewal's camera looks down +z with +y down (OpenCV), so each pose is converted by
flipping the camera's y and z axes: ``world_T_cam = M @ diag(1, −1, −1, 1)``. Matterport's notes
say the undistorted images have their origin at the bottom-left; the images are read as stored
(row 0 at the top) with ``cy`` as given, which is the usual practice with this convention.

Frames are named by the colour file's stem (``<pano>_i<cam>_<yaw>``), ordered as the conf lists
them; a house is a scene. As ViewAL used it: NYU40 labels with ViewAL's shift (class k − 1, 0 → 255;
names :data:`viewal.datasets.scannet.NYU40_CLASSES`), intrinsics scaled from 1280×1024 to the working
size (default 320×240 — a non-uniform scale, as in ViewAL, which divided fx, cx by 4 and fy, cy by
4.2667; here :func:`viewal.core.geometry.scale_intrinsics`, which differs from that by 0.375 px in cx and
≈ 0.38 px in cy), depth nearest-neighbour resized.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from viewal.core import geometry

from .base import DatasetError, RGBDDataset
from .canonical import (
    image_shape,
    label_files,
    load_label_png,
    make_frame,
    natural_key,
    optional_labels,
    resolve_splits,
    viewal_label_shift,
    warn_skipped,
)
from .scannet import NYU40_CLASSES

__all__ = ["read_matterport", "looks_like", "read_conf", "GL_TO_CV", "DEPTH_SCALE"]

DEPTH_SCALE = 4000.0
CONF_DIR = "undistorted_camera_parameters"
COLOR_DIR = "undistorted_color_images"
DEPTH_DIR = "undistorted_depth_images"
#: Right-multiplying an OpenGL-camera pose (looks down −z, y up) by this gives the OpenCV-camera pose.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _house_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / CONF_DIR).is_dir()),
                  key=lambda p: natural_key(p.name))


def looks_like(path: Path) -> bool:
    """True if ``path`` holds Matterport3D house directories with ``undistorted_camera_parameters``."""
    path = Path(path)
    return path.is_dir() and bool(_house_dirs(path))


def read_conf(path: Path) -> list[dict]:
    """Parse an ``undistorted_camera_parameters/<house>.conf``.

    Returns one dict per ``scan`` line, in file order: ``depth`` and ``color`` file names, ``K``
    (3, 3) from the latest ``intrinsics_matrix`` line, ``pose_gl`` (4, 4) as stored (not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing Matterport camera file: {path}")
    K = None
    scans = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        tok = line.split()
        if not tok:
            continue
        try:
            if tok[0] == "intrinsics_matrix":
                if len(tok) != 10:
                    raise DatasetError(f"{path}:{i}: intrinsics_matrix needs 9 values, got {len(tok) - 1}")
                K = geometry.check_intrinsics(np.array(tok[1:], dtype=np.float64).reshape(3, 3),
                                              source=f"{path}:{i}")
            elif tok[0] == "scan":
                if len(tok) != 19:
                    raise DatasetError(f"{path}:{i}: scan needs depth file, colour file and 16 values, "
                                       f"got {len(tok) - 1} fields")
                if K is None:
                    raise DatasetError(f"{path}:{i}: scan line before any intrinsics_matrix line")
                scans.append({"depth": tok[1], "color": tok[2], "K": K,
                              "pose_gl": np.array(tok[3:], dtype=np.float64).reshape(4, 4), "line": i})
        except ValueError as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{path}:{i}: non-numeric value ({e})") from None
    if not scans:
        raise DatasetError(f"{path}: no scan lines")
    return scans


def read_matterport(
    root: str | Path,
    height: int = 240,
    width: int = 320,
    *,
    label_dir: str = "label_nyu40",
    splits: dict[str, list[str]] | None = None,
) -> RGBDDataset:
    """Open Matterport3D houses in the undistorted layout (see module docstring).

    Args:
        height, width: working size (ViewAL: 320×240).
        label_dir: per-house directory of preprocessed NYU40 label pngs (optional, per house and per image).
        splits: split name → house ids or ``house/frame`` keys; default ``<root>/scenes_{train,val,test}.txt``
            (Matterport's benchmark lists), else :func:`viewal.datasets.canonical.default_splits`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Matterport3D root is not a directory: {root}")
    size = (int(height), int(width))
    houses = _house_dirs(root)
    if not houses:
        raise DatasetError(f"{root}: no Matterport3D house directories "
                           f"(expected <root>/<house>/{CONF_DIR}/<house>.conf)")
    scenes = {}
    skipped: list[str] = []

    def load_label(path: Path) -> np.ndarray:
        return load_label_png(path, size, len(NYU40_CLASSES), viewal_label_shift)

    for hdir in houses:
        conf = hdir / CONF_DIR / f"{hdir.name}.conf"
        labels = label_files(hdir / label_dir)
        frames = []
        native_shape = None
        for scan in read_conf(conf):
            color = hdir / COLOR_DIR / scan["color"]
            depth = hdir / DEPTH_DIR / scan["depth"]
            for p in (color, depth):
                if not p.is_file():
                    raise FileNotFoundError(f"missing image named in {conf}:{scan['line']}: {p}")
            where = f"{conf}:{scan['line']}"
            if not np.all(np.isfinite(scan["pose_gl"])):
                skipped.append(where)
                continue
            pose = geometry.check_pose(scan["pose_gl"] @ GL_TO_CV, source=where)
            if native_shape is None:
                native_shape = image_shape(depth)
            fid = Path(scan["color"]).stem
            frames.append(make_frame(hdir.name, fid, color=color, depth=depth, K_native=scan["K"],
                                     native_shape=native_shape, size=size, world_T_cam=pose, depth_scale=DEPTH_SCALE,
                                     labels=optional_labels(labels, fid, load_label), source=where))
        if frames:
            scenes[hdir.name] = frames
    warn_skipped(root, skipped)
    if not scenes:
        raise DatasetError(f"{root}: no frames with a valid pose")
    candidates = {name: [root / f"scenes_{name}.txt"] for name in ("train", "val", "test")}
    split_keys, origin = resolve_splits(splits, scenes, root, candidates)
    meta = {"depth_scale": DEPTH_SCALE, "label_dir": label_dir, "splits_from": origin, "skipped_frames": skipped}
    return RGBDDataset(root=root, format="matterport", class_names=list(NYU40_CLASSES), scenes=scenes,
                       splits=split_keys, height=size[0], width=size[1], meta=meta)
