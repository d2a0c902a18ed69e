"""ScanNet, as exported by ScanNet's ``SensReader/python/reader.py`` (``format="scannet"``).

Expected layout (one directory per scan; frame ids are the exporter's integers ``0, 1, 2, …``)::

    <root>/<scene>/color/<i>.jpg                    1296×968 colour
    <root>/<scene>/depth/<i>.png                    640×480 uint16 millimetres, 0 = invalid
    <root>/<scene>/pose/<i>.txt                     4×4 camera-to-world (``-inf`` where tracking failed)
    <root>/<scene>/intrinsic/intrinsic_depth.txt    4×4, depth camera at 640×480
    <root>/<scene>/intrinsic/intrinsic_color.txt    4×4, colour camera (not used for geometry)
    <root>/<scene>/label-filt/<i>.png               optional (per scene and per frame): ScanNet raw
                                                    category ids (16-bit), from ``<scene>_2d-label-filt.zip``
    <root>/scannetv2-labels.combined.tsv            raw id → NYU40 table (needed when labels exist)
    <root>/scannetv2_{train,val,test}.txt           optional official scene lists (also looked for
                                                    next to ``<root>``)

Geometry. Like ViewAL, all geometry uses the **depth** camera: depth is read in millimetres
(÷ 1000), nearest-neighbour resized to the working size (default 320×240; never interpolated across
depth edges, invalid stays 0), and the depth intrinsics are scaled with
:func:`viewal.core.geometry.scale_intrinsics`. ScanNet's colour camera has other intrinsics (and a
different field of view); ViewAL simply resized colour to the depth's working size and ignored the
difference, and so does this reader — colour pixels are only approximately registered with depth.
ViewAL halves fx, fy, cx, cy for 640×480 → 320×240; ``scale_intrinsics`` (integer pixel centres)
gives cx' = (cx + 0.5)/2 − 0.5, i.e. 0.25 px less than ViewAL's cx/2 (same for cy).

Labels. ``label-filt`` raw ids → NYU40 ids (column ``nyu40id`` of the tsv, keyed by column ``id``;
raw ids missing from the tsv count as 0 = unannotated) → ViewAL's shift
(:func:`viewal.datasets.canonical.viewal_label_shift`): NYU40 id k ∈ 1..40 → class k − 1 (so 40
classes, 0 = wall … 39 = otherprop, names in :data:`NYU40_CLASSES`), 0 → 255 (ignore). Labels are
nearest-resized. A scene without ``label-filt/`` or a frame without its label image opens without labels
(``Frame.labels`` None).

Frames. ``frame_skip=k`` keeps frames whose id is a multiple of k (ViewAL used every 35th frame;
default 1 = all). Frames with a non-finite pose are skipped with one warning naming the count and
a file.

Splits. From ``splits=`` (split name → scene ids or ``scene/frame`` keys), else the official
``scannetv2_{train,val,test}.txt`` lists in ``<root>`` or next to it (scenes not on disk are
dropped), else deterministic defaults (:func:`viewal.datasets.canonical.default_splits` over rooms:
rescans ``sceneXXXX_YY`` of one room stay in one split).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from .base import DatasetError, RGBDDataset
from .canonical import load_label_png, natural_key, read_scene_frames, resolve_splits, viewal_label_shift, warn_skipped

__all__ = ["read_scannet", "looks_like", "load_label_map", "NYU40_CLASSES", "LABEL_MAP_FILE", "DEPTH_SCALE"]

DEPTH_SCALE = 1000.0
LABEL_MAP_FILE = "scannetv2-labels.combined.tsv"
LABEL_DIR = "label-filt"

#: NYU40 class names in order of class id 0..39 (= NYU40 id − 1, ViewAL's shift).
NYU40_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
]


def _is_scene_dir(p: Path) -> bool:
    return p.is_dir() and (p / "color").is_dir() and (p / "pose").is_dir() and (p / "intrinsic").is_dir()


def looks_like(path: Path) -> bool:
    """True if ``path`` holds at least one ScanNet export scene directory."""
    path = Path(path)
    return path.is_dir() and any(_is_scene_dir(p) for p in path.iterdir())


def load_label_map(path: Path) -> np.ndarray:
    """ScanNet raw category id → NYU40 id lookup table (int64 array indexed by raw id; unknown ids → 0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing ScanNet label map: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None or "id" not in reader.fieldnames or "nyu40id" not in reader.fieldnames:
            raise DatasetError(f"{path}: expected a tab-separated table with columns 'id' and 'nyu40id' "
                               f"(ScanNet's {LABEL_MAP_FILE}), got columns {reader.fieldnames}")
        pairs = []
        for i, row in enumerate(reader, start=2):
            try:
                raw, nyu = int(row["id"]), int(row["nyu40id"] or 0)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}:{i}: non-integer id/nyu40id "
                                   f"{row.get('id')!r}/{row.get('nyu40id')!r}") from None
            if not 0 <= nyu <= 40:
                raise DatasetError(f"{path}:{i}: nyu40id {nyu} outside 0..40")
            pairs.append((raw, nyu))
    if not pairs:
        raise DatasetError(f"{path}: empty label map")
    table = np.zeros(max(r for r, _ in pairs) + 1, dtype=np.int64)
    for raw, nyu in pairs:
        table[raw] = nyu
    return table


def _raw_to_classes(table: np.ndarray):
    def mapping(raw: np.ndarray) -> np.ndarray:
        nyu = np.zeros_like(raw)
        known = (raw >= 0) & (raw < len(table))
        nyu[known] = table[raw[known]]
        return viewal_label_shift(nyu)
    return mapping


def _room(scene_id: str) -> str:
    m = re.match(r"^(scene\d+)_\d+$", scene_id)
    return m.group(1) if m else scene_id


def read_scannet(
    root: str | Path,
    height: int = 240,
    width: int = 320,
    *,
    label_map: str | Path | None = None,
    frame_skip: int = 1,
    splits: dict[str, list[str]] | None = None,
    scenes: list[str] | None = None,
) -> RGBDDataset:
    """Open a directory of ScanNet ``reader.py`` exports (see module docstring).

    Args:
        root: directory holding ``<scene>/color|depth|pose|intrinsic[/label-filt]``.
        height, width: working size (default 320×240, ViewAL's).
        label_map: ``scannetv2-labels.combined.tsv``; default ``<root>/scannetv2-labels.combined.tsv``.
            Required (clear error otherwise) when any scene has ``label-filt/``.
        frame_skip: keep frames whose integer id is a multiple of this (ViewAL: 35).
        splits: split name → scene ids or ``scene/frame`` keys (overrides split files).
        scenes: only these scene ids (default: every scene directory).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ScanNet root is not a directory: {root}")
    size = (int(height), int(width))
    scene_dirs = sorted((p for p in root.iterdir() if _is_scene_dir(p)), key=lambda p: natural_key(p.name))
    if scenes is not None:
        missing = sorted(set(scenes) - {p.name for p in scene_dirs})
        if missing:
            raise DatasetError(f"{root}: requested scenes not found: {missing[:5]}")
        scene_dirs = [p for p in scene_dirs if p.name in set(scenes)]
    if not scene_dirs:
        raise DatasetError(f"{root}: no ScanNet scene directories (expected <root>/<scene>/color, pose, intrinsic)")

    has_labels = any((p / LABEL_DIR).is_dir() for p in scene_dirs)
    mapping = None
    map_path = Path(label_map) if label_map is not None else root / LABEL_MAP_FILE
    if has_labels:
        if not map_path.is_file():
            raise FileNotFoundError(
                f"{root}: scenes have {LABEL_DIR}/ label images (ScanNet raw ids) but the label map {map_path} "
                f"is missing; pass label_map= the path of ScanNet's {LABEL_MAP_FILE}")
        mapping = _raw_to_classes(load_label_map(map_path))

    frames_by_scene = {}
    skipped: list[str] = []
    load_label = None
    if mapping is not None:
        def load_label(path: Path) -> np.ndarray:
            return load_label_png(path, size, len(NYU40_CLASSES), mapping)
    for sdir in scene_dirs:
        frames = read_scene_frames(sdir, sdir.name, size, DEPTH_SCALE, load_label, skipped, frame_skip=frame_skip,
                                   label_dir=LABEL_DIR)
        if frames:
            frames_by_scene[sdir.name] = frames
    warn_skipped(root, skipped)
    if not frames_by_scene:
        raise DatasetError(f"{root}: no frames with a valid pose")

    candidates = {name: [root / f"scannetv2_{name}.txt", root.parent / f"scannetv2_{name}.txt"]
                  for name in ("train", "val", "test")}
    split_keys, origin = resolve_splits(splits, frames_by_scene, root, candidates, group=_room)
    meta = {"label_map": str(map_path) if has_labels else None, "frame_skip": frame_skip,
            "splits_from": origin, "skipped_frames": skipped, "depth_scale": DEPTH_SCALE}
    return RGBDDataset(root=root, format="scannet", class_names=list(NYU40_CLASSES), scenes=frames_by_scene,
                       splits=split_keys, height=size[0], width=size[1], meta=meta)
