"""ViewAL's own preprocessed layout (``format="viewal-original"``), e.g. its ``scannet-sample``.

Expected layout (frame name ``<scene>_<frame>``, e.g. ``scene0007_00_000035``: scene ``scene0007_00``,
frame ``000035``; the scene is the first ``scene_parts`` = 2 underscore-separated fields)::

    <root>/raw/selections/color/<name>.jpg        320×240 RGB
    <root>/raw/selections/depth/<name>.pgm        640×480 uint16 millimetres (m_depthShift), 0 = invalid
    <root>/raw/selections/label/<name>.png        320×240 uint8 labels (see below); same size as colour;
                                                  optional (a frame without its png has no labels)
    <root>/raw/selections/pose/<name>.txt         4×4 camera-to-world, space separated
    <root>/raw/selections/info/<scene>.txt        ScanNet sensor info: m_calibrationDepthIntrinsic (4×4, at
                                                  m_depthWidth × m_depthHeight), m_depthShift
    <root>/raw/selections/superpixel/<name>.png   ViewAL's SEEDS superpixels (16-bit ids), 320×240
    <root>/selections/{train,val,test}_frames.txt one frame name per line
    <root>/selections/seedset_<k>_frames.txt      ViewAL's seed sets → ``meta["seed_sets"]["seedset_<k>"]``
    <root>/dataset.lmdb                           optional: pickled (240, 320, 4) RGB + label arrays

Labels. The label pngs hold **raw NYU40 ids** (0 = unannotated, 1..40 = NYU40 classes): the real
sample's 37 label images contain exactly {0, 1, 2, 3, 8, 9, 28, 29, 33, 34, 38, 39, 40}. ViewAL
shifts them when building ``dataset.lmdb`` (uint8 ``label − 1`` so 0 wraps to 255; ``≥ 40`` after the
shift → 255); this reader applies the same shift
(:func:`viewal.datasets.canonical.viewal_label_shift`): class = NYU40 id − 1 (40 classes, names
:data:`viewal.datasets.scannet.NYU40_CLASSES`; 39 = otherprop), 255 = ignore. The lmdb arrays are
already shifted and are used as stored.

Geometry. Depth ÷ m_depthShift (1000) → metres, nearest-neighbour resized 640×480 → 320×240 (never
interpolated). ViewAL resized with PIL's default filter, which was nearest-neighbour: ViewAL pinned
Pillow 6.x, where ``Image.resize`` defaulted to NEAREST, and PIL keeps NEAREST as the default for 16-bit
images. Its shipped coverage tables are reproduced exactly with nearest-neighbour depth and a 0.1 m test
(bicubic depth gives recall 0.975 / 0.964; docs/bench_kernels.md); the depth intrinsics from the info file are
scaled with :func:`viewal.core.geometry.scale_intrinsics`. ViewAL simply halves fx, fy, cx, cy; with
integer pixel centres the exact scaling gives cx' = (cx + 0.5)/2 − 0.5, i.e. cx', cy' are 0.25 px
smaller than ViewAL's (159.5 vs 159.75 for the sample's cx = 319.5). Frames with non-finite poses are
skipped with a warning.

``dataset.lmdb`` holds Python pickles, and unpickling a file can run arbitrary code: it is read only
with ``allow_pickle=True``, and only when ``raw/selections/color`` is absent (the files are
preferred). Reading it needs the ``lmdb`` package (imported lazily).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from viewal.core import geometry
from viewal.core.io import read_image

from .base import IGNORE_INDEX, SPLITS, DatasetError, Frame, RGBDDataset
from .canonical import (
    default_splits,
    image_shape,
    label_files,
    load_label_png,
    make_frame,
    natural_key,
    optional_labels,
    pose_or_skip,
    resize_nearest,
    viewal_label_shift,
    warn_skipped,
)
from .scannet import NYU40_CLASSES

__all__ = ["read_viewal_original", "load_viewal_superpixels", "read_info", "split_name", "looks_like"]



def looks_like(path: Path) -> bool:
    path = Path(path)
    return (path / "raw" / "selections").is_dir()


def split_name(name: str, scene_parts: int = 2, where: object = None) -> tuple[str, str]:
    """``"scene0007_00_000035"`` → ``("scene0007_00", "000035")`` (scene = first ``scene_parts`` fields)."""
    parts = name.split("_")
    if len(parts) <= scene_parts:
        raise DatasetError(f"{where or name}: frame name {name!r} does not have the form "
                           f"<scene ({scene_parts} '_'-separated fields)>_<frame>")
    return "_".join(parts[:scene_parts]), "_".join(parts[scene_parts:])


def read_info(path: Path) -> dict:
    """ScanNet ``_info.txt`` (``key = value`` lines) → dict with ``K_depth`` (3, 3), ``depth_shape`` (H, W),
    ``depth_shift``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing scene info file: {path}")
    kv = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            kv[k.strip()] = v.strip()
    try:
        K = np.array(kv["m_calibrationDepthIntrinsic"].split(), dtype=np.float64).reshape(4, 4)
        shape = (int(kv.get("m_depthHeight", 480)), int(kv.get("m_depthWidth", 640)))
        shift = float(kv.get("m_depthShift", 1000))
    except KeyError as e:
        raise DatasetError(f"{path}: missing {e.args[0]}") from None
    except ValueError as e:
        raise DatasetError(f"{path}: malformed value ({e})") from None
    return {"K_depth": geometry.check_intrinsics(K, name="m_calibrationDepthIntrinsic", source=path),
            "depth_shape": shape, "depth_shift": shift}


class _Lmdb:
    """Lazy reader of ViewAL's ``dataset.lmdb`` (pickled (H, W, 4) uint8 RGB + shifted label)."""

    def __init__(self, path: Path):
        try:
            import lmdb  # noqa: F401
        except ImportError:
            raise ImportError(f"reading {path} needs the 'lmdb' package (pip install lmdb), which is not "
                              f"installed; or provide raw/selections/color and label images instead") from None
        self.path = path
        self._env = None

    @property
    def env(self):
        if self._env is None:
            import lmdb
            self._env = lmdb.open(str(self.path), subdir=self.path.is_dir(), readonly=True, lock=False,
                                  readahead=False, meminit=False)
        return self._env

    def get(self, key: str):
        with self.env.begin(write=False) as txn:
            raw = txn.get(key.encode("ascii"))
        if raw is None:
            raise KeyError(f"{self.path}: no entry {key!r}")
        return pickle.loads(raw)  # opt-in: allow_pickle=True

    def keys(self) -> list[str]:
        return [k.decode("ascii") if isinstance(k, bytes) else str(k) for k in self.get("__keys__")]

    def array(self, key: str) -> np.ndarray:
        a = np.asarray(self.get(key))
        if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8:
            raise DatasetError(f"{self.path}: entry {key!r} is not an (H, W, 4) uint8 array "
                               f"(got {a.shape} {a.dtype})")
        return a


def _lmdb_rgb(db: _Lmdb, key: str, size):
    import cv2
    rgb = np.ascontiguousarray(db.array(key)[:, :, :3])
    return rgb if rgb.shape[:2] == tuple(size) else cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _lmdb_labels(db: _Lmdb, key: str, size, num_classes: int):
    lab = resize_nearest(db.array(key)[:, :, 3].astype(np.int64), size)
    bad = (lab >= num_classes) & (lab != IGNORE_INDEX)
    if bad.any():
        raise DatasetError(f"{db.path}: entry {key!r}: label values {np.unique(lab[bad])[:10].tolist()} "
                           f"outside 0..{num_classes - 1} (255 = ignore)")
    return lab


def read_viewal_original(
    root: str | Path,
    height: int = 240,
    width: int = 320,
    *,
    allow_pickle: bool = False,
    scene_parts: int = 2,
) -> RGBDDataset:
    """Open a dataset in ViewAL's preprocessed layout (see module docstring).

    Args:
        height, width: working size (ViewAL's: 320×240).
        allow_pickle: permit reading ``dataset.lmdb`` (pickles) when the colour files are absent.
        scene_parts: number of leading ``_``-separated fields of a frame name that form the scene id.

    ``meta`` holds ``superpixel_dir`` (ViewAL's SEEDS superpixels; see :func:`load_viewal_superpixels`),
    ``seed_sets`` (frame keys of each ``seedset_<k>_frames.txt``), ``source`` (``"files"``/``"lmdb"``).
    """
    root = Path(root)
    sel = root / "raw" / "selections"
    if not sel.is_dir():
        raise FileNotFoundError(f"{root}: not in ViewAL's layout: missing directory {sel}")
    size = (int(height), int(width))
    num_classes = len(NYU40_CLASSES)
    color_dir, label_dir = sel / "color", sel / "label"
    lmdb_path = root / "dataset.lmdb"
    db = None
    if color_dir.is_dir():
        names = sorted((p.stem for p in color_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
                       key=natural_key)
        source = "files"
    elif lmdb_path.exists():
        if not allow_pickle:
            raise DatasetError(
                f"{root}: no {color_dir}; only {lmdb_path} holds the images, and it stores Python pickles — "
                f"unpickling a file can run arbitrary code. Pass allow_pickle=True if you trust this file.")
        db = _Lmdb(lmdb_path)
        names = sorted((k for k in db.keys() if not k.startswith("__")), key=natural_key)  # noqa: SIM118 (not a dict)
        source = "lmdb"
    else:
        raise FileNotFoundError(f"{root}: no colour images: missing {color_dir} (and no {lmdb_path})")
    if not names:
        raise DatasetError(f"{root}: no frames found ({source})")

    def color_file(name: str) -> Path:
        for ext in (".jpg", ".jpeg", ".png"):
            if (color_dir / f"{name}{ext}").is_file():
                return color_dir / f"{name}{ext}"
        raise FileNotFoundError(f"missing colour image {color_dir / name}.jpg")

    # ViewAL stores colour and labels at one size; every colour and label image must have it
    color_shape = image_shape(color_file(names[0])) if source == "files" else None
    labels = label_files(label_dir) if source == "files" else {}

    def load_label(path: Path) -> np.ndarray:
        return load_label_png(path, size, num_classes, viewal_label_shift, native_shape=color_shape)

    infos: dict[str, dict] = {}
    scenes: dict[str, list[Frame]] = {}
    name_to_key: dict[str, str] = {}
    skipped: list[str] = []
    skipped_names: set[str] = set()
    for name in names:
        sid, fid = split_name(name, scene_parts, where=root)
        if sid not in infos:
            infos[sid] = read_info(sel / "info" / f"{sid}.txt")
        info = infos[sid]
        depth = sel / "depth" / f"{name}.pgm"
        if not depth.is_file():
            raise FileNotFoundError(f"missing depth file for frame {name}: {depth}")
        pose = pose_or_skip(sel / "pose" / f"{name}.txt", skipped)
        if pose is None:
            skipped_names.add(name)
            continue
        if source == "files":
            frame = make_frame(sid, fid, color=color_file(name), depth=depth, K_native=info["K_depth"],
                               native_shape=info["depth_shape"], size=size, world_T_cam=pose,
                               depth_scale=info["depth_shift"], labels=optional_labels(labels, name, load_label),
                               source=sel, color_shape=color_shape)
        else:
            frame = make_frame(sid, fid, color=lambda n=name: _lmdb_rgb(db, n, size), depth=depth,
                               K_native=info["K_depth"], native_shape=info["depth_shape"], size=size,
                               world_T_cam=pose, depth_scale=info["depth_shift"],
                               labels=lambda n=name: _lmdb_labels(db, n, size, num_classes), source=lmdb_path)
        scenes.setdefault(sid, []).append(frame)
        name_to_key[name] = frame.key
    warn_skipped(root, skipped)
    if not scenes:
        raise DatasetError(f"{root}: no frames with a valid pose")

    def keys_of(path: Path) -> list[str]:
        out = []
        for i, ln in enumerate(path.read_text().splitlines(), start=1):
            n = ln.strip()
            if not n:
                continue
            if n not in name_to_key:
                if n in skipped_names:
                    continue
                raise DatasetError(f"{path}:{i}: frame {n!r} is not in {sel if source == 'files' else lmdb_path}")
            out.append(name_to_key[n])
        return out

    sdir = root / "selections"
    split_files = {s: sdir / f"{s}_frames.txt" for s in SPLITS}
    if any(p.is_file() for p in split_files.values()):
        splits = {s: keys_of(p) if p.is_file() else [] for s, p in split_files.items()}
        origin = str(sdir)
    else:
        splits, origin = default_splits(scenes), "default (see canonical.default_splits)"
    seed_sets = {p.name[: -len("_frames.txt")]: keys_of(p)
                 for p in sorted(sdir.glob("seedset_*_frames.txt"))} if sdir.is_dir() else {}
    meta = {"superpixel_dir": str(sel / "superpixel") if (sel / "superpixel").is_dir() else None,
            "seed_sets": seed_sets, "source": source, "splits_from": origin, "scene_parts": scene_parts,
            "skipped_frames": skipped,
            "label_values": "raw NYU40 ids in label/*.png, shifted on load: class = id - 1, 0 -> 255"}
    return RGBDDataset(root=root, format="viewal-original", class_names=list(NYU40_CLASSES), scenes=scenes,
                       splits=splits, height=size[0], width=size[1], meta=meta)


def load_viewal_superpixels(dataset: RGBDDataset, frame: Frame | str) -> np.ndarray:
    """ViewAL's own SEEDS superpixels of a frame → (H, W) int32 ids at the dataset's working size.

    ``frame`` is a :class:`Frame` or a key ``"scene/frame"``. Nearest-resized if the working size is not
    the stored 320×240. Errors name the file.
    """
    sp_dir = dataset.meta.get("superpixel_dir")
    if not sp_dir:
        raise FileNotFoundError(f"{dataset.root}: this dataset has no raw/selections/superpixel directory")
    f = dataset.frame(frame) if isinstance(frame, str) else frame
    path = Path(sp_dir) / f"{f.scene_id}_{f.frame_id}.png"
    sp = read_image(path, rgb=False)
    if sp.ndim != 2:
        raise DatasetError(f"{path}: superpixel image must be single-channel, got shape {sp.shape}")
    return resize_nearest(sp.astype(np.int32), (dataset.height, dataset.width))
