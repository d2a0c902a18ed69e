"""viewal.labelling.labelstudio: the Label Studio round trip with the SDK's brush converter (no server), and end to end
against a real Label Studio server (slow; needs the ``label-studio`` command)."""
import base64
import json
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

pytest.importorskip("label_studio_sdk")

from twins import box_mask, labelling_scene
from viewal.cli import main as cli_main
from viewal.labelling.formats import brush_encode
from viewal.labelling.hitl import LabelImportError, export_queries, import_label_studio
from viewal.labelling.labelstudio import QUERY_LABEL
from viewal.runs.ledger import Ledger
from viewal.selection import RegionQuery

H, W = 10, 14
CLASSES = ["wall", "floor", "chair"]


@pytest.fixture()
def dataset(tmp_path):
    return labelling_scene(tmp_path / "data", H, W, seed=1, class_names=CLASSES)


def box(y, x, h, w):
    return box_mask(H, W, y, x, h, w)


def queries():
    return [RegionQuery("scene0", "000", box(1, 2, 4, 5), 0.9, region_id=3, view_score=0.4, cycle=2, query_id=7),
            RegionQuery("scene0", "001", box(5, 8, 4, 6), 0.7, region_id=11, cycle=2, query_id=8)]


def brush(mask, label, rid="r"):
    """A brush result as Label Studio's editor saves it (RLE from the SDK's converter)."""
    return {"id": rid, "type": "brushlabels", "from_name": "label", "to_name": "image", "origin": "manual",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"format": "rle", "rle": brush_encode(mask), "brushlabels": [label]}}


def ls_export(tasks, annotations):
    """Label Studio's JSON export of ``tasks`` (tasks.json entries) with one annotation per task (or None)."""
    out = []
    for k, (t, res) in enumerate(zip(tasks, annotations)):
        anns = [] if res is None else [{"id": 100 + k, "completed_by": {"email": f"ann{k}@example.com"},
                                        "result": res, "was_cancelled": False}]
        out.append({"id": 50 + k, "data": t["data"], "annotations": anns, "predictions": t["predictions"]})
    return out


def test_export_config_and_tasks(tmp_path, dataset):
    from label_studio_sdk.converter.brush import decode_rle

    out = tmp_path / "ls"
    export_queries(queries(), out, dataset=dataset, format="label-studio")
    root = ET.fromstring((out / "label_studio" / "config.xml").read_text())
    (bl,) = root.findall("BrushLabels")
    assert [lab.get("value") for lab in bl.findall("Label")] == CLASSES + [QUERY_LABEL]
    assert root.find("Image").get("value") == "$image" and bl.get("toName") == "image"
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    assert len(tasks) == 2
    for t, q in zip(tasks, queries()):
        d = t["data"]
        assert (d["scene_id"], d["frame_id"], d["cycle"], d["query_id"], d["region_id"]) == (
            q.scene_id, q.frame_id, 2, q.query_id, q.region_id)
        assert d["score"] == pytest.approx(q.score) and d["n_pixels"] == int(q.mask.sum())
        head, b64 = d["image"].split(",", 1)
        assert head == "data:image/png;base64"
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.array_equal(img, dataset.frame(q.scene_id, q.frame_id).rgb)
        (pred,) = t["predictions"]
        assert pred["score"] == pytest.approx(q.score) and pred["model_version"] == "viewal cycle 2"
        (r,) = pred["result"]
        assert r["value"]["brushlabels"] == [QUERY_LABEL] and (r["original_height"], r["original_width"]) == (H, W)
        drawn = decode_rle(r["value"]["rle"]).reshape(H, W, 4)[..., 3] > 0   # the SDK's own decoder
        assert np.array_equal(drawn, q.mask)
    out2 = tmp_path / "ls2"
    export_queries(queries(), out2, dataset=dataset, format="label-studio", image_url="http://127.0.0.1:9/files")
    t0 = json.loads((out2 / "label_studio" / "tasks.json").read_text())[0]
    assert t0["data"]["image"] == "http://127.0.0.1:9/files/images/scene0_000.png"
    with pytest.raises(ValueError, match="needs the frame images"):
        export_queries(queries(), tmp_path / "ls3", format="label-studio", class_names=CLASSES)


def test_import_label_studio_export(tmp_path, dataset):
    out = tmp_path / "ls"
    export_queries(queries(), out, dataset=dataset, format="label-studio")
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    q0, q1 = queries()
    big = box(0, 0, H, 8)                                    # chair painted beyond region 0 (pixels dropped)
    part = box(1, 2, 2, 5)                                   # then floor over its top two rows (later wins)
    res0 = [brush(q0.mask, QUERY_LABEL, "pre"), brush(big, "chair", "a"), brush(part, "floor", "b")]
    res1 = [brush(box(5, 8, 2, 6), "wall")]                  # half of region 1; the rest stays unlabelled
    path = tmp_path / "export.json"
    path.write_text(json.dumps(ls_export(tasks, [res0, res1])))
    items = import_label_studio(path, CLASSES, dataset=dataset)
    assert [(it.query_id, it.region_id, it.source) for it in items] == [(7, 3, "human"), (8, 11, "human")]
    exp0 = np.full((H, W), 255)
    exp0[q0.mask] = 2
    exp0[part] = 1
    assert np.array_equal(items[0].mask, q0.mask) and np.array_equal(items[0].labels, exp0)
    # the answer covers region 1 whole: its unpainted half is void (255), asked and never asked again
    half = box(5, 8, 2, 6)
    assert np.array_equal(items[1].mask, q1.mask) and (items[1].labels[half] == 0).all()
    assert (items[1].labels[q1.mask & ~half] == 255).all() and (q1.mask & ~half).any()
    assert items[0].origin == f"label-studio {path.resolve()} task 50 (annotator ann0@example.com)"
    # a task submitted with only the pre-drawn region: nothing labellable there, a void answer (all 255)
    path.write_text(json.dumps(ls_export(tasks, [[brush(q0.mask, QUERY_LABEL)], res1])))
    with pytest.warns(UserWarning, match="no labelled pixels inside the region of query 0.*recorded as void"):
        items = import_label_studio(path, CLASSES, dataset=dataset)
    assert [it.query_id for it in items] == [7, 8]
    assert np.array_equal(items[0].mask, q0.mask) and (items[0].labels == 255).all()
    # a task with no annotation is not answered
    path.write_text(json.dumps(ls_export(tasks, [None, res1])))
    assert [it.query_id for it in import_label_studio(path, CLASSES, dataset=dataset, missing="skip")] == [8]


def test_import_label_studio_errors_name_the_task(tmp_path, dataset):
    out = tmp_path / "ls"
    export_queries(queries(), out, dataset=dataset, format="label-studio")
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    q0, q1 = queries()
    path = tmp_path / "export.json"

    def check(annotations, match, **kw):
        doc = ls_export(tasks, annotations)
        for k, v in kw.items():
            doc[1][k] = v
        path.write_text(json.dumps(doc))
        with pytest.raises(LabelImportError, match=match):
            import_label_studio(path, CLASSES, dataset=dataset)

    ok = [brush(q0.mask, "wall")]
    check([ok, [brush(q1.mask, "sofa", "x")]], "export.json: task 51, result x: label 'sofa' is not a class")
    check([ok, None], "task 51 \\(scene0/001\\): not annotated yet")
    bad = brush(q1.mask, "wall", "y")
    bad["original_width"] = W + 1
    check([ok, [bad]], "task 51, result y: brush on a 15x10 image, the frame is 14x10")
    bad = brush(q1.mask, "wall", "z")
    bad["value"]["rle"] = bad["value"]["rle"][:3]
    check([ok, [bad]], "task 51, result z: undecodable brush RLE")
    rect = {"id": "w", "type": "rectanglelabels", "value": {}}
    check([ok, [rect]], "task 51, result w: a 'rectanglelabels' result")
    doc = ls_export(tasks, [ok, [brush(q1.mask, "wall")]])
    doc[1]["annotations"].append({**doc[1]["annotations"][0], "id": 7})
    path.write_text(json.dumps(doc))
    with pytest.raises(LabelImportError, match="task 51: 2 annotations \\(ids 101, 7\\)"):
        import_label_studio(path, CLASSES, dataset=dataset)
    doc[1]["annotations"][1]["was_cancelled"] = True          # a skipped annotation does not count
    path.write_text(json.dumps(doc))
    assert len(import_label_studio(path, CLASSES, dataset=dataset)) == 2
    check([ok, ok], "task 51: not a viewal task \\(its data lacks region\\)",
          data={k: v for k, v in tasks[1]["data"].items() if k != "region"})
    path.write_text("{}")
    with pytest.raises(LabelImportError, match="not a Label Studio JSON export"):
        import_label_studio(path, CLASSES)
    with pytest.raises(LabelImportError, match="is a folder; give the JSON file"):
        import_label_studio(out, CLASSES)
    with pytest.raises(LabelImportError, match="missing Label Studio export: .*nowhere.json"):
        import_label_studio(tmp_path / "nowhere.json", CLASSES)


def test_cli_label_studio_round_trip_into_ledger(tmp_path, dataset, capsys):
    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        led.set_config({"num_classes": 3, "dataset": str(dataset.root)})
        rec = led.record_queries(2, [RegionQuery(q.scene_id, q.frame_id, q.mask, q.score, q.region_id,
                                                 q.view_score) for q in queries()])
    out = tmp_path / "ls"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(dataset.root),
                     "--format", "label-studio"]) == 0
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    assert [t["data"]["query_id"] for t in tasks] == [q.query_id for q in rec]
    path = tmp_path / "project-1-at-2026.json"
    path.write_text(json.dumps(ls_export(tasks, [[brush(rec[0].mask, "chair")], None])))
    # without --data the class names come from the dataset recorded in the ledger
    assert cli_main(["query", "import", "--format", "label-studio", str(path), "--ledger", str(db)]) == 1
    assert "task 51 (scene0/001): not annotated yet" in capsys.readouterr().err
    with Ledger(db) as led:
        assert led.counts()["labels"] == 0                        # atomic: nothing of the failed import
    assert cli_main(["query", "import", str(path), "--ledger", str(db), "--skip-missing"]) == 0
    with Ledger(db) as led:
        assert [q.query_id for q in led.pending_queries()] == [rec[1].query_id]
        lm = led.label_map("scene0/000")
        assert (lm[rec[0].mask] == 2).all() and (lm[~rec[0].mask] == 255).all()
        assert led.labels()[0]["origin"].endswith("task 50 (annotator ann0@example.com)")


# ------------------------------------------------------------------------------------------ a real server

@pytest.mark.slow
def test_end_to_end_with_label_studio_server(tmp_path, dataset, label_studio):
    """Export -> a Label Studio project through the SDK -> annotations submitted through the API -> Label
    Studio's JSON export -> viewal query import -> the ledger holds exactly the classes painted inside the regions
    (the rest of each region void). The SDK's client runs in Label Studio's environment (``label_studio.sdk``,
    tests/conftest.py)."""
    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        led.set_config({"num_classes": 3})
        rec = led.record_queries(1, [RegionQuery(q.scene_id, q.frame_id, q.mask, q.score, q.region_id,
                                                 q.view_score) for q in queries()])
    out = tmp_path / "ls"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(dataset.root),
                     "--format", "label-studio"]) == 0
    made = label_studio.sdk("""
project = client.projects.create(title='viewal cycle 1', label_config=args['config'])
client.projects.import_tasks(id=project.id, request=args['tasks'])
tasks = sorted(client.tasks.list(project=project.id, fields='all'), key=lambda t: t.data['index'])
out = {'project': project.id,
       'tasks': [{'id': t.id, 'query_id': t.data['query_id'], 'predictions': [p.result for p in t.predictions]}
                 for t in tasks]}
""", config=(out / "label_studio" / "config.xml").read_text(),
                            tasks=json.loads((out / "label_studio" / "tasks.json").read_text()))
    tasks = made["tasks"]
    assert [t["query_id"] for t in tasks] == [q.query_id for q in rec]
    assert [len(t["predictions"]) for t in tasks] == [1, 1]
    # the annotator relabels query 0's pre-drawn region (the prediction's brush) as chair and paints floor over
    # its top row; of query 1 they paint the left half wall and also a stroke beyond the region
    q0, q1 = rec
    (pre,) = tasks[0]["predictions"][0]
    assert pre["value"]["brushlabels"] == [QUERY_LABEL]
    relabelled = {**pre, "origin": "prediction-changed", "value": {**pre["value"], "brushlabels": ["chair"]}}
    top = box(1, 2, 1, 5)
    left = box(5, 8, 4, 3)
    stroke = box(0, 0, 2, W)
    answers = [[tasks[0]["id"], [relabelled, brush(top, "floor", "a1")]],
               [tasks[1]["id"], [brush(left, "wall", "b0"), brush(stroke, "wall", "b1")]]]
    done = label_studio.sdk("""
for tid, result in args['answers']:
    client.annotations.create(id=tid, result=result, was_cancelled=False)
out = {'export': client.projects.exports.as_json(args['project']), 'me': client.users.whoami().id}
""", project=made["project"], answers=answers)
    path = tmp_path / "label-studio-export.json"
    path.write_text(json.dumps(done["export"]))
    assert cli_main(["query", "import", "--format", "label-studio", str(path), "--ledger", str(db), "--data",
                     str(dataset.root)]) == 0
    with Ledger(db) as led:
        assert led.pending_queries() == []
        m0 = led.labelled_mask("scene0/000", (H, W))
        lm0 = led.label_map("scene0/000", (H, W))
        assert np.array_equal(m0, q0.mask)
        assert (lm0[top] == 1).all() and (lm0[q0.mask & ~top] == 2).all() and (lm0[~q0.mask] == 255).all()
        # query 1's answer covers its region: the unpainted right half is void (255), the stroke beyond dropped
        m1 = led.labelled_mask("scene0/001", (H, W))
        lm1 = led.label_map("scene0/001", (H, W))
        assert np.array_equal(m1, q1.mask) and (lm1[left] == 0).all() and (lm1[~left] == 255).all()
        # Label Studio's export names the user by id
        assert [r["origin"] for r in led.labels()] == [
            f"label-studio {path.resolve()} task {t['id']} (annotator {done['me']})" for t in tasks]
