"""The canonical on-disk layout (``format="viewal"``) = ScanNet's exported-frames layout.

::

    <root>/viewal.json                       class names, splits, working resolution
    <root>/<scene>/color/<id>.jpg|png        RGB (any size; resized to the working size, area filter)
    <root>/<scene>/depth/<id>.png            uint16 depth in millimetres (``depth_scale`` units/m), 0 = invalid
    <root>/<scene>/pose/<id>.txt             4×4 camera-to-world
    <root>/<scene>/intrinsic/intrinsic_depth.txt   4×4 (or 3×3) intrinsics of the depth image
    <root>/<scene>/intrinsic/intrinsic_color.txt   4×4 (or 3×3) intrinsics of the colour image
    <root>/<scene>/label/<id>.png            uint8 class id, 255 = ignore (optional, per scene and per frame)

``viewal.json``::

    {"format": "viewal", "class_names": [...], "height": 240, "width": 320, "depth_scale": 1000,
     "splits": {"train": ["scene_a", "scene_b/000010", ...], "val": [...], "test": [...]}}

A split entry is a scene id (all its frames) or a frame key ``"<scene>/<frame>"``.

Depth is resized with nearest neighbour (never interpolated across depth edges) and the depth
intrinsics are scaled to match; colour is resized to the same working size. Frames whose pose is
non-finite (ScanNet writes ``-inf`` when tracking failed) are reported once and skipped.

Labels are optional: a scene without ``label/`` or a frame without its label file opens with
``Frame.labels`` None (``Frame.has_labels`` False); only what needs ground truth refuses such a frame.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from viewal.core import geometry
from viewal.core.io import read_image, write_image, write_json, write_text

from .base import IGNORE_INDEX, SPLITS, DatasetError, Frame, RGBDDataset

__all__ = ["read_canonical", "write_frame", "write_scene_intrinsics", "write_meta", "load_pose", "load_matrix",
           "load_depth_png", "load_color", "load_label_png", "resize_nearest", "natural_key", "META_FILE",
           "make_frame", "read_scene_frames", "pose_or_skip", "warn_skipped", "select_frames", "image_shape",
           "viewal_label_shift", "read_split_lists", "default_splits", "resolve_splits", "expand_splits", "label_files",
           "optional_labels"]

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


def _check_native_shape(a: np.ndarray, native_shape: tuple[int, int] | None, path: Path, what: str) -> None:
    if native_shape is not None and a.shape[:2] != tuple(native_shape):
        raise DatasetError(f"{path}: {what} image is {a.shape[1]}x{a.shape[0]}, expected "
                           f"{native_shape[1]}x{native_shape[0]}")


def load_depth_png(path: Path, scale: float, size: tuple[int, int] | None = None, *,
                   native_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Depth image → float32 metres (H, W), nearest-resized to ``size`` (invalid stays 0).

    A uint16/uint8 image holds ``scale`` units per metre (1000 = millimetres); a float32 image
    (e.g. a 32-bit TIFF) already holds metres. NaN/inf in the file is an error naming the file;
    ``native_shape`` (H, W), if given, is the size the file must have.
    """
    raw = read_image(path, rgb=False)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: depth image must be single-channel, got shape {raw.shape}")
    if raw.dtype not in (np.uint16, np.uint8, np.float32):
        raise DatasetError(f"{path}: depth image must be 16-bit (or float32 metres), got {raw.dtype}")
    _check_native_shape(raw, native_shape, path, "depth")
    d = raw.astype(np.float32)
    if raw.dtype != np.float32:
        d = d / float(scale)
    d = geometry.check_depth(d, name="depth", source=path, allow_nonfinite=False)
    if size is not None:
        d = resize_nearest(d, size)
    return d


def load_color(path: Path, size: tuple[int, int], *, native_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Colour image → uint8 RGB (H, W, 3) at ``size`` (area filter when shrinking)."""
    img = read_image(path)
    img = geometry.check_image(img, name="color", source=path)
    _check_native_shape(img, native_shape, path, "colour")
    if img.shape[:2] != tuple(size):
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return img


def viewal_label_shift(raw: np.ndarray) -> np.ndarray:
    """ViewAL's label convention for NYU-style ids: ``k → k − 1``, ``0 → 255``, ``≥ 40`` (after the shift) ``→ 255``.

    ``raw`` (H, W) integer ids where 0 = unannotated and 1.. are classes (NYU40: 1..40, NYU13: 1..13)
    → int64 (H, W) with classes 0.. and 255 = ignore. NYU40 id 40 (otherprop) becomes class 39, so
    NYU40 keeps all 40 classes; only ids ≥ 41 (none in NYU40) would be dropped by the ``≥ 40`` rule.
    """
    lab = np.asarray(raw).astype(np.int64) - 1
    lab[(lab < 0) | (lab >= 40)] = IGNORE_INDEX
    return lab


def load_label_png(path: Path, size: tuple[int, int], num_classes: int,
                   mapping: Callable[[np.ndarray], np.ndarray] | None = None, *,
                   native_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label image → int64 (H, W), nearest-resized; values ≥ num_classes other than 255 are an error.

    ``mapping`` (applied at the file's own resolution) turns stored ids into class ids.
    """
    raw = read_image(path, rgb=False)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: label image must be single-channel, got shape {raw.shape}")
    _check_native_shape(raw, native_shape, path, "label")
    lab = raw.astype(np.int64)
    if mapping is not None:
        lab = mapping(lab)
    lab = resize_nearest(lab, size)
    bad = (lab >= num_classes) & (lab != IGNORE_INDEX) | (lab < 0)
    if bad.any():
        raise DatasetError(f"{path}: label values {np.unique(lab[bad])[:10].tolist()} outside 0..{num_classes - 1} "
                           f"(255 = ignore)")
    return lab


def label_files(label_dir: Path, ext: str = ".png") -> dict[str, Path]:
    """Frame name → label file, for every ``<name><ext>`` in ``label_dir`` (one directory listing; empty when the
    folder is absent). A frame missing here has no labels: it opens with ``Frame.labels`` None, never an error."""
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        return {}
    return {p.name[: -len(ext)]: p for p in label_dir.iterdir()
            if p.name.lower().endswith(ext) and not p.name.startswith(".")}


def optional_labels(files: dict[str, Path], name: str,
                    load: Callable[[Path], np.ndarray]) -> Callable[[], np.ndarray] | None:
    """Zero-argument loader ``load(file)`` of frame ``name``'s labels from ``files`` (:func:`label_files`), or
    None when the frame has no label file."""
    path = files.get(name)
    if path is None:
        return None
    return lambda: load(path)


def common_shape(paths: list[Path]) -> tuple[int, int]:
    """The most common (H, W) among a few image files (first wins a tie): the scene's native size, so that
    one odd file (even the first) is blamed itself when loaded, not every other file of the scene."""
    from collections import Counter

    shapes = [image_shape(p) for p in paths]
    return Counter(shapes).most_common(1)[0][0]


def image_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an image file (error names the file)."""
    img = read_image(path, rgb=False)
    return tuple(img.shape[:2])


def make_frame(
    scene_id: str,
    frame_id: str,
    *,
    color: Path | Callable[[], np.ndarray],
    depth: Path | Callable[[], np.ndarray],
    K_native: np.ndarray,
    native_shape: tuple[int, int],
    size: tuple[int, int],
    world_T_cam: np.ndarray,
    depth_scale: float = 1000.0,
    labels: Callable[[], np.ndarray] | None = None,
    source: str | Path | None = None,
    color_shape: tuple[int, int] | None = None,
) -> Frame:
    """The one way every file-based format builds a lazily loaded :class:`Frame`.

    Args:
        color: colour image (any size, or exactly ``color_shape`` if given; resized to ``size``:
            formats whose colour camera differs from the depth camera, like ScanNet's, simply resize
            colour to the depth geometry), or a zero-argument loader of (H, W, 3) uint8 at ``size``.
        depth: depth image path (``depth_scale`` units per metre, checked to be ``native_shape``),
            or a zero-argument loader returning float32 metres at ``size``.
        K_native: (3, 3) intrinsics of the depth image at ``native_shape`` (H, W); scaled to
            ``size`` with :func:`viewal.core.geometry.scale_intrinsics`.
        world_T_cam: (4, 4) camera-to-world pose (already checked).
        labels: zero-argument loader of (H, W) int64 class ids at ``size``, or None.
    """
    K = geometry.scale_intrinsics(geometry.check_intrinsics(K_native, source=source), native_shape, size)
    if callable(depth):
        depth_loader = depth
    else:
        def depth_loader(p=depth):
            return load_depth_png(p, depth_scale, size, native_shape=native_shape)
    rgb_loader = color if callable(color) else (lambda p=color: load_color(p, size, native_shape=color_shape))
    return Frame(scene_id, frame_id, rgb=rgb_loader, depth=depth_loader, K=K,
                 world_T_cam=world_T_cam, labels=labels, source=source)


def pose_or_skip(path: Path, skipped: list[str],
                 loader: Callable[[Path], np.ndarray] | None = None) -> np.ndarray | None:
    """Pose of a frame, or None (path appended to ``skipped``) when it is non-finite (tracking lost).

    A missing file, a malformed matrix or a finite non-rigid pose is an error naming the file.
    """
    m = load_matrix(path, ((4, 4),)) if loader is None else loader(path)
    if not np.all(np.isfinite(m)):
        skipped.append(str(path))
        return None
    return geometry.check_pose(m, name="pose", source=path)


def warn_skipped(root: Path, skipped: list[str]) -> None:
    """One warning naming how many frames were dropped for non-finite poses, and an example file."""
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} frame(s) with non-finite (e.g. -inf) poses, "
                      f"e.g. {skipped[0]}", stacklevel=3)


def select_frames(frame_ids: list[str], frame_skip: int = 1) -> list[str]:
    """Keep every ``frame_skip``-th frame: ids that are integers are kept when ``int(id) % frame_skip == 0``
    (ScanNet's numbering, as ViewAL's every-35th selection); other ids by position in sequence order."""
    if frame_skip < 1:
        raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
    if frame_skip == 1:
        return list(frame_ids)
    if all(f.isdigit() for f in frame_ids):
        return [f for f in frame_ids if int(f) % frame_skip == 0]
    return list(frame_ids[::frame_skip])


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
    load_label: Callable[[Path], np.ndarray] | None,
    skipped: list[str],
    *,
    frame_skip: int = 1,
    label_dir: str = "label",
) -> list[Frame]:
    """Build the lazily loaded frames of one scene directory (canonical / ScanNet export layout).

    Frames with a non-finite pose are appended to ``skipped`` and left out. The depth intrinsics are
    scaled from the size of the scene's depth images (read once from the first one) to ``size``.
    ``load_label(path) -> (H, W) int64`` reads ``<scene_dir>/<label_dir>/<id>.png``; a frame without that
    file (or every frame, when ``load_label`` is None or the folder is absent) has no labels.
    """
    colors = _find_color(scene_dir)
    if not colors:
        raise DatasetError(f"{scene_dir / 'color'}: no colour images")
    depth_dir, pose_dir = scene_dir / "depth", scene_dir / "pose"
    K_path = scene_dir / "intrinsic" / "intrinsic_depth.txt"
    K_depth = geometry.check_intrinsics(load_matrix(K_path), name="intrinsic_depth", source=K_path)

    labels = label_files(scene_dir / label_dir) if load_label is not None else {}
    frames: list[Frame] = []
    native_shape = None
    ids = select_frames(sorted(colors, key=natural_key), frame_skip)
    for fid in ids:
        depth_path = depth_dir / f"{fid}.png"
        if not depth_path.is_file():
            raise FileNotFoundError(f"missing depth file for frame {fid}: {depth_path}")
        pose = pose_or_skip(pose_dir / f"{fid}.txt", skipped)
        if pose is None:
            continue
        if native_shape is None:
            native_shape = common_shape([depth_dir / f"{i}.png" for i in ids[:5] if (depth_dir / f"{i}.png").is_file()])
        frames.append(make_frame(
            scene_id, fid, color=colors[fid], depth=depth_path, K_native=K_depth, native_shape=native_shape,
            size=size, world_T_cam=pose, depth_scale=depth_scale,
            labels=optional_labels(labels, fid, load_label) if load_label is not None else None,
            source=scene_dir,
        ))
    return frames


def read_meta(root: Path) -> dict:
    path = Path(root) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"missing dataset description: {path}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON ({e})") from None
    validate_meta(meta, path)
    return meta


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_meta(meta, path: Path) -> None:
    """Check a ``viewal.json`` against its schema; the error names the file and the key at fault.

    Required: ``class_names`` (list of distinct non-empty strings, at most 255), ``splits`` (object:
    split name -> list of scene ids or frame keys), ``height`` and ``width`` (integers >= 1: the size
    the files are resized to). Optional: ``format`` (``"viewal"``), ``depth_scale`` (number > 0,
    units per metre), ``ignore_index`` (255), ``version`` (integer). Other keys are kept unread."""
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    for k in ("class_names", "splits", "height", "width"):
        if k not in meta:
            raise DatasetError(f"{path}: missing key {k!r}")
    names = meta["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DatasetError(f"{path}: key 'class_names' must be a non-empty list of class-name strings, "
                           f"got {json.dumps(names)[:80]}")
    if len(set(names)) != len(names) or len(names) > 255:
        raise DatasetError(f"{path}: key 'class_names' must hold at most 255 distinct names")
    splits = meta["splits"]
    if not isinstance(splits, dict) or not all(isinstance(v, list) and all(isinstance(e, str) for e in v)
                                               for v in splits.values()):
        raise DatasetError(f"{path}: key 'splits' must be an object like {{\"train\": [\"scene0\", ...], "
                           f"\"val\": [...], \"test\": [...]}}, got {json.dumps(splits)[:80]}")
    for k in ("height", "width"):
        if not _is_int(meta[k]) or meta[k] < 1:
            raise DatasetError(f"{path}: key {k!r} must be an integer >= 1, got {meta[k]!r}")
    if "format" in meta and meta["format"] != "viewal":
        raise DatasetError(f"{path}: key 'format' must be 'viewal', got {meta['format']!r}")
    if "depth_scale" in meta:
        v = meta["depth_scale"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
            raise DatasetError(f"{path}: key 'depth_scale' (depth units per metre) must be a number > 0, got {v!r}")
    if "ignore_index" in meta and meta["ignore_index"] != IGNORE_INDEX:
        raise DatasetError(f"{path}: key 'ignore_index' must be {IGNORE_INDEX}, got {meta['ignore_index']!r}")
    if "version" in meta and not _is_int(meta["version"]):
        raise DatasetError(f"{path}: key 'version' must be an integer, got {meta['version']!r}")


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


def read_split_lists(files: dict[str, Path]) -> dict[str, list[str]]:
    """Split name → entries read from text files (one scene id or frame key per line; blanks and ``#`` skipped)."""
    out = {}
    for name, path in files.items():
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing split file for split {name!r}: {path}")
        out[name] = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return out


def default_splits(scenes: dict[str, list[Frame]], group: Callable[[str], str] = lambda s: s) -> dict[str, list[str]]:
    """Deterministic train/val/test frame keys when a dataset ships no split lists.

    Scenes are grouped by ``group(scene_id)`` (e.g. ScanNet rescans of one room stay together) and
    the groups sorted naturally. With G ≥ 3 groups: the last ``max(1, round(0.15 G))`` groups are
    ``test``, the same number before them ``val``, the rest ``train``. With 2 groups: the first is
    ``train``, the second both ``val`` and ``test``. With 1 group: its frames in sequence order are
    split 70 / 15 / 15 % (train / val / test, at least one frame each when there are ≥ 3).
    """
    groups: dict[str, list[str]] = {}
    for sid in scenes:
        groups.setdefault(group(sid), []).append(sid)
    names = sorted(groups, key=natural_key)
    keys = lambda gs: [f.key for g in gs for sid in groups[g] for f in scenes[sid]]  # noqa: E731
    G = len(names)
    if G >= 3:
        n = max(1, int(round(0.15 * G)))
        return {"train": keys(names[:G - 2 * n]), "val": keys(names[G - 2 * n:G - n]), "test": keys(names[G - n:])}
    if G == 2:
        return {"train": keys(names[:1]), "val": keys(names[1:]), "test": keys(names[1:])}
    allk = keys(names)
    N = len(allk)
    if N < 3:
        return {"train": allk, "val": allk, "test": allk}
    n_held = max(1, int(round(0.15 * N)))
    return {"train": allk[:N - 2 * n_held], "val": allk[N - 2 * n_held:N - n_held], "test": allk[N - n_held:]}


def resolve_splits(splits: dict[str, list[str]] | None, scenes: dict[str, list[Frame]], where: Path,
                   candidates: dict[str, list[Path]] | None = None,
                   group: Callable[[str], str] = lambda s: s) -> tuple[dict[str, list[str]], str]:
    """Frame-key splits from (in order) an explicit ``splits`` dict, split files found among
    ``candidates`` (split name → possible paths; the first that exists is used), else
    :func:`default_splits`. Entries naming scenes that are not on disk are dropped (official lists
    name every scene of a benchmark; a user often has a subset); ``train``, ``val``, ``test`` are always
    present (empty if not given). Returns ``(splits, origin)``.
    """
    origin = "argument"
    if splits is None and candidates:
        found = {name: next((p for p in paths if Path(p).is_file()), None) for name, paths in candidates.items()}
        if any(found.values()):
            splits = read_split_lists({k: v for k, v in found.items() if v is not None})
            origin = ", ".join(str(v) for v in found.values() if v is not None)
    if splits is None:
        return default_splits(scenes, group), "default (see canonical.default_splits)"
    frame_keys = {f.key for fs in scenes.values() for f in fs}
    kept = {name: [e for e in entries if (e in frame_keys if "/" in e else e in scenes)]
            for name, entries in splits.items()}
    for name in SPLITS:
        kept.setdefault(name, [])
    return expand_splits(kept, scenes, where), origin


def read_canonical(root: str | Path, height: int | None = None, width: int | None = None) -> RGBDDataset:
    """Open a dataset in the canonical layout (see module docstring)."""
    root = Path(root)
    meta = read_meta(root)
    size = (int(height or meta["height"]), int(width or meta["width"]))
    class_names = list(meta["class_names"])
    scale = float(meta.get("depth_scale", 1000.0))
    scenes: dict[str, list[Frame]] = {}
    skipped: list[str] = []

    def load_label(path: Path) -> np.ndarray:
        return load_label_png(path, size, len(class_names))

    for scene_dir in sorted((p for p in root.iterdir() if (p / "color").is_dir()), key=lambda p: natural_key(p.name)):
        sid = scene_dir.name
        scenes[sid] = read_scene_frames(scene_dir, sid, size, scale, load_label, skipped)
    if not scenes:
        raise DatasetError(f"{root}: no scene directories (expected <root>/<scene>/color/...)")
    warn_skipped(root, skipped)
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
