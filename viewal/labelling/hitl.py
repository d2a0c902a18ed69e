"""Human in the loop: region queries out for labellers, their labels back in, validated.

Export layout (``export_queries(queries, out_dir, format=...)``)::

    out_dir/queries.json              one entry per query, the region as COCO RLE (written last, atomically)
    out_dir/previews/<name>.jpg       RGB crop around the region, outlined (when a dataset is given)
    png:          out_dir/masks/<name>.png   uint8 region mask: 255 inside the region, 0 outside
                  out_dir/labels/            where the labeller saves <name>.png
    coco:         out_dir/coco.json          COCO skeleton (images, categories, regions); the labeller fills its
                                             annotations and saves it as out_dir/labels.json
                  out_dir/images/            the queried frames
    label-studio: out_dir/label_studio/      labelling config and tasks (:mod:`viewal.labelling.labelstudio`)
                  out_dir/images/            the queried frames

A labelled mask ``labels/<name>.png`` is a single-channel PNG of the frame's full size holding class
ids 0..C-1, and 255 for "not labelled". ``import_labels(out_dir, dataset)`` reads PNG or COCO labels back,
checks that each file exists, has the frame's size and only valid values (errors name the file), keeps
the pixels inside the asked region and returns :class:`viewal.runs.ledger.LabelItem` s with ``source="human"``
and their ``origin`` (file and annotator). Label Studio exports: :func:`import_label_studio`.
Mask codecs and the annotators' batches: :mod:`viewal.labelling.formats`. See docs/labelling.md.

Command line (against a ledger; :mod:`viewal.cli.query`)::

    viewal query export --ledger run.sqlite --out queries/ --data data/demo [--format coco] [--annotators 3]
    viewal query import queries/ --ledger run.sqlite --data data/demo
    viewal query import label-studio-export.json --ledger run.sqlite --data data/demo
    viewal query status --ledger run.sqlite
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.io import write_image, write_json
from viewal.labelling.formats import IGNORE_INDEX, LabelImportError, RleError, coco_decode, coco_encode
from viewal.labelling.labelstudio import annotator_of, task_label_map, write_label_studio
from viewal.runs.ledger import LabelItem

__all__ = ["export_queries", "import_labels", "import_label_studio", "read_queries_json", "label_items",
           "query_region", "coco_skeleton", "LabelImportError", "QUERIES_FILE", "FORMATS"]

QUERIES_FILE = "queries.json"



def _read_json(path: Path):
    """A JSON file of an export; invalid JSON raises :class:`LabelImportError` naming the file."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LabelImportError(f"{path}: invalid JSON ({e})") from None

def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(s)).strip("-") or "x"


def query_name(index: int, q: Any) -> str:
    """File stem of a query: ``q0003_<scene>_<frame>_r<region>``."""
    return f"q{index:04d}_{_safe(q.scene_id)}_{_safe(q.frame_id)}_r{int(q.region_id)}"


def _preview(rgb: np.ndarray, mask: np.ndarray, margin: int = 16) -> np.ndarray:
    """RGB crop (h, w, 3) uint8 around ``mask`` with the region outlined in yellow and the outside dimmed."""
    import cv2

    ys, xs = np.nonzero(mask)
    H, W = mask.shape
    y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, H)
    x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, W)
    img = np.asarray(rgb, dtype=np.uint8).copy()
    img[~mask] = (img[~mask] * 0.55).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, (255, 255, 0), 1)
    return img[y0:y1, x0:x1]


FORMATS = ("png", "coco", "label-studio")
COCO_LABELS_FILE = "labels.json"


def frame_image_name(q: Any) -> str:
    """File of a queried frame's RGB image in an export: ``images/<scene>_<frame>.png``."""
    return f"images/{_safe(q.scene_id)}_{_safe(q.frame_id)}.png"


def export_queries(queries: Sequence[Any], out_dir: str | Path, dataset: Any = None, previews: bool = True,
                   num_classes: int | None = None, class_names: Sequence[str] | None = None, *,
                   format: str = "png", ranks: Sequence[int] | None = None, annotator: str | None = None,
                   image_url: str | None = None) -> Path:
    """Write region queries for a labeller (see module docstring).

    Args:
        queries: ``RegionQuery`` objects (``scene_id, frame_id, mask, score, region_id, view_score``;
            ``query_id``/``cycle`` are kept when set).
        out_dir: output directory (created).
        dataset: optional ``RGBDDataset``: RGB previews, class names and frame-size checks.
        previews: write RGB crop previews (needs ``dataset``).
        num_classes, class_names: recorded in the JSON (taken from ``dataset`` when given).
        format: ``"png"`` (region masks as PNG, labels back as PNG), ``"coco"`` (regions as COCO RLE in
            ``queries.json``, a COCO skeleton ``coco.json`` whose ``annotations`` the labeller fills and saves
            as ``labels.json``) or ``"label-studio"`` (:mod:`viewal.labelling.labelstudio`: labelling config + tasks).
            Every format records each region as COCO RLE (``region``) in ``queries.json``.
        ranks: index of each query in its cycle (names ``q<rank>_...``; default ``0..n-1``): an annotator's
            batch keeps the cycle's numbering.
        annotator: name of the annotator this batch is for (recorded; names the import's source).
        image_url: ``label-studio``: tasks refer to ``image_url/images/...`` instead of embedding the frames.
    Returns:
        path of ``queries.json``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    out = Path(out_dir)
    (out / "labels" if format == "png" else out).mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        class_names = list(dataset.class_names)
        num_classes = len(class_names)
    elif class_names is not None and num_classes is None:
        num_classes = len(class_names)
    ranks = list(range(len(queries))) if ranks is None else [int(r) for r in ranks]
    if len(ranks) != len(queries):
        raise ValueError(f"ranks: {len(ranks)} given for {len(queries)} queries")
    entries = []
    for i, q in zip(ranks, queries):
        mask = np.asarray(q.mask, dtype=bool)
        if mask.ndim != 2 or not mask.any():
            raise ValueError(f"query {i} ({q.scene_id}/{q.frame_id}): mask must be a non-empty (H, W) bool array")
        if dataset is not None:
            fr = dataset.frame(q.scene_id, q.frame_id)
            if mask.shape != (dataset.height, dataset.width):
                raise ValueError(f"query {i} ({fr.key}): mask {mask.shape} != frame size "
                                 f"{(dataset.height, dataset.width)}")
        name = query_name(i, q)
        entry = {"index": i, "query_id": getattr(q, "query_id", None), "cycle": getattr(q, "cycle", -1),
                 "scene_id": str(q.scene_id), "frame_id": str(q.frame_id), "region_id": int(q.region_id),
                 "score": float(q.score), "view_score": None if q.view_score is None else float(q.view_score),
                 "height": int(mask.shape[0]), "width": int(mask.shape[1]), "n_pixels": int(mask.sum()),
                 "name": name, "region": coco_encode(mask), "mask": None, "label": None, "image": None,
                 "preview": None}
        if format == "png":
            write_image(out / "masks" / f"{name}.png", (mask * 255).astype(np.uint8), rgb=False)
            entry.update(mask=f"masks/{name}.png", label=f"labels/{name}.png")
        if dataset is not None:
            rgb = dataset.frame(q.scene_id, q.frame_id).rgb
            if previews:
                write_image(out / "previews" / f"{name}.jpg", _preview(rgb, mask))
                entry["preview"] = f"previews/{name}.jpg"
            if format != "png":
                entry["image"] = frame_image_name(q)
                if not (out / entry["image"]).is_file():
                    write_image(out / entry["image"], rgb)
        entries.append(entry)
    doc = {"format": "viewal-queries", "version": 2, "label_format": format, "annotator": annotator,
           "num_classes": num_classes, "class_names": None if class_names is None else list(class_names),
           "ignore_index": IGNORE_INDEX, "instructions": INSTRUCTIONS[format], "queries": entries}
    if format == "coco":
        write_json(out / "coco.json", coco_skeleton(entries, class_names, num_classes))
    elif format == "label-studio":
        write_label_studio(out, entries, class_names if class_names is not None else
                           [str(c) for c in range(int(num_classes or 0))], image_url=image_url)
    path = out / QUERIES_FILE
    write_json(path, doc)
    return path


INSTRUCTIONS = {
    "png": "Save labels/<name>.png: single-channel PNG of the frame's size, class ids 0..C-1, 255 = not labelled.",
    "coco": f"Fill the 'annotations' of coco.json (image_id, category_id, segmentation as COCO RLE or polygons; "
            f"later annotations win where they overlap) and save it as {COCO_LABELS_FILE}.",
    "label-studio": "Create a Label Studio project with label_studio/config.xml, import label_studio/tasks.json, "
                    "label, export the project as JSON and import that file with viewal query import.",
}


def coco_skeleton(entries: Sequence[dict], class_names: Sequence[str] | None, num_classes: int | None) -> dict:
    """A COCO dataset document for the queries: one image per query (``id`` = rank + 1, ``file_name`` the
    exported frame image or ``scene/frame``), the classes as categories (``id`` = class id + 1), the asked
    regions under ``regions`` (COCO RLE), and empty ``annotations`` for the labeller."""
    names = list(class_names) if class_names is not None else [str(c) for c in range(int(num_classes or 0))]
    return {"info": {"description": "viewal region queries; label inside each image's region"},
            "images": [{"id": e["index"] + 1, "file_name": e["image"] or f"{e['scene_id']}/{e['frame_id']}",
                        "height": e["height"], "width": e["width"], "query_id": e["query_id"]} for e in entries],
            "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)],
            "regions": [{"id": e["index"] + 1, "image_id": e["index"] + 1, "segmentation": e["region"],
                         "area": e["n_pixels"], "score": e["score"]} for e in entries],
            "annotations": []}


def read_queries_json(directory: str | Path) -> dict:
    """The export's ``queries.json`` (errors name the file)."""
    path = Path(directory) / QUERIES_FILE
    if not path.is_file():
        raise LabelImportError(f"missing queries file: {path}")
    doc = _read_json(path)
    if not isinstance(doc, dict) or "queries" not in doc:
        raise LabelImportError(f"{path}: not a viewal queries file (no 'queries' list)")
    return doc


def export_file(directory: Path, rel: Any, what: str) -> Path:
    """``directory / rel`` for a path named in ``queries.json``, refused (naming the entry) when it is
    absolute or leads outside the export folder (``../``, symlinks): an import reads only its own files."""
    if not isinstance(rel, str) or not rel:
        raise LabelImportError(f"{directory / QUERIES_FILE}: {what} path must be a relative path string, got {rel!r}")
    root = directory.resolve()
    path = (directory / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(root):
        raise LabelImportError(f"{directory / QUERIES_FILE}: {what} path {rel!r} leads outside the export folder "
                               f"{directory}; refused")
    return directory / rel


def _read_label_png(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise LabelImportError(f"missing labelled mask: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LabelImportError(f"{path}: not a readable image")
    if img.ndim == 3:
        if img.shape[2] >= 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
            img = img[..., 0]
        else:
            raise LabelImportError(f"{path}: labelled mask must be single-channel class ids, got {img.shape[2]} "
                                   f"colour channels")
    if not np.issubdtype(img.dtype, np.integer):
        raise LabelImportError(f"{path}: labelled mask must hold integer class ids, got {img.dtype}")
    return img.astype(np.int64)


def _coco_label_maps(d: Path, doc: dict, labels_file: str | Path | None, class_names: Sequence[str] | None,
                     C: int) -> tuple[Path, dict[int, np.ndarray]]:
    """The labeller's COCO file (default ``d/labels.json``) as class-id maps per query rank (255 = not
    labelled; later annotations win). Categories are matched by name to ``class_names`` when both have
    names, else ``category_id - 1`` is the class id. Errors name the file and the annotation."""
    path = Path(labels_file) if labels_file is not None else d / COCO_LABELS_FILE
    if not path.is_file():
        raise LabelImportError(f"missing COCO labels file: {path}")
    coco = _read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("annotations"), list):
        raise LabelImportError(f"{path}: not a COCO file (no 'annotations' list)")
    cat_class: dict[int, int] = {}
    for cat in coco.get("categories") or []:
        cid, name = cat.get("id"), cat.get("name")
        if class_names is not None and name is not None:
            if name not in class_names:
                raise LabelImportError(f"{path}: category {cid} {name!r} is not a class of the dataset "
                                       f"({', '.join(class_names)})")
            cat_class[int(cid)] = list(class_names).index(name)
    by_image = {e["index"] + 1: e for e in doc["queries"]}
    maps: dict[int, np.ndarray] = {}
    for k, ann in enumerate(coco["annotations"]):
        what = f"{path}: annotation {ann.get('id', k)}"
        image_id = ann.get("image_id")
        if image_id not in by_image:
            raise LabelImportError(f"{what}: image_id {image_id!r} is not a query of this export "
                                   f"({d / QUERIES_FILE})")
        cid = ann.get("category_id")
        cls = cat_class.get(cid, cid - 1 if isinstance(cid, int) else -1)
        if not 0 <= cls < C:
            raise LabelImportError(f"{what}: category_id {cid!r} is not a class (categories 1..{C})")
        e = by_image[image_id]
        shape = (int(e["height"]), int(e["width"]))
        seg = ann.get("segmentation")
        try:
            if isinstance(seg, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
                from pycocotools import mask as cocomask

                polys = cocomask.frPyObjects(seg, shape[0], shape[1])
                m = cocomask.decode(cocomask.merge(polys)).astype(bool)
            else:
                m = coco_decode(seg, shape, what)
        except RleError as err:
            raise LabelImportError(str(err)) from None
        lab = maps.setdefault(e["index"], np.full(shape, IGNORE_INDEX, dtype=np.int64))
        lab[m] = cls
    return path, maps


def import_labels(directory: str | Path, dataset: Any = None, num_classes: int | None = None,
                  restrict_to_query: bool = True, missing: str = "error", *,
                  labels_file: str | Path | None = None) -> list:
    """Read the labels of an export back, validated (the export's ``label_format`` says how: PNG class-id
    masks under ``labels/``, or a COCO file ``labels.json``; Label Studio exports: :mod:`viewal.labelling.labelstudio`).

    Args:
        directory: the export directory (with ``queries.json``).
        dataset: ``RGBDDataset`` giving the frame sizes and the class count (recommended).
        num_classes: class count when no dataset is given (default: the JSON's ``num_classes``).
        restrict_to_query: keep only labelled pixels inside the query's region mask.
        missing: ``"error"`` (default) or ``"skip"`` for queries without labels yet.
        labels_file: the labeller's COCO file (``coco`` exports; default ``directory/labels.json``).
    Returns:
        ``viewal.runs.ledger.LabelItem`` list (``source="human"``; mask = pixels with a class id; ``origin`` the
        labels' file or folder and the export's annotator).
    Raises:
        LabelImportError naming the file: missing file, wrong size, values outside 0..C-1 and 255,
        unknown frame.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    d = Path(directory)
    doc = read_queries_json(d)
    C = num_classes or (dataset.num_classes if dataset is not None else doc.get("num_classes"))
    if C is None:
        raise LabelImportError(f"{d / QUERIES_FILE}: no class count; pass a dataset or num_classes")
    C = int(C)
    fmt = doc.get("label_format", "png")
    if fmt == "label-studio":
        raise LabelImportError(f"{d / QUERIES_FILE}: a Label Studio export; import Label Studio's JSON export "
                               f"(viewal query import --format label-studio FILE)")
    if fmt not in ("png", "coco"):
        raise LabelImportError(f"{d / QUERIES_FILE}: unknown label_format {fmt!r}")
    names = list(dataset.class_names) if dataset is not None else doc.get("class_names")
    if fmt == "coco":
        source, coco_maps = _coco_label_maps(d, doc, labels_file, names, C)
    else:
        source, coco_maps = d / "labels", {}
    origin = f"{fmt} labels {source.resolve()}" + (f" (annotator {doc['annotator']})" if doc.get("annotator") else "")
    pairs = []
    for e in doc["queries"]:
        try:
            scene_id, frame_id = str(e["scene_id"]), str(e["frame_id"])
        except KeyError as k:
            raise LabelImportError(f"{d / QUERIES_FILE}: query entry without {k}: {e}") from None
        if fmt == "coco":
            path = source
            if e["index"] not in coco_maps:
                if missing == "skip":
                    continue
                raise LabelImportError(f"{path}: no annotation for query {e['index']} (image_id {e['index'] + 1}, "
                                       f"{scene_id}/{frame_id})")
            lab = coco_maps[e["index"]]
        else:
            path = export_file(d, e.get("label"), "label")
            if not path.is_file() and missing == "skip":
                continue
            lab = _read_label_png(path)
        pairs.append((e, path, lab))
    return label_items(d, pairs, dataset, C, restrict_to_query, origin)


def query_region(d: Path, e: dict, where: str | None = None) -> np.ndarray:
    """(H, W) bool region of a ``queries.json`` entry: its COCO RLE ``region``, or its PNG ``mask`` (version-1
    exports). Errors name the file (``where``: the entry's file, default ``d/queries.json``)."""
    if e.get("region") is not None:
        try:
            return coco_decode(e["region"], (int(e["height"]), int(e["width"])),
                               f"{where or d / QUERIES_FILE}: query {e.get('index')} region")
        except RleError as err:
            raise LabelImportError(str(err)) from None
    mpath = export_file(d, e.get("mask"), "mask")
    if not mpath.is_file():
        raise LabelImportError(f"missing query mask: {mpath}")
    return _read_label_png(mpath) > 0


def label_items(d: Path, pairs: Sequence[tuple[dict, Path, np.ndarray]], dataset: Any, C: int,
                restrict_to_query: bool, origin: str, where: str | None = None) -> list:
    """Validated ``LabelItem`` s from ``(query entry, labels' file, (H, W) class ids with 255 = not labelled)``:
    the frame exists and has the labels' size, class ids lie in 0..C-1, pixels outside the query's region are
    dropped (``restrict_to_query``); a query without a labelled pixel there is skipped with a warning."""
    items = []
    for e, path, lab in pairs:
        scene_id, frame_id = str(e["scene_id"]), str(e["frame_id"])
        if dataset is not None:
            try:
                dataset.frame(scene_id, frame_id)
            except KeyError:
                raise LabelImportError(f"{path}: frame {scene_id}/{frame_id} is not in the dataset") from None
            shape = (int(dataset.height), int(dataset.width))
        else:
            shape = (int(e["height"]), int(e["width"]))
        if lab.shape != shape:
            raise LabelImportError(f"{path}: size {lab.shape[1]}x{lab.shape[0]} (WxH) differs from the frame "
                                   f"{scene_id}/{frame_id} ({shape[1]}x{shape[0]})")
        bad = (lab != IGNORE_INDEX) & ((lab < 0) | (lab >= C))
        if bad.any():
            vals = np.unique(lab[bad])[:10].tolist()
            raise LabelImportError(f"{path}: class ids {vals} outside 0..{C - 1} (255 = not labelled), "
                                   f"e.g. at row {int(np.argwhere(bad)[0][0])}, column {int(np.argwhere(bad)[0][1])}")
        given = lab != IGNORE_INDEX
        mask = given
        if restrict_to_query:
            qmask = query_region(d, e, where)
            if qmask.shape != lab.shape:
                raise LabelImportError(f"{where or d / QUERIES_FILE}: region of query {e.get('index')} has another "
                                       f"size than its labels {path}")
            given = given & qmask
            # an answered query covers its region, as the simulated oracle's answers do: pixels left unlabelled
            # inside it were asked and are void (255), never asked again
            mask = qmask
        if not given.any():
            if not restrict_to_query:
                warnings.warn(f"{path}: no labelled pixels for query {e.get('index')} ({scene_id}/{frame_id}); "
                              f"skipped", stacklevel=3)
                continue
            # the labeller returned the region with no class in it (nothing labellable there): a void answer,
            # recorded as the simulated oracle records a region whose ground truth is all ignore
            warnings.warn(f"{path}: no labelled pixels inside the region of query {e.get('index')} "
                          f"({scene_id}/{frame_id}); recorded as void (255), not asked again", stacklevel=3)
        items.append(LabelItem(scene_id=scene_id, frame_id=frame_id, mask=mask,
                               labels=np.where(given, lab, IGNORE_INDEX), source="human",
                               region_id=int(e.get("region_id", -1)), query_id=e.get("query_id"), origin=origin))
    return items


def import_label_studio(path: str | Path, class_names: Sequence[str] | None, dataset: Any = None,
                        num_classes: int | None = None, missing: str = "error") -> list:
    """Label Studio's JSON export of a viewal project → validated ``LabelItem`` s (``source="human"``).

    Args:
        path: the JSON export (a list of tasks).
        class_names: the dataset's classes (brush labels are matched by name).
        dataset: ``RGBDDataset`` (frame existence and size checks), optional.
        num_classes: class count (default ``len(class_names)``).
        missing: ``"error"`` or ``"skip"`` for tasks without an annotation.
    Returns:
        one item per annotated task, ``origin`` naming the file, the task and its annotator.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    path = Path(path)
    if path.is_dir():
        raise LabelImportError(f"{path} is a folder; give the JSON file that Label Studio's Export (JSON) wrote")
    if not path.is_file():
        raise LabelImportError(f"missing Label Studio export: {path}")
    if not class_names:
        raise LabelImportError(f"{path}: no class names to match the brush labels with; pass the dataset (--data)")
    names = list(class_names)
    try:
        tasks = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LabelImportError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(tasks, list):
        raise LabelImportError(f"{path}: not a Label Studio JSON export (a list of tasks)")
    items = []
    for k, t in enumerate(tasks):
        what = f"{path}: task {t.get('id', k) if isinstance(t, dict) else k}"
        data = t.get("data") if isinstance(t, dict) else None
        need = ("index", "scene_id", "frame_id", "height", "width", "region")
        lacks = [key for key in need if not isinstance(data, dict) or data.get(key) is None]
        if lacks:
            raise LabelImportError(f"{what}: not a viewal task (its data lacks {', '.join(lacks)})")
        shape = (int(data["height"]), int(data["width"]))
        lab = task_label_map(t, names, shape, what)
        if lab is None:
            if missing == "skip":
                continue
            raise LabelImportError(f"{what} ({data['scene_id']}/{data['frame_id']}): not annotated yet "
                                   f"(--skip-missing imports the others)")
        ann = next(a for a in t["annotations"] if not a.get("was_cancelled"))
        origin = f"label-studio {path.resolve()} task {t.get('id', k)} (annotator {annotator_of(ann)})"
        items += label_items(path.parent, [(data, Path(what), lab)], dataset, int(num_classes or len(names)),
                             True, origin, where=what)
    return items
