"""A Label Studio ML backend for a loop run: pre-annotations, answers into the ledger as they are saved, and the
next cycle's tasks pushed into the project when a cycle is answered.

One HTTP server (stdlib :class:`~http.server.ThreadingHTTPServer`) serves one run folder of
``viewal loop start`` (:mod:`viewal.labelling.loop`). Label Studio (checked against 1.23: ``label_studio/ml`` and
``label_studio/webhooks``) calls it on the *model URL* of a project's Model settings:

================== =====================================================================================
``GET /health``    ``{"status": "UP", "model_class": "viewal"}``; Label Studio calls it before every
                   setup (1 s timeout). Open without credentials; wrong credentials get 401, which Label
                   Studio reports as "authentication parameters ... incorrect" when the model is connected.
``POST /setup``    ``{"project": "<id>.<created>", "schema": <labelling config>, "hostname", "access_token",
                   "extra_params"}`` → ``{"model_version": "viewal cycle <c>"}`` (the open cycle). A config
                   without viewal's brush labels, or another project than ``project``, is refused (422),
                   and Label Studio shows the message.
``POST /predict``  ``{"tasks": [task, ...], "project", "label_config", "params"}`` → ``{"results": [{"result",
                   "score", "model_version"}, ...]}``, one per task in order: the queried region pre-drawn as
                   "query region", then one brush per class that the model that chose the query predicts
                   inside it (:func:`viewal.labelling.labelstudio.prediction_results`); ``score`` is the query's score,
                   so the data manager sorts tasks by it.
``GET /versions``  ``{"versions": ["viewal cycle 0", ..., "viewal cycle <c>"]}``.
``POST /webhook``  Label Studio creates this webhook itself when a model is connected (``<model URL>/webhook``,
                   every action, with payload). ``ANNOTATION_CREATED`` and ``ANNOTATION_UPDATED``
                   (``{"action", "annotation": {...}, "task": {...}, "project": {...}}``) and
                   ``ANNOTATIONS_CREATED`` (lists) record the annotation at once; other actions are
                   acknowledged and ignored. Label Studio waits 1 s for the answer (``WEBHOOK_TIMEOUT``).
``POST /train``    acknowledged: the run trains when a cycle is answered, not on request.
``GET /status``    the run's cycles (answered and pending queries), the cycles this backend opened, whether
                   a background step runs, the last error.
================== =====================================================================================

**Token.** Every endpoint but ``/health`` requires the shared secret, sent as ``Authorization: Bearer
TOKEN`` (or ``Token TOKEN``), or as HTTP Basic auth with the token as password and any user name: that is
what Label Studio's model connection sends ("Basic Authentication" in the model's settings). Label Studio's
webhook carries no credentials of its own: give it the header ``Authorization: Bearer TOKEN`` in the
project's Webhooks settings.

**Answers.** Each annotation is decoded with :func:`viewal.labelling.labelstudio.task_label_map`, validated and
restricted to its query's region (:func:`viewal.labelling.hitl.label_items`; the query is the ledger's, found by the
task's ``query_id``) and recorded in one ledger transaction with the origin ``label-studio project P task T
annotation A (annotator U)`` and ``relabel="skip-same-origin"``: a webhook repeated, or an update of an
annotation already recorded, records nothing more (the first saved version is the answer); a second
annotation of an answered task is refused with 409, naming both origins. A task saved with only the pre-drawn
region is a void answer (nothing labellable there: recorded as 255, not asked again), as the file imports
record it; a skipped (cancelled) one leaves the query pending. Several annotators saving together
are serialised by the ledger's write transactions (``BEGIN IMMEDIATE``).

**The next cycle.** When the open cycle has no pending query left, a background thread advances the run
(:func:`viewal.labelling.loop.advance`: fit on the labels, evaluate, score the pool, select, record the new queries)
while webhooks keep being answered; one advance runs at a time, under an exclusive lock on
``RUN/label-studio.lock`` (several backends on one run advance it once), and it re-checks the ledger under
the lock, so a cycle is never advanced twice. The new queries are then pushed into the project through
Label Studio's REST import API (``POST /api/projects/<id>/import``) as tasks with their predictions, leaving
out those whose ``query_id`` the project already holds (``GET /api/tasks``): a backend stopped at any point
resumes at its next start, and pushes each task once. The SDK's client is not used: ``label-studio-sdk``
declares ``opencv-python-headless`` and an older numpy as dependencies, which would replace viewal's
``opencv-contrib`` build (docs/labelling.md).
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hmac
import json
import logging
import signal
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from viewal.core.faults import kill_point
from viewal.labelling.formats import brush_encode, coco_encode
from viewal.labelling.hitl import LabelImportError, label_items
from viewal.labelling.labelstudio import (
    QUERY_LABEL,
    annotator_of,
    check_labelling_config,
    make_task,
    model_version,
    png_data_uri,
    prediction_results,
    task_label_map,
)
from viewal.labelling.loop import advance, cycle_progress, load_query_model, open_learner, read_loop, run_ledger_path
from viewal.nn.model import frame_images
from viewal.runs.ledger import Ledger, LedgerError

__all__ = ["LabelStudioBackend", "LabelStudioClient", "LabelStudioError", "RequestError", "make_server", "serve",
           "ANNOTATION_ACTIONS", "LOCK_FILE", "MIN_TOKEN_LENGTH"]

log = logging.getLogger("viewal.labelling.lsbackend")

#: webhook actions whose annotations are recorded
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
#: the run's advance lock (several backends on one run advance it once)
LOCK_FILE = "label-studio.lock"
MIN_TOKEN_LENGTH = 16
MAX_BODY = 256 << 20  # a predict request embeds its tasks' images


class RequestError(Exception):
    """A request refused: HTTP ``status`` and a message naming what was wrong."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = int(status), message, extra


class LabelStudioError(RuntimeError):
    """A call of Label Studio's REST API failed (the message names the call and Label Studio's answer)."""


# --------------------------------------------------------------------------------------------- REST client

def _is_jwt(key: str) -> bool:
    """A personal access token (a JWT refresh token) rather than a legacy token."""
    parts = key.split(".")
    if len(parts) != 3:
        return False
    try:
        head = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(head, dict) and "alg" in head


class LabelStudioClient:
    """The few calls of Label Studio's REST API the backend makes (urllib, no SDK).

    Args:
        url: Label Studio's base URL. api_key: a legacy token (sent as ``Token KEY``) or a personal access
            token (a JWT refresh token, exchanged at ``/api/token/refresh/`` for an access token sent as
            ``Bearer``). timeout: seconds per call.
    """

    def __init__(self, url: str, api_key: str, timeout: float = 120.0) -> None:
        if not url or not urllib.parse.urlsplit(url).scheme.startswith("http"):
            raise ValueError(f"Label Studio URL must be http(s)://HOST[:PORT], got {url!r}")
        if not api_key:
            raise ValueError("Label Studio API key is empty")
        self.url = url.rstrip("/")
        self._key = api_key
        self._jwt = _is_jwt(api_key)
        self._access: str | None = None
        self.timeout = float(timeout)

    def _auth(self) -> str:
        if not self._jwt:
            return f"Token {self._key}"
        if self._access is None:
            self._access = self._call("POST", "/api/token/refresh/", {"refresh": self._key}, auth=False)["access"]
        return f"Bearer {self._access}"

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None, *, auth: bool = True,
              retry: bool = True) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = self._auth()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            answer = e.read()[:400].decode("utf-8", "replace")
            if e.code == 401 and auth and self._jwt and retry:  # the access token expired: refresh once
                self._access = None
                return self._call(method, path, body, params, auth=auth, retry=False)
            raise LabelStudioError(f"Label Studio {method} {url}: HTTP {e.code} {answer}") from None
        except (urllib.error.URLError, OSError) as e:
            raise LabelStudioError(f"Label Studio {method} {url}: {getattr(e, 'reason', e)}") from None
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            raise LabelStudioError(f"Label Studio {method} {url}: not a JSON answer: {text[:200]!r}") from None

    def project_query_ids(self, project: int) -> set[int]:
        """``query_id`` of every task of ``project`` that has one (the viewal tasks it holds)."""
        ids: set[int] = set()
        page, seen = 1, 0
        while True:
            try:
                doc = self._call("GET", "/api/tasks/", params={"project": int(project), "page": page,
                                                               "page_size": 100, "fields": "task_only"})
            except LabelStudioError as e:
                if page > 1 and "HTTP 404" in str(e):  # past the last page
                    break
                raise
            tasks = doc.get("tasks") if isinstance(doc, dict) else doc
            if not isinstance(tasks, list):
                raise LabelStudioError(f"Label Studio GET {self.url}/api/tasks/: no task list in the answer")
            for t in tasks:
                qid = (t.get("data") or {}).get("query_id") if isinstance(t, dict) else None
                if isinstance(qid, int):
                    ids.add(qid)
            seen += len(tasks)
            total = doc.get("total") if isinstance(doc, dict) else None
            if not tasks or (isinstance(total, int) and seen >= total):
                break
            page += 1
        return ids

    def import_tasks(self, project: int, tasks: list[dict]) -> int:
        """Import ``tasks`` (with their predictions) into ``project`` in one request; returns the task count
        Label Studio reports."""
        doc = self._call("POST", f"/api/projects/{int(project)}/import", tasks)
        n = doc.get("task_count") if isinstance(doc, dict) else None
        if n is None:
            raise LabelStudioError(f"Label Studio import into project {project}: unexpected answer {str(doc)[:200]}")
        return int(n)


# --------------------------------------------------------------------------------------------- the backend

@contextlib.contextmanager
def _run_lock(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on ``path`` (created empty): yields False when another process holds
    it. The kernel drops the lock when its holder dies, so a killed backend never leaves the run locked."""
    fd = open(path, "a+")  # noqa: SIM115 (held while locked)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        fd.close()


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


class LabelStudioBackend:
    """The backend's logic, without HTTP (see module docstring); :func:`make_server` puts it behind a server.

    Args:
        run: run folder of ``viewal loop start``.
        token: the shared secret every request but ``/health`` must carry.
        client: Label Studio's REST API (:class:`LabelStudioClient`), where new cycles' tasks are pushed;
            None: nothing is pushed (tasks come from ``viewal query export`` / ``viewal loop next``).
        project: the Label Studio project id this backend serves (setups and webhooks of another project are
            refused); needed with ``client``.
        auto_advance: advance the run when its open cycle is answered.
        threads: torch threads of the predictions and the advance (None: torch's default).
    """

    def __init__(self, run: str | Path, token: str, *, client: LabelStudioClient | None = None,
                 project: int | None = None, auto_advance: bool = True, threads: int | None = None) -> None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token must be a shared secret of at least {MIN_TOKEN_LENGTH} characters "
                             f"(e.g. python -c 'import secrets; print(secrets.token_hex(16))')")
        if client is not None and project is None:
            raise ValueError("pushing tasks to Label Studio needs the project id (--project)")
        self.run = Path(run)
        read_loop(self.run)  # not a loop run: said now, naming the folder
        self.ledger_path = run_ledger_path(self.run)
        self.token = token
        self.client = client
        self.project = None if project is None else int(project)
        self.auto_advance = bool(auto_advance)
        self.threads = threads
        if threads is not None:
            import torch

            torch.set_num_threads(int(threads))
        learner = open_learner(self.run)  # the run's dataset (at the run's size), classes and config
        try:
            self.dataset = learner.dataset
            self.size = learner.config.size
        finally:
            learner.close()
        self.class_names = [str(n) for n in self.dataset.class_names]
        brush_encode(np.zeros((1, 1), bool))  # the converter imported now: Label Studio waits 1 s for a webhook
        self._warm = True  # the first background step loads the open cycle's model (the first /predict is quick)
        self._models: dict[int, Any] = {}
        self._predicted: dict[tuple[int, str], np.ndarray] = {}
        self._model_lock = threading.Lock()  # model loads, forward passes, frame reads
        self._state_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._again = False
        self.step = None  # what the background worker does now: "warm-up", "push", "advance" or None
        self._need_push = client is not None
        self.opened: list[int] = []  # cycles this backend opened by advancing the run (in order)
        self._nothing_asked: set[int] = set()  # cycles opened with no query (nothing left to ask in the pool)
        self.pushed: list[int] = []  # query ids this backend pushed into the project
        self.last_error: str | None = None

    # ------------------------------------------------------------------------------------------ plumbing
    def _ledger(self):
        return Ledger(self.ledger_path)

    def authorised(self, header: str | None) -> bool:
        """True when an ``Authorization`` header carries the token (Bearer, Token or Basic's password)."""
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value, validate=True).decode("utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        elif scheme.lower() not in ("bearer", "token"):
            return False
        return hmac.compare_digest(value.encode(), self.token.encode())

    def _check_project(self, project: Any, what: str) -> int | None:
        """The project id of a payload (``"7.1712345678"``, 7 or ``{"id": 7}``), refused (422) when this
        backend serves another."""
        if isinstance(project, dict):
            project = project.get("id")
        pid = _int(str(project).split(".")[0]) if project is not None else None
        if self.project is not None and pid is not None and pid != self.project:
            raise RequestError(422, f"{what}: from Label Studio project {pid}; this backend serves project "
                                    f"{self.project} of run {self.run}")
        return pid

    @staticmethod
    def _query_of(led, data: Any, what: str):
        """The ledger's query of a task (by its data's ``query_id``), checked against the task's frame."""
        need = ("query_id", "scene_id", "frame_id")
        lacks = [k for k in need if not isinstance(data, dict) or data.get(k) is None]
        if lacks:
            raise RequestError(422, f"{what}: not a viewal task (its data lacks {', '.join(lacks)})")
        qid = _int(data["query_id"])
        if qid is None:
            raise RequestError(422, f"{what}: query_id must be an integer, got {data['query_id']!r}")
        cycle = _int(data.get("cycle"))
        q = next((q for q in (led.queries(cycle) if cycle is not None else []) if q.query_id == qid), None)
        if q is None:
            q = next((q for q in led.queries() if q.query_id == qid), None)
        if q is None:
            raise RequestError(422, f"{what}: query_id {qid} is not a query of the run's ledger {led.path} "
                                    f"(a task of another run?)")
        if (q.scene_id, q.frame_id) != (str(data["scene_id"]), str(data["frame_id"])):
            raise RequestError(422, f"{what}: query {qid} of the ledger is for {q.scene_id}/{q.frame_id}, the task "
                                    f"says {data['scene_id']}/{data['frame_id']} (a task of another run?)")
        return q

    # ------------------------------------------------------------------------------------------ predictions
    def model(self, cycle: int):
        """The model that chose ``cycle``'s queries (:func:`viewal.labelling.loop.load_query_model`), cached; None for
        cycle 0 and while its checkpoint is missing."""
        cycle = int(cycle)
        if cycle <= 0:
            return None
        with self._model_lock:
            if cycle in self._models:
                return self._models[cycle]
            learner = open_learner(self.run, dataset=self.dataset)
            try:
                model = load_query_model(learner, cycle, self.run)
            finally:
                learner.close()
            if model is not None:
                model.eval()
                for old in sorted(self._models)[:-1]:  # keep this cycle's and the previous one's
                    del self._models[old]
                self._models[cycle] = model
            return model

    def predicted_classes(self, query) -> np.ndarray | None:
        """(H, W) class ids that the model that chose ``query`` predicts on its frame (eval mode, argmax), or
        None when there is no such model (the seed set)."""
        import torch
        import torch.nn.functional as F

        model = self.model(query.cycle)
        if model is None:
            return None
        key = (int(query.cycle), query.frame_key)
        with self._model_lock:
            if key not in self._predicted:
                frame = self.dataset.frame(query.scene_id, query.frame_id)
                with torch.no_grad():
                    logits = model(frame_images([frame], self.size))
                    if tuple(logits.shape[-2:]) != tuple(query.mask.shape):
                        logits = F.interpolate(logits, size=tuple(query.mask.shape), mode="bilinear",
                                               align_corners=False)
                if len(self._predicted) >= 64:
                    self._predicted.pop(next(iter(self._predicted)))
                self._predicted[key] = logits.argmax(1)[0].cpu().numpy().astype(np.int64)
            return self._predicted[key]

    def prediction(self, query, rank: int | None = None) -> dict:
        """Label Studio's prediction of a query: ``{"result", "score", "model_version"}``."""
        rid = f"q{rank if rank is not None else query.query_id}"
        return {"result": prediction_results(query.mask, rid, self.predicted_classes(query), self.class_names),
                "score": float(query.score), "model_version": model_version(query.cycle)}

    def task(self, query, rank: int) -> dict:
        """The Label Studio task of a query (:func:`viewal.labelling.labelstudio.make_task`): the frame as a PNG
        data URI, the query's fields, and its prediction (:meth:`prediction`)."""
        mask = np.asarray(query.mask, dtype=bool)
        entry = {"index": int(rank), "query_id": query.query_id, "cycle": query.cycle, "scene_id": query.scene_id,
                 "frame_id": query.frame_id, "region_id": int(query.region_id), "score": float(query.score),
                 "view_score": None if query.view_score is None else float(query.view_score),
                 "n_pixels": int(mask.sum()), "height": int(mask.shape[0]), "width": int(mask.shape[1]),
                 "region": coco_encode(mask)}
        with self._model_lock:
            rgb = self.dataset.frame(query.scene_id, query.frame_id).rgb
        task = make_task(entry, png_data_uri(rgb), mask)
        task["predictions"] = [self.prediction(query, rank)]
        return task

    # ------------------------------------------------------------------------------------------ endpoints
    def health(self) -> dict:
        return {"status": "UP", "model_class": "viewal"}

    def setup(self, body: dict) -> dict:
        self._check_project(body.get("project"), "setup")
        schema = body.get("schema")
        if schema is not None:
            if not isinstance(schema, str):
                raise RequestError(400, f"setup: 'schema' must be the labelling config (XML text), got "
                                        f"{type(schema).__name__}")
            try:
                check_labelling_config(schema, self.class_names)
            except ValueError as e:
                raise RequestError(422, f"setup: {e}") from None
        with self._ledger() as led:
            cycle = led.cycle()
        self.kick()  # a push that failed earlier is tried again
        return {"model_version": model_version(cycle)}

    def versions(self) -> dict:
        with self._ledger() as led:
            cycle = led.cycle()
        return {"versions": [model_version(c) for c in range(cycle + 1)]}

    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise RequestError(400, "predict: 'tasks' must be a non-empty list of Label Studio tasks")
        self._check_project(body.get("project"), "predict")
        found = []
        with self._ledger() as led:
            for k, t in enumerate(tasks):
                what = f"predict: task {t.get('id', k) if isinstance(t, dict) else k}"
                if not isinstance(t, dict):
                    raise RequestError(400, f"{what}: not a task object")
                q = self._query_of(led, t.get("data"), what)
                found.append((q, _int(t["data"].get("index"))))
        results = [self.prediction(q, rank) for q, rank in found]
        return {"results": results}

    def status(self) -> dict:
        with self._ledger() as led:
            rows = cycle_progress(led)
            cycle = led.cycle()
        return {"run": str(self.run), "cycle": cycle, "cycles": rows, "busy": self.busy(),
                "opened": list(self.opened), "pushed": len(self.pushed), "last_error": self.last_error}

    def webhook(self, body: dict) -> tuple[int, dict]:
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise RequestError(400, "webhook: no 'action' (Label Studio's webhooks send one, e.g. ANNOTATION_CREATED)")
        if action not in ANNOTATION_ACTIONS:
            return 200, {"action": action, "status": "ignored",
                         "message": f"{action}: only {', '.join(ANNOTATION_ACTIONS)} are recorded"}
        self._check_project(body.get("project"), f"webhook {action}")
        anns, tasks = body.get("annotation"), body.get("task")
        if action == "ANNOTATIONS_CREATED":
            if not isinstance(anns, list) or not anns or not all(isinstance(a, dict) for a in anns):
                raise RequestError(400, f"webhook {action}: 'annotation' must be a non-empty list of annotations")
            if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
                raise RequestError(400, f"webhook {action}: 'task' must be the list of the annotations' tasks")
            by_id = {t.get("id"): t for t in tasks}
            pairs = []
            for k, a in enumerate(anns):
                t = by_id.get(a.get("task"), tasks[k] if k < len(tasks) else None)
                if t is None:
                    raise RequestError(400, f"webhook {action}: no task for annotation {a.get('id', k)} "
                                            f"(task {a.get('task')})")
                pairs.append((a, t))
        else:
            if not isinstance(anns, dict):
                raise RequestError(400, f"webhook {action}: no 'annotation' object in the payload")
            if not isinstance(tasks, dict):
                raise RequestError(400, f"webhook {action}: no 'task' object in the payload")
            pairs = [(anns, tasks)]
        results, errors = [], []
        for a, t in pairs:
            try:
                results.append(self._record(a, t, body.get("project")))
            except RequestError as e:
                if len(pairs) == 1:
                    raise
                errors.append(e)
                results.append({"task": t.get("id"), "annotation": a.get("id"), "status": "refused",
                                "error": e.message})
        if any(r["status"] == "recorded" for r in results):
            self.kick()
        if errors:
            raise RequestError(max(e.status for e in errors), "; ".join(e.message for e in errors), action=action,
                               results=results)
        return 200, {"action": action, "results": results}

    def _record(self, ann: dict, task: dict, project: Any) -> dict:
        """Record one annotation of one task in the ledger (see module docstring); returns its outcome."""
        tid, aid = task.get("id"), ann.get("id")
        what = f"task {tid}, annotation {aid}"
        if _int(tid) is None or _int(aid) is None:
            raise RequestError(400, f"{what}: the task and the annotation need integer ids")
        if ann.get("task") is not None and _int(ann.get("task")) != _int(tid):
            raise RequestError(400, f"{what}: the annotation belongs to task {ann.get('task')}")
        pid = self._check_project(ann.get("project", project), what)
        out = {"task": int(tid), "annotation": int(aid)}
        with self._ledger() as led:
            q = self._query_of(led, task.get("data"), what)
            out["query_id"] = q.query_id
            try:
                lab = task_label_map({"annotations": [ann]}, self.class_names, q.mask.shape, what)
            except LabelImportError as e:
                raise RequestError(422, str(e)) from None
            if lab is None:
                return {**out, "status": "cancelled", "message": f"{what}: skipped in Label Studio; the query "
                                                                 f"stays pending"}
            origin = (f"label-studio project {pid if pid is not None else '?'} task {tid} annotation {aid} "
                      f"(annotator {annotator_of(ann)})")
            entry = {"index": None, "query_id": q.query_id, "scene_id": q.scene_id, "frame_id": q.frame_id,
                     "region_id": q.region_id, "height": int(q.mask.shape[0]), "width": int(q.mask.shape[1]),
                     "region": coco_encode(q.mask)}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    items = label_items(self.run, [(entry, Path(what), lab)], None, len(self.class_names), True,
                                        origin, where=what)
                except LabelImportError as e:
                    raise RequestError(422, str(e)) from None
            if not items:
                return {**out, "status": "empty", "message": f"{what}: no class painted inside the query's region "
                                                             f"(only {QUERY_LABEL!r}); the query stays pending"}
            try:
                n = led.record_labels(led.cycle(), items, relabel="skip-same-origin")
            except LedgerError as e:
                raise RequestError(409, str(e)) from None
            if n:
                kill_point("label", led.cycle())  # the crash tests stop here: the answer committed, not answered
            labelled = int((items[0].labels != 255).sum())
        status = "recorded" if n else "already recorded"
        log.info("%s (query %s): %s, %d labelled pixels", what, q.query_id, status, labelled)
        out = {**out, "status": status, "labelled_pixels": labelled, "origin": origin}
        if not labelled:
            out["message"] = (f"{what}: no class painted inside the query's region (only {QUERY_LABEL!r}): a void "
                              f"answer, nothing labellable there; the region is not asked again")
        return out

    # ------------------------------------------------------------------------------------------ the next cycle
    def needs_advance(self) -> bool:
        """True when the open cycle can close: it has queries and none is pending, or it was never opened
        (a closed cycle whose next one was not recorded yet; a seed set the dataset labels)."""
        with self._ledger() as led:
            c = led.cycle()
            if led.queries(c):
                return not led.pending_queries(c)
            return c not in self._nothing_asked and led.labelled_pixels() > 0

    def kick(self) -> None:
        """Start the background worker (push missing tasks, advance when the cycle is answered) unless it
        runs; a running worker looks again when it is done."""
        with self._state_lock:
            if self._worker is not None and self._worker.is_alive():
                self._again = True
                return
            self._again = False
            self._worker = threading.Thread(target=self._work, name="viewal-advance", daemon=True)
            self._worker.start()

    def busy(self) -> bool:
        """True while the background worker runs (a push, an advance, the model's loading)."""
        with self._state_lock:
            return self._worker is not None and self._worker.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the background worker is done (True) or ``timeout`` s passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._state_lock:
                w = self._worker
            if w is None or not w.is_alive():
                return True
            w.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                return False

    def _work(self) -> None:
        while True:
            try:
                self._step()
                self.last_error = None
            except Exception as e:  # reported in /status and the log; the next kick tries again
                self.last_error = f"{type(e).__name__}: {e}"
                log.error("background step failed: %s\n%s", self.last_error, traceback.format_exc())
            with self._state_lock:
                if not self._again:
                    return
                self._again = False

    def _step(self) -> None:
        try:
            if self._warm:
                self._warm = False
                self.step = "warm-up"
                with self._ledger() as led:
                    self.model(led.cycle())
            self.step = "push"
            if self._need_push:
                self.push_tasks()
            if self.auto_advance and self.needs_advance():
                self.step = "advance"
                self._advance()
        finally:
            self.step = None

    def _advance(self) -> None:
        with _run_lock(self.run / LOCK_FILE) as mine:
            if not mine:
                log.info("another process is advancing run %s", self.run)
                return
            if not self.needs_advance():  # done meanwhile by another process
                return
            with self._ledger() as led:
                cycle = led.cycle()
            log.info("cycle %d of %s is answered: advancing (fit, evaluate, score, select)", cycle, self.run)
            t0 = time.monotonic()
            queries = advance(self.run, progress=False)
            with self._ledger() as led:
                self.opened.append(led.cycle())
                if not queries:  # not opened again by this backend: each try would score the pool for nothing
                    self._nothing_asked.add(led.cycle())
                    log.info("cycle %d was opened with no query: nothing left to ask in the pool", led.cycle())
            self._need_push = self.client is not None
            log.info("advanced in %.1f s: %d queries of cycle %d", time.monotonic() - t0, len(queries),
                     queries[0].cycle if queries else cycle + 1)
        if self._need_push:
            self.push_tasks()

    def push_tasks(self) -> int:
        """Push the open cycle's pending queries that the project does not hold yet; returns how many."""
        if self.client is None:
            self._need_push = False
            return 0
        with self._ledger() as led:
            c = led.cycle()
            ranked = list(enumerate(led.queries(c)))
            pending = {q.query_id for q in led.pending_queries(c)}
        have = self.client.project_query_ids(self.project)
        todo = [(r, q) for r, q in ranked if q.query_id in pending and q.query_id not in have]
        if todo:
            tasks = [self.task(q, r) for r, q in todo]
            n = self.client.import_tasks(self.project, tasks)
            self.pushed += [q.query_id for _, q in todo]
            log.info("pushed %d tasks of cycle %d into Label Studio project %d", n, c, self.project)
        self._need_push = False
        return len(todo)


# --------------------------------------------------------------------------------------------- HTTP

class _Handler(BaseHTTPRequestHandler):
    server_version = "viewal-label-studio-backend"
    backend: LabelStudioBackend  # set on the server's handler class

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, doc: dict, extra_headers: dict | None = None) -> None:
        body = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up waiting; what was done stays done
            log.info("%s %s: the caller left before the answer (%d)", self.command, self.path, status)

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "the request has no Content-Length; send a JSON body")
        n = _int(length)
        if n is None or n < 0:
            raise RequestError(400, f"Content-Length {length!r} is not a byte count")
        if n > MAX_BODY:
            raise RequestError(413, f"the body has {n} bytes; at most {MAX_BODY} are read")
        raw = self.rfile.read(n)
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise RequestError(400, f"the body must be a JSON object, got {type(doc).__name__}")
        return doc

    def _routes(self) -> dict[tuple[str, str], Callable[[], tuple[int, dict]]]:
        b = self.backend
        return {("GET", "/health"): lambda: (200, b.health()),
                ("GET", "/"): lambda: (200, b.health()),
                ("POST", "/setup"): lambda: (200, b.setup(self._body())),
                ("POST", "/predict"): lambda: (200, b.predict(self._body())),
                ("GET", "/versions"): lambda: (200, b.versions()),
                ("POST", "/webhook"): lambda: b.webhook(self._body()),
                ("POST", "/train"): lambda: (200, {"status": "ignored", "message": "viewal trains when a cycle "
                                                   "is answered (the backend advances the run itself)"}),
                ("GET", "/status"): lambda: (200, b.status())}

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        try:
            routes = self._routes()
            if (method, path) not in routes:
                methods = sorted(m for m, p in routes if p == path)
                if methods:
                    raise RequestError(405, f"{method} {path}: use {' or '.join(methods)}")
                raise RequestError(404, f"no endpoint {path}; this server answers "
                                        f"{', '.join(f'{m} {p}' for m, p in routes if p != '/')}")
            auth = self.headers.get("Authorization")
            open_health = path in ("/", "/health") and not auth
            if not open_health and not self.backend.authorised(auth):
                raise RequestError(401, "missing or wrong token: send 'Authorization: Bearer <token>', or HTTP "
                                        "Basic auth with the token as password (Label Studio's model connection)")
            status, doc = routes[(method, path)]()
            self._send(status, doc)
        except RequestError as e:
            if e.status >= 400:
                log.warning("%s %s: %d %s", method, path, e.status, e.message)
            headers = {"WWW-Authenticate": 'Basic realm="viewal"'} if e.status == 401 else None
            self._send(e.status, {"error": e.message, **e.extra}, headers)
        except Exception as e:  # noqa: BLE001 (answered as a JSON 500 naming the error)
            log.error("%s %s failed:\n%s", method, path, traceback.format_exc())
            self._send(500, {"error": f"{method} {path}: internal error: {type(e).__name__}: {e}"})

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # connections waiting to be accepted: a team saving at once is not refused


def make_server(backend: LabelStudioBackend, host: str = "127.0.0.1", port: int = 9090) -> ThreadingHTTPServer:
    """A threading HTTP server for ``backend`` bound to ``host:port`` (port 0: any free port); each request is
    answered in its own thread, and ``server_close`` waits for those in flight."""
    handler = type("ViewalHandler", (_Handler,), {"backend": backend})
    server = _Server((host, int(port)), handler)
    server.daemon_threads = False
    server.block_on_close = True
    return server


def serve(backend: LabelStudioBackend, host: str = "127.0.0.1", port: int = 9090, *,
          ready: Callable[[str], None] | None = None) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly: no new requests, those in flight answered, and the
    background step (an advance, a push; not the model's loading) finished. A second signal stops without
    waiting for it: the run resumes an advance at the next start (a step of the loop is resumable at any point), and
    :meth:`LabelStudioBackend.busy` is then still True. Returns 0."""
    server = make_server(backend, host, port)
    signals: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: signals.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="viewal-http",
                              daemon=True)
    try:
        thread.start()
        url = f"http://{server.server_address[0]}:{server.server_address[1]}"
        backend.kick()  # push what the project lacks, advance a cycle answered while no backend ran
        if ready is not None:
            ready(url)
        while not signals:
            time.sleep(0.2)
        log.info("stopping (%s): no new requests, answering those in flight", signal.Signals(signals[0]).name)
        server.shutdown()
        server.server_close()
        thread.join()
        if backend.busy() and backend.step != "warm-up":  # the model's loading is not waited for
            log.info("waiting for the background step (%s) to end; a second signal stops at once (an advance "
                     "resumes at the next start)", backend.step)
            n = len(signals)
            while backend.busy() and backend.step != "warm-up" and len(signals) == n:
                backend.wait_idle(0.2)
        if backend.busy():
            log.info("stopped; the background step was left unfinished and resumes at the next start")
        else:
            log.info("stopped")
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
