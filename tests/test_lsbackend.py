"""viewal.labelling.lsbackend: the Label Studio ML backend of a loop run.

The fast tests run the server in a thread (or as ``viewal label-studio serve`` subprocesses) on a tiny loop run
and send it requests shaped as Label Studio 1.23 sends them (``label_studio/ml/api_connector.py``: setup,
predict; ``label_studio/webhooks``: annotation webhooks with the Task and Annotation models' fields); a small
stand-in serves the two REST calls the backend makes (task list, task import). The slow test runs the real
Label Studio server.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("label_studio_sdk")

from viewal.cli import main as cli_main
from viewal.labelling.formats import brush_decode, coco_encode
from viewal.labelling.labelstudio import QUERY_LABEL, brush_result, labelling_config
from viewal.labelling.lsbackend import LOCK_FILE, LabelStudioBackend, LabelStudioClient, make_server
from viewal.runs.ledger import Ledger

TOKEN = "s3cret-viewal-backend-token"
PROJECT = 7
LS_KEY = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
BUDGET = 8.0  # % of the pool per cycle: about 20 regions of the 64x80 frames


# ------------------------------------------------------------------------------------------ a tiny loop run

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """(data, run) of a loop run at cycle 1: the seed set answered, cycle 1's queries pending, the seed-set
    model's checkpoint written (built once per module: ~30 s on two cores)."""
    from viewal.core.config import ALConfig
    from viewal.datasets.synthetic import generate_dataset
    from viewal.labelling.loop import advance, open_learner, run_ledger_path, start_run
    from viewal.runs.ledger import LabelItem

    base = tmp_path_factory.mktemp("lsbackend")
    data, run = base / "data", base / "run"
    generate_dataset(data, scenes=4, frames=5, height=64, width=80, seed=3, progress=False)
    cfg = ALConfig(seed_set="ask", mc_passes=2, steps=4, validations=1, decoder_channels=64, init=None,
                   num_threads=1)
    seeds = start_run(data, run, cfg, method="view_entropy", budgets=[BUDGET], progress=False)
    learner = open_learner(run)
    try:
        for q in seeds:
            learner.ledger.record_labels(0, [LabelItem.from_query(q, learner.oracle.label_query(q), "human")])
    finally:
        learner.ledger.close()
    queries = advance(run, progress=False)
    assert len(queries) >= 12 and {q.cycle for q in queries} == {1}
    with Ledger(run_ledger_path(run)) as led:
        assert led.cycle() == 1
    return data, run


@pytest.fixture()
def run(template, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(template[1], dst)
    # loop.json names the dataset by absolute path: the copy uses the same data
    return dst


def ledger_of(run):
    from viewal.labelling.loop import run_ledger_path

    return Ledger(run_ledger_path(run))


def pending(run, cycle=None):
    with ledger_of(run) as led:
        return led.pending_queries(led.cycle() if cycle is None else cycle)


def ground_truth(backend, q):
    """(H, W) class ids of the query's frame (the synthetic dataset's labels)."""
    return np.asarray(backend.dataset.frame(q.scene_id, q.frame_id).labels).astype(np.int64)


# ------------------------------------------------------------------------------------------ payloads

def ls_task(tid, q, rank, project=PROJECT, annotations=None):
    """A task as Label Studio serialises it (``tasks.Task`` fields, the webhook's TaskWebhookSerializer; with
    ``annotations``/``predictions`` lists as TaskSimpleSerializer adds them for /predict)."""
    data = {"image": "data:image/png;base64,iVBORw0KGgo=", "index": rank, "query_id": q.query_id, "cycle": q.cycle,
            "scene_id": q.scene_id, "frame_id": q.frame_id, "region_id": q.region_id, "score": q.score,
            "view_score": q.view_score, "n_pixels": int(q.mask.sum()), "height": int(q.mask.shape[0]),
            "width": int(q.mask.shape[1]), "region": coco_encode(q.mask)}
    t = {"id": tid, "data": data, "meta": {}, "created_at": "2026-01-05T10:00:00.000000Z",
         "updated_at": "2026-01-05T10:00:00.000000Z", "is_labeled": False, "overlap": 1, "inner_id": tid,
         "total_annotations": 0, "cancelled_annotations": 0, "total_predictions": 1, "comment_count": 0,
         "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": project, "updated_by": None,
         "file_upload": None, "comment_authors": [], "allow_skip": True, "precomputed_agreement": None}
    if annotations is not None:
        t.update(annotations=annotations, predictions=[])
        del t["allow_skip"], t["precomputed_agreement"]
    return t


def ls_annotation(aid, tid, result, user=1, project=PROJECT, cancelled=False):
    """An annotation as Label Studio's AnnotationWebhookSerializer sends it (``tasks.Annotation`` fields)."""
    return {"id": aid, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": "2026-01-05T10:01:00.000000Z", "updated_at": "2026-01-05T10:01:00.000000Z",
            "draft_created_at": None, "lead_time": 12.5, "prediction": {}, "result_count": len(result),
            "unique_id": f"u-{aid}", "import_id": None, "last_action": None, "bulk_created": False,
            "task": tid, "project": project, "completed_by": user, "updated_by": user, "parent_prediction": None,
            "parent_annotation": None, "last_created_by": None}


def ls_project(pid=PROJECT):
    return {"id": pid, "title": "viewal", "label_config": "<View/>", "task_number": 20}


def webhook(action, annotation, task, project=PROJECT):
    return {"action": action, "annotation": annotation, "task": task, "project": ls_project(project)}


def answer(q, classes, names, extra=None):
    """An annotator's brushes for query ``q``: the classes of ``classes`` (H, W) painted inside the region, one
    brush per class, plus ``extra`` results."""
    res = [brush_result(q.mask & (classes == c), names[c], f"b{c}") for c in np.unique(classes[q.mask])]
    return res + (extra or [])


# ------------------------------------------------------------------------------------------ HTTP helpers

def call(url, method, path, body=None, token=TOKEN, headers=None, raw=None, timeout=60):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def serving():
    """Start a backend's server in a thread: ``serving(backend) -> url``; stopped at the end."""
    started = []

    def start(backend):
        srv = make_server(backend, "127.0.0.1", 0)
        th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        th.start()
        started.append((srv, th, backend))
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv, th, backend in started:
        srv.shutdown()
        srv.server_close()
        th.join(10)
        backend.wait_idle(300)


class FakeLabelStudio:
    """The two REST calls of Label Studio the backend makes, answered as Label Studio 1.23 does
    (``data_import/api.py``: sync import → ``task_count``; ``data_manager/api.py``: ``{"tasks", "total"}``,
    pages of ``page_size``, 404 past the last page), with the legacy ``Token`` auth and JWT refresh."""

    def __init__(self, key=LS_KEY, access=None):
        self.tasks: list[dict] = []
        self.imports: list[list[dict]] = []
        self.refreshes = 0
        self.key, self.access = key, access
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, doc):
                b = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            def _authorised(self):
                a = self.headers.get("Authorization", "")
                return a == f"Token {fake.key}" or (fake.access is not None and a == f"Bearer {fake.access}")

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if not self._authorised():
                    return self._send(401, {"detail": "Authentication credentials were not provided."})
                if u.path != "/api/tasks/":
                    return self._send(404, {"detail": "Not found."})
                q = urllib.parse.parse_qs(u.query)
                mine = [t for t in fake.tasks if t["project"] == int(q["project"][0])]
                page, size = int(q.get("page", ["1"])[0]), int(q.get("page_size", ["100"])[0])
                chunk = mine[(page - 1) * size: page * size]
                if page > 1 and not chunk:
                    return self._send(404, {"detail": "Invalid page."})
                self._send(200, {"tasks": chunk, "total": len(mine), "total_annotations": 0,
                                 "total_predictions": 0})

            def do_POST(self):
                u = urllib.parse.urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if u.path == "/api/token/refresh/":
                    fake.refreshes += 1
                    return self._send(200, {"access": fake.access})
                if not self._authorised():
                    return self._send(401, {"detail": "Authentication credentials were not provided."})
                m = re.fullmatch(r"/api/projects/(\d+)/import", u.path)
                if not m:
                    return self._send(404, {"detail": "Not found."})
                fake.imports.append(body)
                for t in body:
                    fake.tasks.append({"id": 1000 + len(fake.tasks), "project": int(m.group(1)), **t})
                self._send(201, {"task_count": len(body), "annotation_count": 0,
                                 "prediction_count": sum(len(t.get("predictions", [])) for t in body)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_ls():
    f = FakeLabelStudio()
    yield f
    f.close()


# ------------------------------------------------------------------------------------------ protocol

def test_health_setup_versions_and_the_token(run, serving):
    b = LabelStudioBackend(run, TOKEN, auto_advance=False)
    url = serving(b)
    assert call(url, "GET", "/health", token=None) == (200, {"status": "UP", "model_class": "viewal"})
    # Label Studio's model connection: HTTP Basic auth, any user, the token as password
    basic = "Basic " + base64.b64encode(f"viewal:{TOKEN}".encode()).decode()
    assert call(url, "GET", "/health", token=None, headers={"Authorization": basic})[0] == 200
    wrong = "Basic " + base64.b64encode(b"viewal:not-the-token").decode()
    st, doc = call(url, "GET", "/health", token=None, headers={"Authorization": wrong})
    assert st == 401 and "missing or wrong token" in doc["error"]
    setup = {"project": f"{PROJECT}.1767607200", "schema": labelling_config(b.class_names),
             "hostname": "http://localhost:8080", "access_token": "abc", "extra_params": None}
    assert call(url, "POST", "/setup", setup) == (200, {"model_version": "viewal cycle 1"})
    assert call(url, "POST", "/setup", setup, token=None, headers={"Authorization": basic})[0] == 200
    assert call(url, "POST", "/setup", setup, token=None, headers={"Authorization": f"Token {TOKEN}"})[0] == 200
    for token in (None, "nope", TOKEN + "x", TOKEN[:-1]):
        st, doc = call(url, "POST", "/setup", setup, token=token)
        assert st == 401 and "Authorization: Bearer <token>" in doc["error"]
    st, doc = call(url, "GET", "/versions")
    assert (st, doc) == (200, {"versions": ["viewal cycle 0", "viewal cycle 1"]})
    st, doc = call(url, "GET", "/status")
    assert st == 200 and doc["cycle"] == 1 and doc["cycles"][1]["pending"] == len(pending(run))
    # a config without one of the dataset's classes, or of another project: refused, naming it
    names = b.class_names
    st, doc = call(url, "POST", "/setup", {**setup, "schema": labelling_config(names[1:])})
    assert st == 422 and doc["error"] == (f"setup: the labelling config's BrushLabels 'label' lacks the label(s) "
                                          f"{names[0]!r} of the run's dataset")
    st, doc = call(url, "POST", "/setup", {**setup, "schema": "<View><Image name='image' value='$image'/></View>"})
    assert st == 422 and "no <BrushLabels name=\"label\">" in doc["error"]
    st, doc = call(url, "POST", "/setup", {**setup, "schema": "<View"})
    assert st == 422 and "not valid XML" in doc["error"]
    b.project = PROJECT
    st, doc = call(url, "POST", "/setup", {**setup, "project": "8.1767607200"})
    assert st == 422 and doc["error"] == f"setup: from Label Studio project 8; this backend serves project {PROJECT} " \
                                         f"of run {run}"
    # bad requests: named
    assert call(url, "POST", "/setup", raw=b"{not json")[0] == 400
    st, doc = call(url, "POST", "/setup", raw=b"[1, 2]")
    assert st == 400 and doc["error"] == "the body must be a JSON object, got list"
    st, doc = call(url, "POST", "/setup", {**setup, "schema": 3})
    assert st == 400 and doc["error"] == "setup: 'schema' must be the labelling config (XML text), got int"
    st, doc = call(url, "GET", "/predict")
    assert st == 405 and doc["error"] == "GET /predict: use POST"
    st, doc = call(url, "GET", "/metrics")
    assert st == 404 and doc["error"].startswith("no endpoint /metrics; this server answers GET /health")
    assert call(url, "POST", "/train", {"action": "START_TRAINING"})[0] == 200


def test_predict_pre_draws_the_region_and_the_query_model_classes(run, serving):
    from label_studio_sdk.converter.brush import decode_rle

    from viewal.labelling.loop import load_query_model, open_learner
    from viewal.nn.train import iter_eval_predictions

    b = LabelStudioBackend(run, TOKEN, auto_advance=False)
    url = serving(b)
    qs = pending(run)
    tasks = [ls_task(100 + k, q, k, annotations=[]) for k, q in enumerate(qs)]
    body = {"tasks": tasks, "project": f"{PROJECT}.1767607200", "label_config": labelling_config(b.class_names),
            "params": {"login": None, "password": None, "context": None}}
    t0 = time.monotonic()
    st, doc = call(url, "POST", "/predict", body, timeout=300)
    took = time.monotonic() - t0
    assert st == 200 and len(doc["results"]) == len(qs)
    # the model that chose cycle 1's queries, its plain argmax computed here on its own
    learner = open_learner(run)
    try:
        model = load_query_model(learner, 1)
        frames = {q.frame_key: b.dataset.frame(q.scene_id, q.frame_id) for q in qs}
        argmax = {}
        for key, f in frames.items():
            (pred, _), = list(iter_eval_predictions(model, [f], size=learner.config.size))
            argmax[key] = pred[0]
    finally:
        learner.ledger.close()
    n_classes_drawn = 0
    for k, (q, r) in enumerate(zip(qs, doc["results"])):
        assert r["score"] == pytest.approx(q.score, rel=1e-12) and r["model_version"] == "viewal cycle 1"
        first, *classes = r["result"]
        assert first["value"]["brushlabels"] == [QUERY_LABEL] and first["id"] == f"q{k}"
        H, W = q.mask.shape

        def decode(res, H=H, W=W):
            return decode_rle(res["value"]["rle"]).reshape(H, W, 4)[..., 3] > 0

        assert np.array_equal(decode(first), q.mask)
        painted = np.zeros((H, W), bool)
        for res in classes:
            (name,) = res["value"]["brushlabels"]
            m = decode(res)
            assert not (m & painted).any() and not (m & ~q.mask).any()
            assert (argmax[q.frame_key][m] == b.class_names.index(name)).all()
            assert (res["original_height"], res["original_width"]) == (H, W)
            painted |= m
        assert np.array_equal(painted, q.mask)                       # accepting it labels the whole region
        n_classes_drawn += len(classes)
    assert n_classes_drawn >= len(qs)
    # a second call is answered from the loaded model
    t0 = time.monotonic()
    assert call(url, "POST", "/predict", {"tasks": tasks[:3]})[0] == 200
    assert time.monotonic() - t0 < max(2.0, took)
    # the seed set's frames were chosen without a model: the region alone
    with ledger_of(run) as led:
        seed = led.queries(0)[0]
    st, doc = call(url, "POST", "/predict", {"tasks": [ls_task(5, seed, 0)]})
    assert st == 200 and [x["value"]["brushlabels"] for x in doc["results"][0]["result"]] == [[QUERY_LABEL]]
    assert doc["results"][0]["model_version"] == "viewal cycle 0"
    # what was wrong is named
    st, doc = call(url, "POST", "/predict", {"tasks": []})
    assert st == 400 and doc["error"] == "predict: 'tasks' must be a non-empty list of Label Studio tasks"
    st, doc = call(url, "POST", "/predict", {"tasks": [{"id": 9, "data": {"image": "x.png"}}]})
    assert st == 422 and doc["error"] == ("predict: task 9: not a viewal task (its data lacks query_id, scene_id, "
                                          "frame_id)")
    t = ls_task(11, qs[0], 0)
    t["data"]["query_id"] = 9999
    st, doc = call(url, "POST", "/predict", {"tasks": [t]})
    assert st == 422 and doc["error"].startswith("predict: task 11: query_id 9999 is not a query of the run's ledger")
    t = ls_task(12, qs[0], 0)
    t["data"]["frame_id"] = "999999"
    st, doc = call(url, "POST", "/predict", {"tasks": [t]})
    q0 = qs[0]
    assert st == 422 and f"is for {q0.scene_id}/{q0.frame_id}, the task says {q0.scene_id}/999999" in doc["error"]


def test_webhooks_record_each_annotation_once(run, serving):
    b = LabelStudioBackend(run, TOKEN, project=PROJECT, auto_advance=False)
    url = serving(b)
    names = b.class_names
    q0, q1, q2, q3, q4 = pending(run)[:5]
    gt0 = ground_truth(b, q0)
    t0 = ls_task(200, q0, 0)
    a0 = ls_annotation(300, 200, answer(q0, gt0, names))
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", a0, t0))
    origin = f"label-studio project {PROJECT} task 200 annotation 300 (annotator 1)"
    assert st == 200 and doc["results"] == [{"task": 200, "annotation": 300, "query_id": q0.query_id,
                                             "status": "recorded", "labelled_pixels": int(q0.mask.sum()),
                                             "origin": origin}]
    with ledger_of(run) as led:
        (row,) = led.labels(1)
        assert (row["query_id"], row["source"], row["origin"], row["cycle"]) == (q0.query_id, "human", origin, 1)
        lm = led.label_map(q0.frame_key)
        assert np.array_equal(lm[q0.mask], gt0[q0.mask]) and (lm[~q0.mask] == 255).all()
    # Label Studio sends it again, then the annotator edits it: the first saved version stays the answer
    assert call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", a0, t0))[1]["results"][0]["status"] == \
        "already recorded"
    a0_edit = {**a0, "result": [brush_result(q0.mask, names[2], "x")], "updated_at": "2026-01-05T10:05:00Z"}
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_UPDATED", a0_edit, t0))
    assert st == 200 and doc["results"][0]["status"] == "already recorded"
    # a second annotation of the same task (another annotator): refused, both origins named
    a0b = ls_annotation(301, 200, [brush_result(q0.mask, names[2], "y")], user=2)
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", a0b, t0))
    assert st == 409 and f"from {origin})" in doc["error"] and \
        f"second label from label-studio project {PROJECT} task 200 annotation 301 (annotator 2)" in doc["error"]
    # painting beyond the region is dropped; a region half painted is answered whole (the rest void)
    half = q1.mask & (np.cumsum(q1.mask.ravel()).reshape(q1.mask.shape) <= q1.mask.sum() // 2)
    a1 = ls_annotation(302, 201, [brush_result(~q1.mask, names[1], "out"), brush_result(half, names[3], "in")])
    with ledger_of(run) as led:
        before = led.label_map(q1.frame_key, q1.mask.shape)  # the frame's earlier labels (q0's, when it is q1's frame)
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", a1, ls_task(201, q1, 1)))
    assert st == 200 and doc["results"][0]["labelled_pixels"] == int(half.sum())
    with ledger_of(run) as led:
        lm = led.label_map(q1.frame_key, q1.mask.shape)
        assert (lm[half] == 3).all() and (lm[q1.mask & ~half] == 255).all()
        assert np.array_equal(lm[~q1.mask], before[~q1.mask])  # the paint outside the region was dropped
    # skipped in Label Studio: nothing recorded, the query stays pending
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", ls_annotation(303, 202, [], cancelled=True),
                                                    ls_task(202, q2, 2)))
    assert st == 200 and doc["results"][0]["status"] == "cancelled"
    assert q2.query_id in {q.query_id for q in pending(run)}
    # saved with only the pre-drawn region: a void answer (nothing labellable), recorded, not asked again
    st, doc = call(url, "POST", "/webhook", webhook("ANNOTATION_CREATED", ls_annotation(
        304, 204, [brush_result(q4.mask, QUERY_LABEL, "q4")]), ls_task(204, q4, 4)))
    assert st == 200 and (doc["results"][0]["status"], doc["results"][0]["labelled_pixels"]) == ("recorded", 0)
    assert "a void answer" in doc["results"][0]["message"]
    with ledger_of(run) as led:
        assert (led.label_map(q4.frame_key, q4.mask.shape)[q4.mask] == 255).all()
        assert led.labelled_mask(q4.frame_key, q4.mask.shape)[q4.mask].all()
    assert q4.query_id not in {q.query_id for q in pending(run)}
    # bulk creation (ANNOTATIONS_CREATED: lists of annotations and of their tasks)
    a3 = ls_annotation(305, 203, answer(q3, ground_truth(b, q3), names))
    a2 = ls_annotation(306, 202, answer(q2, ground_truth(b, q2), names))
    st, doc = call(url, "POST", "/webhook", {"action": "ANNOTATIONS_CREATED", "annotation": [a3, a2],
                                            "task": [ls_task(202, q2, 2), ls_task(203, q3, 3)],
                                            "project": ls_project()})
    assert st == 200 and [(r["task"], r["status"]) for r in doc["results"]] == [(203, "recorded"), (202, "recorded")]
    with ledger_of(run) as led:
        assert [(r["query_id"], r["origin"]) for r in led.labels(1)] == [
            (q0.query_id, origin),
            (q1.query_id, f"label-studio project {PROJECT} task 201 annotation 302 (annotator 1)"),
            (q4.query_id, f"label-studio project {PROJECT} task 204 annotation 304 (annotator 1)"),
            (q3.query_id, f"label-studio project {PROJECT} task 203 annotation 305 (annotator 1)"),
            (q2.query_id, f"label-studio project {PROJECT} task 202 annotation 306 (annotator 1)")]
    # other actions are acknowledged
    assert call(url, "POST", "/webhook", {"action": "TASKS_CREATED", "tasks": []}) == (
        200, {"action": "TASKS_CREATED", "status": "ignored",
              "message": "TASKS_CREATED: only ANNOTATION_CREATED, ANNOTATION_UPDATED, ANNOTATIONS_CREATED are "
                         "recorded"})


def test_webhook_bad_payloads_are_named(run, serving):
    b = LabelStudioBackend(run, TOKEN, project=PROJECT, auto_advance=False)
    url = serving(b)
    names = b.class_names
    q = pending(run)[0]
    t = ls_task(400, q, 0)
    good = ls_annotation(500, 400, [brush_result(q.mask, names[1], "r1")])

    def post(doc, **kw):
        return call(url, "POST", "/webhook", doc, **kw)

    assert post(webhook("ANNOTATION_CREATED", good, t), token=None)[0] == 401
    assert post({"annotation": good}) == (400, {"error": "webhook: no 'action' (Label Studio's webhooks send one, e.g. "
                                                         "ANNOTATION_CREATED)"})
    assert post({"action": "ANNOTATION_CREATED", "task": t}) == (
        400, {"error": "webhook ANNOTATION_CREATED: no 'annotation' object in the payload"})
    assert post({"action": "ANNOTATION_CREATED", "annotation": good}) == (
        400, {"error": "webhook ANNOTATION_CREATED: no 'task' object in the payload"})
    assert post(webhook("ANNOTATION_CREATED", {**good, "task": 401}, t)) == (
        400, {"error": "task 400, annotation 500: the annotation belongs to task 401"})
    assert post(webhook("ANNOTATION_CREATED", {**good, "id": None}, t)) == (
        400, {"error": "task 400, annotation None: the task and the annotation need integer ids"})
    st, doc = post(webhook("ANNOTATION_CREATED", good, t, project=8))
    assert st == 422 and doc["error"].startswith("webhook ANNOTATION_CREATED: from Label Studio project 8; this "
                                                 f"backend serves project {PROJECT}")
    st, doc = post(webhook("ANNOTATION_CREATED", good, {**t, "data": {"image": "x"}}))
    assert (st, doc["error"]) == (422, "task 400, annotation 500: not a viewal task (its data lacks query_id, "
                                       "scene_id, frame_id)")
    bad = ls_annotation(501, 400, [brush_result(q.mask, "unicorn", "s1")])
    st, doc = post(webhook("ANNOTATION_CREATED", bad, t))
    assert st == 422 and doc["error"].startswith("task 400, annotation 501, result s1: label 'unicorn' is not a class")
    big = brush_result(np.ones((q.mask.shape[0] + 1, q.mask.shape[1]), bool), names[1], "s2")
    st, doc = post(webhook("ANNOTATION_CREATED", ls_annotation(502, 400, [big]), t))
    H, W = q.mask.shape
    assert (st, doc["error"]) == (422, f"task 400, annotation 502, result s2: brush on a {W}x{H + 1} image, the frame "
                                       f"is {W}x{H} (WxH)")
    rect = {"id": "s3", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 2, "height": 2}}
    st, doc = post(webhook("ANNOTATION_CREATED", ls_annotation(503, 400, [rect]), t))
    assert (st, doc["error"]) == (422, "task 400, annotation 503, result s3: a 'rectanglelabels' result; only brush "
                                       "labels are read")
    trunc = brush_result(q.mask, names[1], "s4")
    trunc["value"]["rle"] = trunc["value"]["rle"][:3]
    st, doc = post(webhook("ANNOTATION_CREATED", ls_annotation(504, 400, [trunc]), t))
    assert st == 422 and doc["error"].startswith("task 400, annotation 504, result s4: undecodable brush RLE")
    st, doc = post({"action": "ANNOTATIONS_CREATED", "annotation": {"id": 1}, "task": [t]})
    assert (st, doc["error"]) == (400, "webhook ANNOTATIONS_CREATED: 'annotation' must be a non-empty list of "
                                       "annotations")
    # a bulk webhook records what it can and names what it refused
    q1 = pending(run)[1]
    st, doc = post({"action": "ANNOTATIONS_CREATED", "annotation": [bad, ls_annotation(505, 401, [brush_result(
        q1.mask, names[2], "ok")])], "task": [t, ls_task(401, q1, 1)], "project": ls_project()})
    assert st == 422 and doc["error"].startswith("task 400, annotation 501, result s1: label 'unicorn'")
    assert [r["status"] for r in doc["results"]] == ["refused", "recorded"]
    with ledger_of(run) as led:       # nothing of the refused payloads was recorded
        assert [(r["query_id"], r["origin"]) for r in led.labels(1)] == [
            (q1.query_id, f"label-studio project {PROJECT} task 401 annotation 505 (annotator 1)")]
    assert post(webhook("ANNOTATION_CREATED", good, t))[0] == 200


# ------------------------------------------------------------------------------------------ under load

def _expected_map(qs, answers, shape):
    """Per frame: the label map the recorded answers give (255 elsewhere)."""
    out = {}
    for q in qs:
        if q.query_id in answers:
            lm = out.setdefault(q.frame_key, np.full(shape, 255, np.int64))
            lm[q.mask] = answers[q.query_id][q.mask]
    return out


def test_concurrent_and_repeated_webhooks_from_threads(run, serving):
    """12 annotators' threads save at once: every annotation sent twice as created and once as updated, in a
    shuffled order, and a second annotator's rival annotation for 4 of the tasks. One query is left open, so
    the cycle does not close. Each query is labelled once; the ledger's contents are exactly the winners'."""
    b = LabelStudioBackend(run, TOKEN, project=PROJECT)
    url = serving(b)
    names = b.class_names
    qs = pending(run)
    answered, left = qs[:-1], qs[-1]
    shape = left.mask.shape
    truth = {q.query_id: ground_truth(b, q) for q in qs}
    rival_classes = {q.query_id: np.full(shape, (k % (len(names) - 1)) + 1) for k, q in enumerate(answered[:4])}
    jobs = []
    for k, q in enumerate(answered):
        t = ls_task(600 + k, q, k)
        a = ls_annotation(700 + k, 600 + k, answer(q, truth[q.query_id], names), user=1 + k % 3)
        jobs += [webhook("ANNOTATION_CREATED", a, t)] * 2 + [webhook("ANNOTATION_UPDATED", a, t)]
        if q.query_id in rival_classes:
            r = ls_annotation(800 + k, 600 + k, answer(q, rival_classes[q.query_id], names), user=9)
            jobs.append(webhook("ANNOTATION_CREATED", r, t))
    random.Random(5).shuffle(jobs)
    barrier = threading.Barrier(12)

    def send(chunk):
        barrier.wait()
        return [(j, *call(url, "POST", "/webhook", j)) for j in chunk]

    with ThreadPoolExecutor(12) as ex:
        outs = [o for part in ex.map(send, [jobs[i::12] for i in range(12)]) for o in part]
    assert len(outs) == len(jobs) == 3 * len(answered) + 4
    recorded = {}
    for job, st, doc in outs:
        a = job["annotation"]
        if st == 200:
            (r,) = doc["results"]
            if r["status"] == "recorded":
                assert a["task"] not in recorded
                recorded[a["task"]] = a["id"]
            else:
                assert r["status"] == "already recorded"
        else:
            assert st == 409 and "is already labelled" in doc["error"] and "nothing of this step was recorded" in \
                doc["error"]
    assert sorted(recorded) == [600 + k for k in range(len(answered))]
    # the winner of each rivalry is whichever came first; the loser got 409 every time
    answers = {}
    with ledger_of(run) as led:
        rows = led.labels(1)
        assert len(rows) == len(answered) and led.cycle() == 1
        assert [q.query_id for q in led.pending_queries(1)] == [left.query_id]
        for k, q in enumerate(answered):
            (row,) = [r for r in rows if r["query_id"] == q.query_id]
            aid = recorded[600 + k]
            user = 9 if aid >= 800 else 1 + k % 3
            assert row["origin"] == f"label-studio project {PROJECT} task {600 + k} annotation {aid} (annotator {user})"
            assert row["n_pixels"] == int(q.mask.sum()) and row["source"] == "human"
            answers[q.query_id] = rival_classes[q.query_id] if aid >= 800 else truth[q.query_id]
        for key, lm in _expected_map(qs, answers, shape).items():
            assert np.array_equal(led.label_map(key, shape), lm), key
    assert b.wait_idle(60) and b.opened == []                  # one query open: the cycle stays open


def _start_backend(run, *extra, env=None, log=None):
    """``viewal label-studio serve`` on a free port; returns (process, url) once it listens."""
    cmd = [sys.executable, "-c", "import sys; from viewal.cli import main; sys.exit(main())", "label-studio", "serve",
           "--run", str(run), "--port", "0", "--token", TOKEN, "--threads", "1", *extra]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env={**os.environ, **(env or {})})
    line = p.stdout.readline().decode()
    m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
    if not m:
        p.kill()
        raise AssertionError(f"backend did not start: {line!r} {Path(log).read_text()[-2000:] if log else ''}")
    return p, m.group(1)


def _post_all(url, jobs, workers=8):
    def one(j):
        try:
            return call(url, "POST", "/webhook", j, timeout=60)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            return None, str(e)

    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, jobs))


def test_two_backend_processes_and_rival_annotations(run, tmp_path):
    """Two backend processes serve one run; every task gets two rival annotations, sent at the same time to
    the two processes. Exactly one of each pair is recorded (the ledger's write transactions serialise the
    processes), the other refused naming both; SIGINT and SIGTERM stop the processes cleanly."""
    from viewal.datasets import open_dataset
    from viewal.labelling.loop import read_loop

    qs = pending(run)
    doc = read_loop(run)
    names = list(open_dataset(doc["data"]).class_names)
    p1, url1 = _start_backend(run, "--no-advance", log=tmp_path / "b1.log")
    p2, url2 = _start_backend(run, "--no-advance", log=tmp_path / "b2.log")
    try:
        shape = qs[0].mask.shape
        pairs = []
        for k, q in enumerate(qs):
            t = ls_task(900 + k, q, k)
            a = ls_annotation(1000 + k, 900 + k, answer(q, np.full(shape, 1), names), user=1)
            r = ls_annotation(2000 + k, 900 + k, answer(q, np.full(shape, 2), names), user=2)
            pairs.append((webhook("ANNOTATION_CREATED", a, t), webhook("ANNOTATION_CREATED", r, t)))
        barrier = threading.Barrier(2 * len(pairs))

        def send(url, job):
            barrier.wait()
            return call(url, "POST", "/webhook", job, timeout=120)

        with ThreadPoolExecutor(2 * len(pairs)) as ex:
            futs = [(ex.submit(send, url1, a), ex.submit(send, url2, r)) for a, r in pairs]
            results = [(fa.result(), fr.result()) for fa, fr in futs]
        won = {}
        for k, ((sa, da), (sr, dr)) in enumerate(results):
            assert sorted([sa, sr]) == [200, 409], (k, da, dr)
            won[k] = 1 if sa == 200 else 2
            lost = dr if sa == 200 else da
            o1 = f"label-studio project {PROJECT} task {900 + k} annotation {1000 + k} (annotator 1)"
            o2 = f"label-studio project {PROJECT} task {900 + k} annotation {2000 + k} (annotator 2)"
            win, lose = (o1, o2) if sa == 200 else (o2, o1)
            assert f"from {win})" in lost["error"] and f"second label from {lose}" in lost["error"]
        with ledger_of(run) as led:
            rows = led.labels(1)
            assert sorted(r["query_id"] for r in rows) == sorted(q.query_id for q in qs)
            for k, q in enumerate(qs):
                (row,) = [r for r in rows if r["query_id"] == q.query_id]
                ann = 1000 + k if won[k] == 1 else 2000 + k
                assert row["origin"].endswith(f"task {900 + k} annotation {ann} (annotator {won[k]})")
                assert (led.label_map(q.frame_key, shape)[q.mask] == won[k]).all()
            assert led.cycle() == 1                                      # --no-advance
    finally:
        p1.send_signal(signal.SIGINT)
        p2.send_signal(signal.SIGTERM)
        rc1, rc2 = p1.wait(60), p2.wait(60)
    assert (rc1, rc2) == (0, 0)
    for name in ("b1.log", "b2.log"):
        assert "stopped" in (tmp_path / name).read_text()


def test_backend_killed_mid_import_then_restarted(run, tmp_path):
    """A bulk webhook with every answer: the backend is SIGKILLed right after the first answer was committed
    (VIEWAL_TEST_KILL_AT=label). Then a burst of single webhooks, and a SIGKILL from outside while they are in
    flight. Restarted, it is sent everything again: nothing lost, nothing labelled twice."""
    from viewal.datasets import open_dataset
    from viewal.labelling.loop import read_loop

    qs = pending(run)
    names = list(open_dataset(read_loop(run)["data"]).class_names)
    shape = qs[0].mask.shape
    classes = {q.query_id: np.full(shape, 1 + k % (len(names) - 1)) for k, q in enumerate(qs)}
    tasks = [ls_task(1100 + k, q, k) for k, q in enumerate(qs)]
    anns = [ls_annotation(1200 + k, 1100 + k, answer(q, classes[q.query_id], names)) for k, q in enumerate(qs)]
    bulk = {"action": "ANNOTATIONS_CREATED", "annotation": anns, "task": tasks, "project": ls_project()}
    log = tmp_path / "backend.log"
    p, url = _start_backend(run, "--no-advance", env={"VIEWAL_TEST_KILL_AT": "label"}, log=log)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(url, "POST", "/webhook", bulk)
    assert p.wait(30) == -signal.SIGKILL
    with ledger_of(run) as led:
        assert [r["query_id"] for r in led.labels(1)] == [qs[0].query_id]     # the first answer, committed
    # restarted: a burst of single webhooks, killed from outside after the first answers
    p, url = _start_backend(run, "--no-advance", log=log)
    singles = [webhook("ANNOTATION_CREATED", a, t) for a, t in zip(anns, tasks)]
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", _post_all(url, singles[1:], workers=4)))
    th.start()
    deadline = time.monotonic() + 60
    with ledger_of(run) as led:
        while len(led.labels(1)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    p.kill()
    th.join(120)
    assert p.wait(30) == -signal.SIGKILL
    with ledger_of(run) as led:
        done = len(led.labels(1))
    assert 3 <= done <= len(qs)
    # restarted again: everything sent again, the bulk twice
    p, url = _start_backend(run, "--no-advance", log=log)
    try:
        outs = _post_all(url, singles + [bulk, bulk], workers=6)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
    assert all(st == 200 for st, _ in outs), [d for st, d in outs if st != 200][:2]
    statuses = [r["status"] for _, d in outs for r in d["results"]]
    assert statuses.count("recorded") == len(qs) - done and statuses.count("already recorded") == \
        3 * len(qs) - (len(qs) - done)
    with ledger_of(run) as led:
        rows = led.labels(1)
        assert [r["query_id"] for r in rows].count(qs[0].query_id) == 1
        assert sorted(r["query_id"] for r in rows) == sorted(q.query_id for q in qs)
        for k, q in enumerate(qs):
            (row,) = [r for r in rows if r["query_id"] == q.query_id]
            assert row["origin"] == (f"label-studio project {PROJECT} task {1100 + k} annotation {1200 + k} "
                                     f"(annotator 1)")
            assert (led.label_map(q.frame_key, shape)[q.mask] == classes[q.query_id][q.mask]).all()
        assert led.pending_queries() == [] and led.cycle() == 1


# ------------------------------------------------------------------------------------------ the next cycle

def _answer_all(url, run, names, backend=None, base=3000):
    from viewal.datasets import open_dataset
    from viewal.labelling.loop import read_loop

    ds = backend.dataset if backend is not None else open_dataset(read_loop(run)["data"])
    jobs = []
    for k, q in enumerate(pending(run)):
        gt = np.asarray(ds.frame(q.scene_id, q.frame_id).labels).astype(np.int64)
        t = ls_task(base + k, q, k)
        a = ls_annotation(base + 500 + k, base + k, answer(q, gt, names))
        jobs.append(webhook("ANNOTATION_CREATED", a, t))
    return jobs


def _project_with_cycle_1(fake, run):
    """The stand-in project holds cycle 1's tasks, as pushed or imported before."""
    with ledger_of(run) as led:
        fake.tasks += [{"id": 1 + k, "project": PROJECT, "data": {"query_id": q.query_id}}
                       for k, q in enumerate(led.queries(1))]


def _check_pushed(fake, run):
    """One import, of one task per query of the open cycle 2, each the query's task with its prediction."""
    with ledger_of(run) as led:
        c = led.cycle()
        qs = led.queries(c)
    assert c == 2 and len(qs) >= 12
    assert len(fake.imports) == 1 and len(fake.imports[0]) == len(qs)
    by_qid = {t["data"]["query_id"]: t for t in fake.imports[0]}
    assert sorted(by_qid) == sorted(q.query_id for q in qs)
    for rank, q in enumerate(qs):
        t = by_qid[q.query_id]
        d = t["data"]
        assert (d["index"], d["cycle"], d["scene_id"], d["frame_id"], d["region_id"]) == (
            rank, 2, q.scene_id, q.frame_id, q.region_id)
        assert d["image"].startswith("data:image/png;base64,")
        (pred,) = t["predictions"]
        assert pred["model_version"] == "viewal cycle 2" and pred["score"] == pytest.approx(q.score, rel=1e-12)
        first = pred["result"][0]
        assert first["value"]["brushlabels"] == [QUERY_LABEL]
        assert np.array_equal(brush_decode(first["value"]["rle"], q.mask.shape), q.mask)
        assert len(pred["result"]) >= 2                                 # the cycle-1 model's classes inside


def test_answered_cycle_advances_once_in_the_background_and_pushes_its_tasks(run, serving, fake_ls):
    """The last answer closes cycle 1: the backend advances the run in a background thread (fit, score,
    select) while webhooks keep being answered, and pushes cycle 2's tasks into the project once."""
    _project_with_cycle_1(fake_ls, run)
    client = LabelStudioClient(fake_ls.url, LS_KEY)
    b = LabelStudioBackend(run, TOKEN, client=client, project=PROJECT)
    url = serving(b)
    names = b.class_names
    jobs = _answer_all(url, run, names, b)
    outs = _post_all(url, jobs, workers=6)
    assert [d["results"][0]["status"] for _, d in outs] == ["recorded"] * len(jobs)
    # while it advances: repeated webhooks are answered at once, and nothing advances twice
    t0 = time.monotonic()
    lat = []
    while time.monotonic() - t0 < 60:
        s = time.monotonic()
        st, d = call(url, "POST", "/webhook", jobs[0])
        lat.append(time.monotonic() - s)
        assert st == 200 and d["results"][0]["status"] == "already recorded"
        b.kick()
        if not b.busy():
            break
        time.sleep(0.5)
    assert b.wait_idle(600), "the advance did not finish"
    assert max(lat) < 1.0, lat                       # Label Studio waits 1 s for a webhook
    assert b.opened == [2] and b.last_error is None
    _check_pushed(fake_ls, run)
    with ledger_of(run) as led:
        assert led.cycle() == 2 and len(led.results()) == 2
    # later kicks, a setup, a second backend on the run: nothing more advanced or pushed
    b.kick()
    assert b.wait_idle(60)
    assert call(url, "POST", "/setup", {"project": f"{PROJECT}.1"}) == (200, {"model_version": "viewal cycle 2"})
    b2 = LabelStudioBackend(run, TOKEN, client=client, project=PROJECT)
    b2.kick()
    assert b2.wait_idle(60) and b2.opened == [] and b2.pushed == []
    assert len(fake_ls.imports) == 1 and b.opened == [2]
    # the cycle-2 tasks are predicted with cycle 2's model
    with ledger_of(run) as led:
        q = led.queries(2)[0]
    st, d = call(url, "POST", "/predict", {"tasks": [ls_task(1, q, 0)]})
    assert st == 200 and d["results"][0]["model_version"] == "viewal cycle 2"
    assert (run / LOCK_FILE).is_file() and (run / LOCK_FILE).stat().st_size == 0


def test_backend_killed_during_the_advance_resumes_and_pushes_once(run, tmp_path, fake_ls):
    """SIGKILL right after cycle 2's queries were recorded, before they were pushed (VIEWAL_TEST_KILL_AT=
    queried:2). The restarted backend pushes them once, and does not advance again."""
    from viewal.datasets import open_dataset
    from viewal.labelling.loop import read_loop

    names = list(open_dataset(read_loop(run)["data"]).class_names)
    _project_with_cycle_1(fake_ls, run)
    log = tmp_path / "backend.log"
    ls = ["--ls-url", fake_ls.url, "--ls-api-key", LS_KEY, "--project", str(PROJECT)]
    p, url = _start_backend(run, *ls, env={"VIEWAL_TEST_KILL_AT": "queried:2"}, log=log)
    outs = _post_all(url, _answer_all(url, run, names), workers=4)
    assert all(st == 200 for st, _ in outs)
    assert p.wait(600) == -signal.SIGKILL, log.read_text()[-3000:]
    assert fake_ls.imports == []
    with ledger_of(run) as led:
        assert led.cycle() == 2 and len(led.pending_queries(2)) >= 12
    p, url = _start_backend(run, *ls, log=log)
    try:
        deadline = time.monotonic() + 300
        while not fake_ls.imports and time.monotonic() < deadline:
            time.sleep(0.2)
        st, status = call(url, "GET", "/status")
        assert st == 200 and status["opened"] == [] and status["last_error"] is None
        assert status["pushed"] == len(fake_ls.imports[0])
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(120) == 0
    _check_pushed(fake_ls, run)
    # started once more: the project holds every task, nothing is pushed
    p, url = _start_backend(run, *ls, log=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st, status = call(url, "GET", "/status")
            if not status["busy"]:
                break
            time.sleep(0.2)
        assert status["pushed"] == 0 and status["opened"] == []
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(120) == 0
    assert len(fake_ls.imports) == 1


def _answer_in_ledger(run):
    """Every pending query of the open cycle answered with the dataset's labels, straight into the ledger."""
    from viewal.labelling.loop import open_learner
    from viewal.runs.ledger import LabelItem

    learner = open_learner(run)
    try:
        c = learner.ledger.cycle()
        for q in learner.ledger.pending_queries(c):
            learner.ledger.record_labels(c, [LabelItem.from_query(q, learner.oracle.label_query(q), "human")])
    finally:
        learner.ledger.close()


def _wait_log(log, text, timeout=600):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged: {log.read_text()[-3000:]}"
        time.sleep(0.05)


def test_stop_waits_for_the_advance_and_a_second_signal_stops_at_once(run, tmp_path):
    """SIGTERM during an advance: no new requests, the advance is waited for; a second SIGTERM stops at once
    (exit 0). The next start finishes that advance, once: one result per closed cycle, cycle 2 opened."""
    _answer_in_ledger(run)                          # answered while no backend ran: the start advances the run
    log = tmp_path / "backend.log"
    p, url = _start_backend(run, log=log)
    _wait_log(log, "is answered: advancing")
    p.send_signal(signal.SIGTERM)
    _wait_log(log, "waiting for the background step (advance) to end")
    with pytest.raises((urllib.error.URLError, ConnectionError)):   # no new requests meanwhile
        call(url, "GET", "/status", timeout=5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 0
    assert "the background step was left unfinished and resumes at the next start" in log.read_text()
    with ledger_of(run) as led:
        assert [r["cycle"] for r in led.results()] in ([0], [0, 1]) and not led.queries(2)
    p, url = _start_backend(run, log=log)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            st, status = call(url, "GET", "/status")
            if status["opened"] and not status["busy"]:
                break
            time.sleep(0.2)
        assert status["opened"] == [2] and status["last_error"] is None, status
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(120) == 0
    with ledger_of(run) as led:
        assert led.cycle() == 2 and [r["cycle"] for r in led.results()] == [0, 1]
        assert len(led.pending_queries(2)) == len(led.queries(2)) >= 12


def test_a_cycle_opened_with_nothing_to_ask_is_not_advanced_again(run, monkeypatch):
    """When the pool has nothing left to ask, the advance opens a cycle without queries: the backend does not
    try to open it again at every kick (each try would score the pool for nothing)."""
    import viewal.labelling.lsbackend

    _answer_in_ledger(run)
    calls = []

    def advance(run_dir, force=False, progress=True, learner=None):  # closes the cycle, asks nothing
        with ledger_of(run_dir) as led:
            calls.append(led.cycle())
            led.finish_cycle(led.cycle(), {"miou": 0.5})
        return []

    monkeypatch.setattr(viewal.labelling.lsbackend, "advance", advance)
    b = LabelStudioBackend(run, TOKEN)
    for _ in range(3):
        b.kick()
        assert b.wait_idle(120)
    assert calls == [1] and b.opened == [2] and b.last_error is None
    with ledger_of(run) as led:
        assert led.cycle() == 2 and led.queries(2) == [] and [r["cycle"] for r in led.results()] == [0, 1]


# ------------------------------------------------------------------------------------------ client, CLI

def test_client_pages_tasks_and_refreshes_a_personal_access_token():
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    jwt = f"{head}.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln"
    fake = FakeLabelStudio(key="unused", access="access-1")
    try:
        c = LabelStudioClient(fake.url, jwt)
        tasks = [{"data": {"query_id": 10 + k, "image": "x"}} for k in range(230)] + [{"data": {"image": "y"}}]
        assert c.import_tasks(PROJECT, tasks) == 231
        assert c.project_query_ids(PROJECT) == set(range(10, 240))       # three pages of 100
        assert c.project_query_ids(PROJECT + 1) == set()
        assert fake.refreshes == 1
        fake.access = "access-2"                                         # expired: refreshed once, retried
        assert len(c.project_query_ids(PROJECT)) == 230 and fake.refreshes == 2
        bad = LabelStudioClient(fake.url, "0" * 40)
        with pytest.raises(Exception, match=r"Label Studio GET .*/api/tasks/.*: HTTP 401"):
            bad.project_query_ids(PROJECT)
    finally:
        fake.close()
    with pytest.raises(Exception, match=r"Label Studio GET http://127\.0\.0\.1:9/api/tasks/"):
        LabelStudioClient("http://127.0.0.1:9", LS_KEY, timeout=5).project_query_ids(1)
    with pytest.raises(ValueError, match="Label Studio URL must be http"):
        LabelStudioClient("127.0.0.1:8080", LS_KEY)


def test_cli_errors_name_what_is_missing(run, capsys, monkeypatch):
    monkeypatch.delenv("VIEWAL_BACKEND_TOKEN", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    base = ["label-studio", "serve", "--run", str(run), "--port", "0"]
    cases = [([], "give the shared secret with --token or $VIEWAL_BACKEND_TOKEN"),
             (["--token", "short"], "the token must be a shared secret of at least 16 characters"),
             (["--token", TOKEN, "--ls-url", "http://127.0.0.1:8080", "--project", "1"],
              "--ls-url needs Label Studio's API token: --ls-api-key or $LABEL_STUDIO_API_KEY"),
             (["--token", TOKEN, "--ls-url", "http://127.0.0.1:8080", "--ls-api-key", LS_KEY],
              "--ls-url needs the project to push tasks into: --project ID"),
             (["--token", TOKEN, "--port", "70000"], "--port must lie in 0..65535, got 70000")]
    for extra, msg in cases:
        assert cli_main(base + extra) == 1
        assert msg in capsys.readouterr().err
    assert cli_main(["label-studio", "serve", "--run", str(run.parent / "nowhere"), "--token", TOKEN]) == 1
    assert "not a loop run, no loop.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ a real server

class _Recorder:
    """A webhook target that keeps what Label Studio posts (to compare its payloads with the fast tests')."""

    def __init__(self):
        self.posts = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                rec.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.mark.slow
def test_label_studio_server_runs_a_cycle_with_the_backend(run, tmp_path, label_studio):
    """A project made through the SDK, the backend connected as its model (Basic auth with the token) with its
    webhook given the token header; the backend pushes cycle 1's tasks, Label Studio asks it for predictions,
    annotations posted through the SDK land in the ledger at once, the answered cycle advances, and cycle 2's
    tasks appear in the project, once each."""
    from viewal.datasets import open_dataset
    from viewal.labelling.loop import read_loop

    url, key, sdk = label_studio.url, label_studio.token, label_studio.sdk
    ds = open_dataset(read_loop(run)["data"])
    names = list(ds.class_names)
    qs1 = pending(run)
    pid = sdk("out = client.projects.create(title='viewal run', label_config=args['config']).id",
              config=labelling_config(names))
    log = tmp_path / "backend.log"
    p, burl = _start_backend(run, "--ls-url", url, "--ls-api-key", key, "--project", str(pid), log=log)
    recorder = _Recorder()
    try:
        # the backend pushes the open cycle's tasks into the empty project at its start
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = sdk("out = len(list(client.tasks.list(project=args['p'])))", p=pid)
            if n == len(qs1):
                break
            time.sleep(2)
        ml = sdk("""
ml = client.ml.create(project=args['p'], url=args['u'], title='viewal', auth_method='BASIC_AUTH',
                      basic_auth_user='viewal', basic_auth_pass=args['t'], is_interactive=True)
hooks = [h for h in client.webhooks.list(project=args['p']) if h.url.rstrip('/') == args['u'] + '/webhook']
for h in hooks:
    client.webhooks.update(id=h.id, url=h.url, headers={'Authorization': 'Bearer ' + args['t']})
client.webhooks.create(url=args['r'], project=args['p'], send_payload=True, send_for_all_actions=True)
ml = client.ml.get(id=ml.id)
tasks = sorted(client.tasks.list(project=args['p'], fields='all'), key=lambda t: t.data['index'])
import requests
pred = requests.post(f"{sys.argv[1]}/api/ml/{ml.id}/interactive-annotating",
                     json={'task': tasks[0].id, 'context': {}},
                     headers={'Authorization': 'Token ' + args['k']}, timeout=300).json()
out = {'id': ml.id, 'state': str(ml.state), 'version': ml.model_version, 'hooks': len(hooks),
       'tasks': [{'id': t.id, 'data': {k: v for k, v in t.data.items() if k != 'image'},
                  'predictions': [{'score': x.score, 'model_version': x.model_version, 'n': len(x.result)}
                                  for x in t.predictions]} for t in tasks],
       'interactive': pred}
""", p=pid, u=burl, t=TOKEN, r=recorder.url, k=key)
        assert ml["hooks"] == 1 and ml["version"] == "viewal cycle 1" and ml["state"] in ("CO", "Connected"), ml
        tasks = ml["tasks"]
        assert [t["data"]["query_id"] for t in tasks] == [q.query_id for q in qs1]
        for t, q in zip(tasks, qs1):
            (pr,) = t["predictions"]
            assert pr["model_version"] == "viewal cycle 1" and pr["score"] == pytest.approx(q.score, rel=1e-9)
            assert pr["n"] >= 2
        # Label Studio asked the backend (/predict) for the first task: the region and the model's classes
        res = ml["interactive"]["data"]
        assert res["model_version"] == "viewal cycle 1" and res["score"] == pytest.approx(qs1[0].score, rel=1e-9)
        assert res["result"][0]["value"]["brushlabels"] == [QUERY_LABEL]
        assert np.array_equal(brush_decode(res["result"][0]["value"]["rle"], qs1[0].mask.shape), qs1[0].mask)
        # annotators save: each query's ground truth painted inside its region, plus a stroke outside it
        results = {}
        for t, q in zip(tasks, qs1):
            gt = np.asarray(ds.frame(q.scene_id, q.frame_id).labels).astype(np.int64)
            results[t["id"]] = answer(q, gt, names, [brush_result(~q.mask, names[0], "outside")])
        t0 = time.monotonic()
        made = sdk("""
out = {}
for tid, res in args['r'].items():
    out[tid] = client.annotations.create(id=int(tid), result=res, was_cancelled=False).id
first = sorted(out)[0]
client.annotations.update(id=out[first], result=args['r'][first][:1])
""", r={str(k): v for k, v in results.items()})
        saving = time.monotonic() - t0
        me = sdk("out = client.users.whoami().id")
        with ledger_of(run) as led:
            rows = led.labels(1)
            assert sorted(r["query_id"] for r in rows) == sorted(q.query_id for q in qs1)
            for t, q in zip(tasks, qs1):
                (row,) = [r for r in rows if r["query_id"] == q.query_id]
                assert row["origin"] == (f"label-studio project {pid} task {t['id']} annotation {made[str(t['id'])]} "
                                         f"(annotator {me})")
                gt = np.asarray(ds.frame(q.scene_id, q.frame_id).labels).astype(np.int64)
                lm = led.label_map(q.frame_key, q.mask.shape, max_cycle=1)
                assert np.array_equal(lm[q.mask], gt[q.mask])
        # the answered cycle advances in the backend; cycle 2's tasks appear in the project, once each
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            st, status = call(burl, "GET", "/status")
            if status["opened"] == [2] and not status["busy"]:
                break
            time.sleep(3)
        assert status["opened"] == [2] and status["last_error"] is None, status
        with ledger_of(run) as led:
            qs2 = led.queries(2)
            assert led.cycle() == 2 and len(qs2) >= 12
        all_tasks = sdk("""
out = [{'id': t.id, 'q': t.data.get('query_id'), 'c': t.data.get('cycle'),
        'p': [(x.model_version, x.score) for x in t.predictions]}
       for t in client.tasks.list(project=args['p'], fields='all')]""", p=pid)
        two = [t for t in all_tasks if t["c"] == 2]
        assert sorted(t["q"] for t in two) == sorted(q.query_id for q in qs2)
        assert len(all_tasks) == len(qs1) + len(qs2)
        for t in two:
            ((mv, score),) = t["p"]
            assert mv == "viewal cycle 2" and score == pytest.approx(next(q.score for q in qs2 if q.query_id == t["q"]))
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(120)
        recorder.server.shutdown()
    assert rc == 0
    # the webhook payloads Label Studio sent have the shape the fast tests send
    created = [x for x in recorder.posts if x["action"] == "ANNOTATION_CREATED"]
    updated = [x for x in recorder.posts if x["action"] == "ANNOTATION_UPDATED"]
    assert len(created) == len(qs1) and len(updated) == 1
    sample = created[0]
    assert set(sample) == {"action", "annotation", "task", "project"}
    assert set(sample["annotation"]) == set(ls_annotation(1, 1, []))
    assert set(sample["task"]) == set(ls_task(1, qs1[0], 0))
    print(f"\nsaving {len(qs1)} annotations through the SDK took {saving:.1f} s; "
          f"{len(qs2)} tasks of cycle 2 pushed")
