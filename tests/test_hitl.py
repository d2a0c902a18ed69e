"""Human in the loop: export of region queries, import of labelled masks (round trip, validation), CLI."""
import json

import cv2
import numpy as np
import pytest

from twins import box_mask, labelling_scene
from viewal.cli import main as cli_main
from viewal.labelling.hitl import LabelImportError, export_queries, import_labels
from viewal.runs.ledger import Ledger
from viewal.selection import RegionQuery

H, W = 12, 16


@pytest.fixture()
def dataset(tmp_path):
    return labelling_scene(tmp_path / "data", H, W, seed=0)


def box(y, x, h, w):
    return box_mask(H, W, y, x, h, w)


def queries():
    return [RegionQuery("scene0", "000", box(1, 2, 4, 5), 0.9, region_id=3, view_score=0.4, query_id=7),
            RegionQuery("scene0", "001", box(6, 8, 5, 6), 0.7, region_id=11)]


def write_label(path, lab):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(lab, np.uint8))


def test_export_writes_masks_previews_and_json(tmp_path, dataset):
    out = tmp_path / "q"
    path = export_queries(queries(), out, dataset=dataset)
    doc = json.loads(path.read_text())
    assert doc["num_classes"] == 3 and doc["class_names"] == ["wall", "floor", "chair"]
    e = doc["queries"][0]
    assert (e["scene_id"], e["frame_id"], e["region_id"], e["query_id"]) == ("scene0", "000", 3, 7)
    assert e["score"] == pytest.approx(0.9) and e["view_score"] == pytest.approx(0.4)
    assert (e["height"], e["width"], e["n_pixels"]) == (H, W, 20)
    m = cv2.imread(str(out / e["mask"]), cv2.IMREAD_UNCHANGED)
    assert m.shape == (H, W) and np.array_equal(m > 0, queries()[0].mask)
    prev = cv2.imread(str(out / e["preview"]))
    assert prev is not None and prev.shape[0] <= H and prev.shape[1] <= W
    assert (out / "labels").is_dir()
    assert not list(out.glob(".*"))                         # no temporary files left behind


def test_round_trip(tmp_path, dataset):
    out = tmp_path / "q"
    export_queries(queries(), out, dataset=dataset)
    doc = json.loads((out / "queries.json").read_text())
    expected = []
    for e, q in zip(doc["queries"], queries()):
        lab = np.full((H, W), 255)
        lab[q.mask] = (np.arange(q.mask.sum()) % 3)
        lab[0, 0] = 1                                       # labelled outside the region: dropped by default
        write_label(out / e["label"], lab)
        expected.append(np.where(q.mask, lab, 255))
    items = import_labels(out, dataset)
    assert len(items) == 2
    for it, q, exp in zip(items, queries(), expected):
        assert (it.scene_id, it.frame_id, it.region_id, it.query_id) == (q.scene_id, q.frame_id, q.region_id,
                                                                         q.query_id)
        assert it.source == "human"
        assert np.array_equal(it.mask, q.mask) and np.array_equal(it.labels, exp)
    loose = import_labels(out, dataset, restrict_to_query=False)
    assert loose[0].mask[0, 0] and loose[0].labels[0, 0] == 1


def test_import_validation_errors_name_the_file(tmp_path, dataset):
    out = tmp_path / "q"
    export_queries(queries(), out, dataset=dataset)
    doc = json.loads((out / "queries.json").read_text())
    f0, f1 = out / doc["queries"][0]["label"], out / doc["queries"][1]["label"]
    good = np.full((H, W), 255)
    good[queries()[1].mask] = 2
    write_label(f1, good)
    with pytest.raises(LabelImportError, match=f"missing labelled mask: .*{f0.name}"):
        import_labels(out, dataset)
    assert [it.region_id for it in import_labels(out, dataset, missing="skip")] == [11]

    write_label(f0, np.zeros((H + 1, W), np.uint8))
    msg = f"{f0.name}: size 16x13 .* differs from the frame scene0/000 \\(16x12\\)"
    with pytest.raises(LabelImportError, match=msg):
        import_labels(out, dataset)
    bad = np.full((H, W), 255)
    bad[2, 3] = 7
    write_label(f0, bad)
    with pytest.raises(LabelImportError, match=f"{f0.name}: class ids \\[7\\] outside 0..2"):
        import_labels(out, dataset)
    colour = np.zeros((H, W, 3), np.uint8)
    colour[..., 0] = 1
    assert cv2.imwrite(str(f0), colour)
    with pytest.raises(LabelImportError, match=f"{f0.name}: labelled mask must be single-channel"):
        import_labels(out, dataset)
    f0.write_bytes(b"not a png")
    with pytest.raises(LabelImportError, match=f"{f0.name}: not a readable image"):
        import_labels(out, dataset)
    # without a dataset: sizes and class count come from queries.json
    write_label(f0, bad)
    with pytest.raises(LabelImportError, match="outside 0..2"):
        import_labels(out)
    with pytest.raises(LabelImportError, match="missing queries file"):
        import_labels(tmp_path / "nowhere", dataset)


def test_cli_export_import_against_ledger(tmp_path, dataset, capsys):
    db = tmp_path / "run.sqlite"
    led = Ledger(db)
    led.set_config({"num_classes": 3})
    recorded = led.record_queries(0, queries())
    led.close()
    data = str(dataset.root)
    out = tmp_path / "q"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", data]) == 0
    doc = json.loads((out / "queries.json").read_text())
    assert [e["query_id"] for e in doc["queries"]] == [q.query_id for q in recorded]
    # a person labels the first region only
    e = doc["queries"][0]
    lab = np.full((H, W), 255)
    lab[recorded[0].mask] = 1
    write_label(out / e["label"], lab)
    assert cli_main(["query", "import", "--ledger", str(db), "--dir", str(out), "--data", data]) == 1  # 2nd missing
    assert "missing labelled mask" in capsys.readouterr().err
    assert cli_main(["query", "import", "--ledger", str(db), "--dir", str(out), "--data", data,
                     "--skip-missing"]) == 0
    led = Ledger(db)
    assert [q.query_id for q in led.pending_queries()] == [recorded[1].query_id]
    assert led.labels()[0]["source"] == "human" and led.labelled_pixels() == recorded[0].n_pixels
    assert (led.label_map("scene0/000")[recorded[0].mask] == 1).all()
    led.close()
    # importing again does not label twice
    assert cli_main(["query", "import", "--ledger", str(db), "--dir", str(out), "--skip-missing"]) == 0
    assert "already labelled" in capsys.readouterr().out
    assert cli_main(["query", "status", "--ledger", str(db)]) == 0
    assert "1 pending" in capsys.readouterr().out
    assert cli_main(["query", "status", "--ledger", str(tmp_path / "nope.sqlite")]) == 1


def test_coco_export_import_round_trip(tmp_path, dataset):
    from viewal.labelling.formats import coco_decode, coco_encode

    out = tmp_path / "q"
    export_queries(queries(), out, dataset=dataset, format="coco")
    doc = json.loads((out / "queries.json").read_text())
    coco = json.loads((out / "coco.json").read_text())
    assert doc["label_format"] == "coco" and not (out / "masks").exists()
    assert [c["name"] for c in coco["categories"]] == ["wall", "floor", "chair"]
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert [(i["id"], i["height"], i["width"], i["query_id"]) for i in coco["images"]] == [(1, H, W, 7),
                                                                                           (2, H, W, None)]
    for r, q in zip(coco["regions"], queries()):
        assert np.array_equal(coco_decode(r["segmentation"], (H, W)), q.mask)
    img = cv2.imread(str(out / coco["images"][0]["file_name"]))[..., ::-1]
    assert np.array_equal(img, dataset.frame("scene0", "000").rgb)
    # the labeller: query 0 all chair, then floor over its left column (later wins) and one pixel outside the
    # region; query 1 as a polygon (a rectangle covering the region's top-left 2x2 pixels) of class wall
    q0, q1 = queries()
    left = np.zeros((H, W), bool)
    left[:, 2] = True
    outside = np.zeros((H, W), bool)
    outside[0, 0] = True
    x0, y0 = 8, 6
    poly = [[x0, y0, x0 + 2, y0, x0 + 2, y0 + 2, x0, y0 + 2]]
    coco["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": coco_encode(q0.mask)},
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": coco_encode(left)},
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": coco_encode(outside)},
        {"id": 4, "image_id": 2, "category_id": 1, "segmentation": poly}]
    (out / "labels.json").write_text(json.dumps(coco))
    items = import_labels(out, dataset)
    assert [it.query_id for it in items] == [7, None] and all("labels.json" in it.origin for it in items)
    exp0 = np.full((H, W), 255)
    exp0[q0.mask] = 2
    exp0[q0.mask & left] = 1
    assert np.array_equal(items[0].mask, q0.mask) and np.array_equal(items[0].labels, exp0)
    from pycocotools import mask as cocomask

    pm = cocomask.decode(cocomask.merge(cocomask.frPyObjects(poly, H, W))).astype(bool) & q1.mask
    # the answered query covers its whole region; what the labeller left unlabelled inside it is void
    assert pm.sum() >= 4 and np.array_equal(items[1].mask, q1.mask) and (items[1].labels[pm] == 0).all()
    assert (items[1].labels[q1.mask & ~pm] == 255).all()
    # errors name the file and the annotation
    coco["annotations"][1]["image_id"] = 9
    (out / "labels.json").write_text(json.dumps(coco))
    with pytest.raises(LabelImportError, match="labels.json: annotation 2: image_id 9 is not a query"):
        import_labels(out, dataset)
    coco["annotations"][1]["image_id"] = 1
    coco["categories"][2]["name"] = "sofa"
    (out / "labels.json").write_text(json.dumps(coco))
    with pytest.raises(LabelImportError, match="category 3 'sofa' is not a class"):
        import_labels(out, dataset)
    coco["categories"][2]["name"] = "chair"
    coco["annotations"] = coco["annotations"][:3]
    (out / "labels.json").write_text(json.dumps(coco))
    with pytest.raises(LabelImportError, match="no annotation for query 1 \\(image_id 2, scene0/001\\)"):
        import_labels(out, dataset)
    assert len(import_labels(out, dataset, missing="skip")) == 1


def test_cli_coco_into_ledger(tmp_path, dataset, capsys):
    from viewal.labelling.formats import coco_encode

    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        led.set_config({"num_classes": 3})
        recorded = led.record_queries(0, queries())
    out = tmp_path / "q"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(dataset.root),
                     "--format", "coco"]) == 0
    coco = json.loads((out / "coco.json").read_text())
    coco["annotations"] = [{"id": k, "image_id": k + 1, "category_id": 2, "segmentation": coco_encode(q.mask)}
                           for k, q in enumerate(recorded)]
    labels = tmp_path / "from_tool.json"
    labels.write_text(json.dumps(coco))
    assert cli_main(["query", "import", str(out), "--ledger", str(db), "--labels", str(labels)]) == 0
    with Ledger(db) as led:
        assert led.pending_queries() == [] and led.labelled_pixels() == sum(q.n_pixels for q in recorded)
        assert (led.label_map("scene0/001")[recorded[1].mask] == 1).all()
        assert all(r["origin"] == f"coco labels {labels.resolve()}" for r in led.labels())
    # the same file again: skipped; a PNG-format import flag on a COCO export: refused
    assert cli_main(["query", "import", str(out), "--ledger", str(db), "--labels", str(labels)]) == 0
    assert "already labelled from this source" in capsys.readouterr().out
    assert cli_main(["query", "import", str(out), "--ledger", str(db), "--format", "png"]) == 1
    assert "an export in coco format, not png" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ several annotators

def team_queries():
    """Six disjoint 2x3 boxes, three on each frame."""
    out = []
    for k in range(6):
        m = np.zeros((H, W), bool)
        m[2 + 3 * (k // 2 % 3): 4 + 3 * (k // 2 % 3), 1 + 7 * (k % 2): 4 + 7 * (k % 2)] = True
        out.append(RegionQuery("scene0", f"{k % 2:03d}", m, 1.0 - k / 10, region_id=k))
    return out


def label_batch(folder, value):
    """The annotator of ``folder`` labels every region of the batch with class ``value``; returns
    {query_id: mask}."""
    doc = json.loads((folder / "queries.json").read_text())
    got = {}
    for e in doc["queries"]:
        m = cv2.imread(str(folder / e["mask"]), cv2.IMREAD_UNCHANGED) > 0
        write_label(folder / e["label"], np.where(m, value, 255))
        got[e["query_id"]] = m
    return got


def _import_worker(args):
    import contextlib
    import io

    barrier, argv = args
    err = io.StringIO()
    barrier.wait(timeout=60)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(argv)
    return rc, err.getvalue()


def test_annotators_export_disjoint_batches(tmp_path, dataset):
    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        led.set_config({"num_classes": 3})
        rec = led.record_queries(1, team_queries())
    out = tmp_path / "team"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--data", str(dataset.root),
                     "--annotators", "4"]) == 0
    ids = [q.query_id for q in rec]
    docs = [json.loads((out / f"annotator-{k}" / "queries.json").read_text()) for k in range(1, 5)]
    assert [[e["query_id"] for e in d["queries"]] for d in docs] == [[ids[0], ids[4]], [ids[1], ids[5]], [ids[2]],
                                                                     [ids[3]]]
    assert [d["annotator"] for d in docs] == ["1 of 4", "2 of 4", "3 of 4", "4 of 4"]
    assert [e["index"] for e in docs[0]["queries"]] == [0, 4]     # the cycle's ranks name the files
    assert docs[0]["queries"][1]["label"].startswith("labels/q0004_")


def test_concurrent_imports_from_annotators(tmp_path, dataset):
    import multiprocessing as mp

    db = tmp_path / "run.sqlite"
    with Ledger(db) as led:
        led.set_config({"num_classes": 3})
        rec = led.record_queries(1, team_queries())
    out = tmp_path / "team"
    assert cli_main(["query", "export", "--ledger", str(db), "--out", str(out), "--annotators", "3"]) == 0
    masks = {}
    for k in range(1, 4):
        masks.update({q: (m, k - 1) for q, m in label_batch(out / f"annotator-{k}", k - 1).items()})
    # a fourth person labelled annotator 1's batch again (another folder, class 2 everywhere)
    import shutil

    shutil.copytree(out / "annotator-1", tmp_path / "second-opinion")
    label_batch(tmp_path / "second-opinion", 2)
    folders = [out / f"annotator-{k}" for k in (1, 2, 3)] + [tmp_path / "second-opinion"]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(folders))
        with ctx.Pool(len(folders)) as pool:
            res = pool.map(_import_worker, [(barrier, ["query", "import", str(f), "--ledger", str(db)])
                                            for f in folders])
    rcs = [r[0] for r in res]
    assert rcs[1] == 0 and rcs[2] == 0                     # disjoint batches: both recorded
    assert sorted([rcs[0], rcs[3]]) == [0, 1]               # annotator 1 or the second opinion, never both
    loser, winner = (0, 3) if rcs[0] == 1 else (3, 0)
    msg = res[loser][1]
    assert "is already labelled" in msg and "nothing of this step was recorded" in msg
    src = {i: f"png labels {(folders[i] / 'labels').resolve()}" for i in range(4)}
    assert f"from {src[winner]}" in msg and f"second label from {src[loser]}" in msg
    with Ledger(db) as led:
        rows = led.labels()
        assert sorted(r["query_id"] for r in rows) == sorted(q.query_id for q in rec)   # each region once
        assert led.pending_queries() == []
        for rank, q in enumerate(rec):
            (row,) = [r for r in rows if r["query_id"] == q.query_id]
            assert row["n_pixels"] == int(q.mask.sum()) == int(masks[q.query_id][0].sum())
            owner = rank % 3                                # round-robin batches of the cycle's ranks
            where = src[winner] if owner == 0 else src[owner]
            assert row["origin"] == f"{where} (annotator {owner + 1} of 3)" and row["source"] == "human"
        for f in ("000", "001"):
            expect = np.full((H, W), 255)
            for q in rec:
                if q.frame_id == f:
                    v = masks[q.query_id][1]
                    expect[q.mask] = 2 if (v == 0 and winner == 3) else v
            assert np.array_equal(led.label_map(f"scene0/{f}"), expect)


def test_version_1_export_without_region_rle_still_imports(tmp_path, dataset):
    """An export of the first queries.json version has PNG region masks and no ``region`` RLE in queries.json."""
    out = tmp_path / "q"
    export_queries(queries(), out, dataset=dataset)
    doc = json.loads((out / "queries.json").read_text())
    for e in doc["queries"]:
        del e["region"]
        lab = np.full((H, W), 1)                            # labelled everywhere: the PNG region restricts it
        write_label(out / e["label"], lab)
    (out / "queries.json").write_text(json.dumps(doc))
    items = import_labels(out, dataset)
    assert [np.array_equal(it.mask, q.mask) for it, q in zip(items, queries())] == [True, True]
    (out / doc["queries"][0]["mask"]).unlink()
    with pytest.raises(LabelImportError, match="missing query mask: .*q0000_scene0_000_r3.png"):
        import_labels(out, dataset)
