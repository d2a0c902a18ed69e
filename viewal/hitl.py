"""Human in the loop: region queries out as PNG masks + JSON, labelled masks back in, validated.

Export layout (``export_queries(queries, out_dir)``)::

    out_dir/queries.json              one entry per query (written last, atomically)
    out_dir/masks/<name>.png          uint8 region mask: 255 inside the region, 0 outside
    out_dir/previews/<name>.jpg       RGB crop around the region, outlined (when a dataset is given)
    out_dir/labels/                   where the labeller saves <name>.png

A labelled mask ``labels/<name>.png`` is a single-channel PNG of the frame's full size holding class
ids 0..C-1, and 255 for "not labelled". ``import_labels(out_dir, dataset)`` reads them back, checks
that each file exists, has the frame's size and only valid values (errors name the file), and returns
:class:`viewal.ledger.LabelItem` s with ``source="human"``.

Command line (against a ledger; :mod:`viewal.cli.query`)::

    viewal query export --ledger run.sqlite --out queries/ --data data/demo
    viewal query import --ledger run.sqlite --dir queries/ --data data/demo
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

from viewal.io import write_image, write_json

__all__ = ["export_queries", "import_labels", "read_queries_json", "LabelImportError", "QUERIES_FILE"]

QUERIES_FILE = "queries.json"
IGNORE_INDEX = 255


class LabelImportError(ValueError):
    """A labelled mask (or the queries file) is missing or invalid; the message names the file."""


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


def export_queries(queries: Sequence[Any], out_dir: str | Path, dataset: Any = None, previews: bool = True,
                   num_classes: int | None = None, class_names: Sequence[str] | None = None) -> Path:
    """Write region queries for a labeller (see module docstring).

    Args:
        queries: ``RegionQuery`` objects (``scene_id, frame_id, mask, score, region_id, view_score``;
            ``query_id``/``cycle`` are kept when set).
        out_dir: output directory (created).
        dataset: optional ``RGBDDataset``: RGB previews, class names and frame-size checks.
        previews: write RGB crop previews (needs ``dataset``).
        num_classes, class_names: recorded in the JSON (taken from ``dataset`` when given).
    Returns:
        path of ``queries.json``.
    """
    out = Path(out_dir)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        class_names = list(dataset.class_names)
        num_classes = len(class_names)
    elif class_names is not None and num_classes is None:
        num_classes = len(class_names)
    entries = []
    for i, q in enumerate(queries):
        mask = np.asarray(q.mask, dtype=bool)
        if mask.ndim != 2 or not mask.any():
            raise ValueError(f"query {i} ({q.scene_id}/{q.frame_id}): mask must be a non-empty (H, W) bool array")
        if dataset is not None:
            fr = dataset.frame(q.scene_id, q.frame_id)
            if mask.shape != (dataset.height, dataset.width):
                raise ValueError(f"query {i} ({fr.key}): mask {mask.shape} != frame size "
                                 f"{(dataset.height, dataset.width)}")
        name = query_name(i, q)
        write_image(out / "masks" / f"{name}.png", (mask * 255).astype(np.uint8), rgb=False)
        entry = {"index": i, "query_id": getattr(q, "query_id", None), "cycle": getattr(q, "cycle", -1),
                 "scene_id": str(q.scene_id), "frame_id": str(q.frame_id), "region_id": int(q.region_id),
                 "score": float(q.score), "view_score": None if q.view_score is None else float(q.view_score),
                 "height": int(mask.shape[0]), "width": int(mask.shape[1]), "n_pixels": int(mask.sum()),
                 "mask": f"masks/{name}.png", "label": f"labels/{name}.png", "preview": None}
        if previews and dataset is not None:
            write_image(out / "previews" / f"{name}.jpg", _preview(dataset.frame(q.scene_id, q.frame_id).rgb, mask))
            entry["preview"] = f"previews/{name}.jpg"
        entries.append(entry)
    doc = {"format": "viewal-queries", "version": 1, "num_classes": num_classes,
           "class_names": None if class_names is None else list(class_names), "ignore_index": IGNORE_INDEX,
           "instructions": "Save labels/<name>.png: single-channel PNG of the frame's size, class ids 0..C-1, "
                           "255 = not labelled.",
           "queries": entries}
    path = out / QUERIES_FILE
    write_json(path, doc)
    return path


def read_queries_json(directory: str | Path) -> dict:
    """The export's ``queries.json`` (errors name the file)."""
    path = Path(directory) / QUERIES_FILE
    if not path.is_file():
        raise LabelImportError(f"missing queries file: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LabelImportError(f"{path}: invalid JSON ({e})") from None
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


def import_labels(directory: str | Path, dataset: Any = None, num_classes: int | None = None,
                  restrict_to_query: bool = True, missing: str = "error") -> list:
    """Read labelled masks of an export back, validated.

    Args:
        directory: the export directory (with ``queries.json``).
        dataset: ``RGBDDataset`` giving the frame sizes and the class count (recommended).
        num_classes: class count when no dataset is given (default: the JSON's ``num_classes``).
        restrict_to_query: keep only labelled pixels inside the query's region mask.
        missing: ``"error"`` (default) or ``"skip"`` for queries without a labelled mask yet.
    Returns:
        ``viewal.ledger.LabelItem`` list (``source="human"``; mask = pixels with a class id).
    Raises:
        LabelImportError naming the file: missing file, wrong size, values outside 0..C-1 and 255,
        unknown frame.
    """
    from viewal.ledger import LabelItem

    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    d = Path(directory)
    doc = read_queries_json(d)
    C = num_classes or (dataset.num_classes if dataset is not None else doc.get("num_classes"))
    if C is None:
        raise LabelImportError(f"{d / QUERIES_FILE}: no class count; pass a dataset or num_classes")
    C = int(C)
    items = []
    for e in doc["queries"]:
        try:
            scene_id, frame_id, label_rel = str(e["scene_id"]), str(e["frame_id"]), e["label"]
        except KeyError as k:
            raise LabelImportError(f"{d / QUERIES_FILE}: query entry without {k}: {e}") from None
        path = export_file(d, label_rel, "label")
        if not path.is_file() and missing == "skip":
            continue
        lab = _read_label_png(path)
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
        mask = lab != IGNORE_INDEX
        if restrict_to_query:
            mpath = export_file(d, e.get("mask"), "mask")
            if not mpath.is_file():
                raise LabelImportError(f"missing query mask: {mpath}")
            qmask = _read_label_png(mpath) > 0
            if qmask.shape != lab.shape:
                raise LabelImportError(f"{mpath}: size differs from its labelled mask {path}")
            mask &= qmask
        if not mask.any():
            warnings.warn(f"{path}: no labelled pixels inside the query region; skipped", stacklevel=2)
            continue
        items.append(LabelItem(scene_id=scene_id, frame_id=frame_id, mask=mask,
                               labels=np.where(mask, lab, IGNORE_INDEX), source="human",
                               region_id=int(e.get("region_id", -1)), query_id=e.get("query_id")))
    return items
