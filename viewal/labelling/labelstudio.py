"""Label Studio round trip: region queries out as a labelling project, Label Studio's JSON export back in.

Export (``viewal query export --format label-studio``, :func:`write_label_studio`)::

    OUT/label_studio/config.xml     labelling config: the frame image, the dataset's classes as BrushLabels,
                                    and the reserved label "query region"
    OUT/label_studio/tasks.json     one task per queried region (import it into the project)
    OUT/images/<scene>_<frame>.png  the frames (embedded in the tasks as data URIs unless --image-url)

Each task's ``data`` holds the frame image, the region's score and view score, and its scene, frame,
cycle, region id, query id and rank, with the region itself as COCO RLE (``region``); its one
prediction (``score`` = the region's score, so Label Studio sorts tasks by it) pre-draws the region as a
brush labelled "query region", encoded with the SDK's own brush converter
(:func:`viewal.labelling.formats.brush_encode`). The annotator relabels that brush to the right class, or paints
classes over it.

Import (``viewal query import --format label-studio EXPORT.json``,
:func:`viewal.labelling.hitl.import_label_studio`) reads Label Studio's JSON export: each task's annotation
(one, not cancelled), every ``brushlabels`` result decoded with the SDK's converter, painted in order (later
results win where they overlap, as Label Studio draws them), "query region" pixels left unlabelled, pixels
outside the asked region dropped.
Errors name the file and the task; the ledger records the whole import in one transaction.

Live, without files: :mod:`viewal.labelling.lsbackend` is an ML backend that Label Studio calls for predictions (the
region pre-drawn with the model's classes inside it, :func:`prediction_results`) and whose webhooks record
each saved annotation in the run's ledger (:func:`task_label_map`).
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from viewal.core.io import write_json, write_text
from viewal.datasets.preview import class_palette
from viewal.labelling.formats import IGNORE_INDEX, LabelImportError, RleError, brush_decode, brush_encode, coco_decode

__all__ = ["QUERY_LABEL", "labelling_config", "check_labelling_config", "make_task", "brush_result",
           "prediction_results", "model_version", "png_data_uri", "write_label_studio",
           "task_label_map", "annotator_of"]

#: brush label of the pre-drawn region: "asked here, not labelled yet"
QUERY_LABEL = "query region"
FROM_NAME, TO_NAME = "label", "image"


def labelling_config(class_names: Sequence[str]) -> str:
    """Label Studio labelling config (XML): the image and one brush label per class plus :data:`QUERY_LABEL`."""
    names = list(class_names)
    if not names:
        raise ValueError("labelling_config: no class names")
    if QUERY_LABEL in names:
        raise ValueError(f"labelling_config: {QUERY_LABEL!r} is reserved for the pre-drawn region, not a class name")
    pal = class_palette(len(names))
    labels = "\n".join(f"    <Label value={quoteattr(n)} background=\"#{c[0]:02x}{c[1]:02x}{c[2]:02x}\"/>"
                       for n, c in zip(names, pal))
    head = f"Label the region drawn as '{QUERY_LABEL}' (score $score, $scene_id/$frame_id)"
    return (f"<View>\n  <Header value=\"{head}\"/>\n  <Image name=\"{TO_NAME}\" value=\"$image\" zoom=\"true\"/>\n"
            f"  <BrushLabels name=\"{FROM_NAME}\" toName=\"{TO_NAME}\">\n{labels}\n"
            f"    <Label value={quoteattr(QUERY_LABEL)} background=\"#ffff00\"/>\n  </BrushLabels>\n</View>\n")


def check_labelling_config(config: str, class_names: Sequence[str]) -> None:
    """Check that a Label Studio project's labelling config can hold viewal's answers: an ``Image`` named
    ``image`` and a ``BrushLabels`` named ``label`` on it with every class of the dataset and :data:`QUERY_LABEL`
    as labels (the config :func:`labelling_config` writes). Raises ValueError naming what is missing."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(config)
    except ET.ParseError as e:
        raise ValueError(f"the labelling config is not valid XML ({e})") from None
    brushes = [el for el in root.iter("BrushLabels") if el.get("name") == FROM_NAME]
    if not brushes:
        raise ValueError(f"the labelling config has no <BrushLabels name=\"{FROM_NAME}\">; create the project with "
                         f"viewal's config (viewal.labelling.labelstudio.labelling_config)")
    if brushes[0].get("toName") != TO_NAME or not any(el.get("name") == TO_NAME for el in root.iter("Image")):
        raise ValueError(f"the labelling config's BrushLabels {FROM_NAME!r} must label an <Image name=\"{TO_NAME}\">")
    have = {el.get("value") for el in brushes[0].iter("Label")}
    missing = [n for n in [*class_names, QUERY_LABEL] if n not in have]
    if missing:
        raise ValueError(f"the labelling config's BrushLabels {FROM_NAME!r} lacks the label(s) "
                         f"{', '.join(map(repr, missing))} of the run's dataset")


def brush_result(mask: np.ndarray, label: str, rid: str) -> dict:
    """A ``brushlabels`` result painting ``mask`` (H, W) bool with ``label``, as Label Studio stores it (RLE from
    the SDK's converter, :func:`viewal.labelling.formats.brush_encode`)."""
    h, w = mask.shape
    return {"id": rid, "type": "brushlabels", "from_name": FROM_NAME, "to_name": TO_NAME,
            "original_width": int(w), "original_height": int(h), "image_rotation": 0,
            "value": {"format": "rle", "rle": brush_encode(mask), "brushlabels": [label]}}


def prediction_results(mask: np.ndarray, rid: str, predicted: np.ndarray | None = None,
                       class_names: Sequence[str] | None = None) -> list[dict]:
    """The results of a query's prediction: the region pre-drawn as :data:`QUERY_LABEL` (id ``rid``), then,
    with ``predicted`` ((H, W) class ids of a model), one brush per predicted class inside the region (ids
    ``rid-<class id>``, painted over the region: accepting the prediction labels every pixel of it)."""
    mask = np.asarray(mask, dtype=bool)
    out = [brush_result(mask, QUERY_LABEL, rid)]
    if predicted is None:
        return out
    predicted = np.asarray(predicted)
    if predicted.shape != mask.shape:
        raise ValueError(f"prediction_results: predicted classes {predicted.shape} and region {mask.shape} differ")
    if class_names is None:
        raise ValueError("prediction_results: the class names are needed to name the predicted brushes")
    names = list(class_names)
    for c in np.unique(predicted[mask]):
        if not 0 <= int(c) < len(names):
            raise ValueError(f"prediction_results: predicted class {int(c)} outside 0..{len(names) - 1}")
        out.append(brush_result(mask & (predicted == c), names[int(c)], f"{rid}-{int(c)}"))
    return out


def make_task(entry: dict, image: str, mask: np.ndarray, predicted: np.ndarray | None = None,
              class_names: Sequence[str] | None = None) -> dict:
    """One Label Studio task for a ``queries.json`` entry (see module docstring).

    Args:
        entry: the query's entry (``scene_id``, ``frame_id``, ``score``, ``region`` ... see
            :mod:`viewal.labelling.hitl`).
        image: URL or data URI of the frame. mask: (H, W) bool, the region.
        predicted, class_names: (H, W) class ids of the model that chose the query and the dataset's class
            names: the prediction also paints the predicted classes inside the region
            (:func:`prediction_results`); without them it pre-draws the region alone.
    """
    keys = ("index", "query_id", "cycle", "scene_id", "frame_id", "region_id", "score", "view_score", "n_pixels",
            "height", "width", "region")
    data = {"image": image, **{k: entry.get(k) for k in keys}}
    result = prediction_results(mask, f"q{entry['index']}", predicted, class_names)
    cycle = entry.get("cycle")
    return {"data": data, "predictions": [{"model_version": model_version(cycle), "score": float(entry["score"]),
                                           "result": result}]}


def model_version(cycle: int | None) -> str:
    """The ``model_version`` of a cycle's predictions: the model that chose the cycle's queries."""
    return f"viewal cycle {cycle}"


def png_data_uri(rgb: np.ndarray) -> str:
    """A PNG data URI of an (H, W, 3) uint8 RGB image (how tasks embed their frame)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1]))
    if not ok:  # pragma: no cover
        raise OSError("PNG encoding of a frame failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_label_studio(out: str | Path, entries: Sequence[dict], class_names: Sequence[str],
                       image_url: str | None = None) -> Path:
    """Write ``out/label_studio/config.xml`` and ``tasks.json`` for ``queries.json`` entries whose frame images
    were exported to ``out/<entry["image"]>``; returns the tasks' path. ``image_url``: tasks refer to
    ``image_url/<entry["image"]>`` instead of embedding the image."""
    out = Path(out)
    tasks = []
    for e in entries:
        if not e.get("image"):
            raise ValueError(f"query {e['index']} ({e['scene_id']}/{e['frame_id']}): a Label Studio export needs "
                             f"the frame images; pass the dataset (--data)")
        img = f"{image_url.rstrip('/')}/{e['image']}" if image_url else _data_uri(out / e["image"])
        tasks.append(make_task(e, img, coco_decode(e["region"], (e["height"], e["width"]))))
    write_text(out / "label_studio" / "config.xml", labelling_config(class_names))
    path = out / "label_studio" / "tasks.json"
    write_json(path, tasks)
    return path


# --------------------------------------------------------------------------------------------- import

def annotator_of(ann: dict) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who is not None else "unknown"


def task_label_map(task: dict, class_names: Sequence[str], shape: tuple[int, int], what: str) -> np.ndarray | None:
    """(H, W) int64 class ids of a task's annotation (255 = not labelled), or None when it has none.

    Every ``brushlabels`` result is decoded (:func:`viewal.labelling.formats.brush_decode`) and painted in order;
    :data:`QUERY_LABEL` paints nothing. Raises LabelImportError (``what`` names the task) on several live
    annotations, other result types, unknown labels and sizes other than ``shape``.
    """
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not anns:
        return None
    if len(anns) > 1:
        raise LabelImportError(f"{what}: {len(anns)} annotations (ids {', '.join(str(a.get('id')) for a in anns)}); "
                               f"a region is labelled once: delete all but one in Label Studio")
    lab = np.full(shape, IGNORE_INDEX, dtype=np.int64)
    for k, r in enumerate(anns[0].get("result") or []):
        rwhat = f"{what}, result {r.get('id', k)}"
        if str(r.get("type", "")).lower() != "brushlabels":
            raise LabelImportError(f"{rwhat}: a {r.get('type')!r} result; only brush labels are read")
        v = r.get("value") or {}
        names = v.get("brushlabels") or []
        if len(names) != 1:
            raise LabelImportError(f"{rwhat}: a brush must carry one label, got {names}")
        name = names[0]
        if name == QUERY_LABEL:
            continue
        if name not in class_names:
            raise LabelImportError(f"{rwhat}: label {name!r} is not a class of the dataset ({', '.join(class_names)})")
        rshape = (r.get("original_height"), r.get("original_width"))
        if rshape != tuple(shape):
            raise LabelImportError(f"{rwhat}: brush on a {rshape[1]}x{rshape[0]} image, the frame is "
                                   f"{shape[1]}x{shape[0]} (WxH)")
        if v.get("format", "rle") != "rle":
            raise LabelImportError(f"{rwhat}: brush format {v.get('format')!r}; only 'rle' is read")
        try:
            m = brush_decode(v.get("rle"), shape, rwhat)
        except RleError as e:
            raise LabelImportError(str(e)) from None
        lab[m] = list(class_names).index(name)
    return lab
