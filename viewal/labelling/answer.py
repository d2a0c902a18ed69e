"""A scripted labeller: answers an export of region queries from a labelled copy of the dataset, through the
same files a person returns (PNG label maps, a COCO file, Label Studio's JSON export).

It lets a team try the whole loop before anyone labels (``viewal query answer``), and the tests prove with it
that the human path (export → files → import) ends where the simulated oracle does. Inside each asked region
the answer is the ground truth, one class per brush or annotation, as a careful person would give it.

>>> path = answer_export("runs/team/queries/cycle-1", labelled_dataset)   # doctest: +SKIP
>>> # then: viewal query import <path> --run runs/team
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.io import write_image, write_json
from viewal.labelling.formats import brush_encode, coco_encode
from viewal.labelling.hitl import COCO_LABELS_FILE, IGNORE_INDEX, export_file, query_region, read_queries_json
from viewal.labelling.labelstudio import FROM_NAME, TO_NAME

__all__ = ["answer_export", "ground_truth_of", "LABEL_STUDIO_ANSWERS"]

#: file the Label Studio answers are written to, in the export's ``label_studio/`` folder
LABEL_STUDIO_ANSWERS = "answers.json"


def ground_truth_of(dataset: Any, entry: dict) -> np.ndarray:
    """(H, W) int64 ground truth of a ``queries.json`` entry's frame; ValueError naming the frame when the
    dataset has no labels for it or another size."""
    frame = dataset.frame(str(entry["scene_id"]), str(entry["frame_id"]))
    if not frame.has_labels:
        raise ValueError(f"scripted labeller: frame {frame.key} has no labels in {dataset.root}")
    gt = np.asarray(frame.labels, dtype=np.int64)
    if gt.shape != (int(entry["height"]), int(entry["width"])):
        raise ValueError(f"scripted labeller: frame {frame.key} is {gt.shape[1]}x{gt.shape[0]} in {dataset.root}, "
                         f"the export's is {entry['width']}x{entry['height']}; open the dataset at the run's size")
    return gt


def _classes_in(gt: np.ndarray, region: np.ndarray) -> list[int]:
    vals = gt[region]
    return [int(c) for c in np.unique(vals[vals != IGNORE_INDEX])]


def answer_export(export_dir: str | Path, dataset: Any) -> Path:
    """Answer every query of an export (a folder with ``queries.json``) from ``dataset``'s labels.

    Writes what a labeller returns, by the export's format: ``labels/<name>.png`` (png), ``labels.json``
    (coco), or Label Studio's JSON export of the project ``label_studio/answers.json`` (label-studio; one
    annotation per task, one brush per class). Returns what ``viewal query import`` takes: the export folder,
    or the Label Studio file."""
    d = Path(export_dir)
    doc = read_queries_json(d)
    fmt = doc.get("label_format", "png")
    entries = doc["queries"]
    if fmt == "png":
        for e in entries:
            region = query_region(d, e)
            gt = ground_truth_of(dataset, e)
            write_image(export_file(d, e["label"], "label"),
                        np.where(region, gt, IGNORE_INDEX).astype(np.uint8), rgb=False)
        return d
    if fmt == "coco":
        import json

        coco = json.loads((d / "coco.json").read_text())
        anns = []
        for e in entries:
            region = query_region(d, e)
            gt = ground_truth_of(dataset, e)
            for c in _classes_in(gt, region) or [None]:  # nothing labellable: one empty annotation (a void answer)
                seg = region & (gt == c) if c is not None else np.zeros_like(region)
                anns.append({"id": len(anns) + 1, "image_id": e["index"] + 1, "category_id": 1 if c is None else c + 1,
                             "segmentation": coco_encode(seg), "iscrowd": 0})
        coco["annotations"] = anns
        write_json(d / COCO_LABELS_FILE, coco)
        return d
    if fmt == "label-studio":
        import json

        names = doc.get("class_names") or [str(c) for c in range(int(doc["num_classes"]))]
        tasks = json.loads((d / "label_studio" / "tasks.json").read_text())
        by_index = {e["index"]: e for e in entries}
        out = []
        for k, task in enumerate(tasks):
            e = by_index[task["data"]["index"]]
            region = query_region(d, e)
            gt = ground_truth_of(dataset, e)
            h, w = gt.shape
            result = [{"id": f"a{k}-{c}", "type": "brushlabels", "from_name": FROM_NAME, "to_name": TO_NAME,
                       "origin": "manual", "original_width": w, "original_height": h, "image_rotation": 0,
                       "value": {"format": "rle", "rle": brush_encode(region & (gt == c)), "brushlabels": [names[c]]}}
                      for c in _classes_in(gt, region)]
            out.append({"id": k + 1, "data": task["data"], "predictions": task.get("predictions", []),
                        "annotations": [{"id": k + 1, "completed_by": {"email": "scripted-labeller@localhost"},
                                         "was_cancelled": False, "result": result}]})
        path = d / "label_studio" / LABEL_STUDIO_ANSWERS
        write_json(path, out)
        return path
    raise ValueError(f"{d / 'queries.json'}: unknown label_format {fmt!r}")
