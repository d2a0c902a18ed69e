"""The active-learning state in one SQLite file: config, seeds, every query, every label, cycle results.

Durability: WAL journal, ``synchronous=FULL``, and **one transaction per step** (a batch of queries, a
labelling step, a cycle's end). A run killed at any moment (even SIGKILL) resumes from the last committed
step: nothing recorded is lost and nothing is labelled twice, because

* a query is labelled at most once (``labels.query_id`` is UNIQUE), and
* by default a label whose mask overlaps pixels that already carry a label of the same frame is refused
  (``overlap="error"``; ``"allow"`` lets a person correct labels — later labels win in :meth:`label_map`).

Typical resumable loop::

    led = Ledger("run.sqlite")
    while (c := led.cycle()) < cycles:
        if not led.queries(c):
            led.record_queries(c, select_queries(...))          # one transaction
        for q in led.pending_queries(c):
            led.record_labels(c, [LabelItem.from_query(q, oracle.label_query(q))])   # one transaction each
        led.finish_cycle(c, {"miou": ...})                       # result + cycle advance, one transaction

Masks are stored packed (``np.packbits`` + zlib) with their shape; label maps as PNG bytes (uint8,
255 = unlabelled).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from viewal.selection import RegionQuery

__all__ = ["Ledger", "LabelItem", "LedgerError", "SCHEMA_VERSION",
           "encode_mask", "decode_mask", "encode_labels", "decode_labels",
           "SOURCES", "config_diff"]

SOURCES = ("oracle", "human", "seed")
IGNORE_INDEX = 255

#: the ledger's schema version (meta key ``schema``): a ledger of another version is refused, naming both
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    cycle INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    scene_id TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    region_id INTEGER NOT NULL,
    score REAL,
    view_score REAL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    n_pixels INTEGER NOT NULL,
    mask BLOB NOT NULL,
    created REAL NOT NULL,
    UNIQUE (cycle, rank)
);
CREATE INDEX IF NOT EXISTS queries_cycle ON queries (cycle);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    cycle INTEGER NOT NULL,
    scene_id TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    region_id INTEGER NOT NULL,
    query_id INTEGER UNIQUE REFERENCES queries (id),
    source TEXT NOT NULL CHECK (source IN ('oracle', 'human', 'seed')),
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    n_pixels INTEGER NOT NULL,
    mask BLOB NOT NULL,
    labels BLOB NOT NULL,
    created REAL NOT NULL,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS labels_frame ON labels (scene_id, frame_id);
CREATE TABLE IF NOT EXISTS results (cycle INTEGER PRIMARY KEY, metrics TEXT NOT NULL, created REAL NOT NULL);
"""


class LedgerError(ValueError):
    """A ledger operation was refused (the message says why and names the ledger file)."""


# --------------------------------------------------------------------------------------------- codecs

def encode_mask(mask: np.ndarray) -> bytes:
    """(H, W) bool → compressed bytes (packbits + zlib); shape is stored separately."""
    return zlib.compress(np.packbits(np.ascontiguousarray(mask, dtype=bool)).tobytes(), 6)


def decode_mask(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_mask`: (H, W) bool."""
    n = int(shape[0]) * int(shape[1])
    return np.unpackbits(np.frombuffer(zlib.decompress(blob), dtype=np.uint8), count=n).astype(bool).reshape(shape)


def encode_labels(labels: np.ndarray) -> bytes:
    """(H, W) int class ids 0..254, 255 = unlabelled → PNG bytes (uint8, lossless)."""
    import cv2

    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() > 255):
        raise ValueError(f"labels must lie in 0..255 (255 = unlabelled), got {lab.min()}..{lab.max()}")
    ok, buf = cv2.imencode(".png", lab.astype(np.uint8))
    if not ok:  # pragma: no cover
        raise OSError("PNG encoding of a label map failed")
    return buf.tobytes()


def decode_labels(blob: bytes) -> np.ndarray:
    """PNG bytes → (H, W) int64."""
    import cv2

    img = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LedgerError("corrupt label PNG in ledger")
    return img.astype(np.int64)


@dataclass
class LabelItem:
    """Labels for one region (or one whole frame).

    Attributes:
        scene_id, frame_id: the frame.
        mask: (H, W) bool pixels this label covers (ignore pixels inside it count as labelled: they were asked).
        labels: (H, W) int class ids (255 = ignore / unlabelled); only pixels inside ``mask`` are kept.
        source: ``"oracle"``, ``"human"`` or ``"seed"``.
        region_id: region id in the frame's region map (-1 = whole frame / free-form).
        query_id: the ledger query this answers (``None`` for seeds and free-form labels).
        origin: where the label came from (an import's file and annotator); named when a second label for
            the same query is refused.
    """

    scene_id: str
    frame_id: str
    mask: np.ndarray
    labels: np.ndarray
    source: str = "oracle"
    region_id: int = -1
    query_id: int | None = None
    origin: str | None = None

    @classmethod
    def from_query(cls, query: Any, labels: np.ndarray, source: str = "oracle") -> LabelItem:
        """Label item answering a :class:`viewal.selection.RegionQuery` (recorded by the ledger)."""
        return cls(query.scene_id, query.frame_id, np.asarray(query.mask, dtype=bool), np.asarray(labels), source,
                   int(query.region_id), query.query_id)

    @property
    def frame_key(self) -> str:
        return f"{self.scene_id}/{self.frame_id}"


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON configs, one ``"key: stored -> now"`` per leaf.

    >>> config_diff({"al": {"mc_passes": 8, "lr": 0.1}}, {"al": {"mc_passes": 4, "lr": 0.1}})
    ['al.mc_passes: 8 (stored) -> 4 (now)']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}{k}"
            if k not in old:
                out.append(f"{key}: absent (stored) -> {json.dumps(new[k])} (now)")
            elif k not in new:
                out.append(f"{key}: {json.dumps(old[k])} (stored) -> absent (now)")
            else:
                out += config_diff(old[k], new[k], key + ".")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {json.dumps(old)} (stored) -> {json.dumps(new)} (now)"]
    return []


def _split_key(frame_key: str) -> tuple[str, str]:
    if "/" not in frame_key:
        raise KeyError(f"frame key must be 'scene/frame', got {frame_key!r}")
    s, f = frame_key.split("/", 1)
    return s, f


# --------------------------------------------------------------------------------------------- ledger

class Ledger:
    """SQLite-backed active-learning state (see module docstring).

    Args:
        path: SQLite file (created with its parent directory when missing).
        timeout: seconds to wait for a lock held by another connection.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mask_cache: dict[str, np.ndarray] = {}
        self._con = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.execute("PRAGMA foreign_keys=ON")
            # a truncated or overwritten file fails here, not minutes later in the middle of a cycle
            check = self._con.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            with self._tx():
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self._con.execute(stmt)
                # ledgers written before labels had an origin gain the column, NULL for old rows
                if "origin" not in {r[1] for r in self._con.execute("PRAGMA table_info(labels)")}:
                    self._con.execute("ALTER TABLE labels ADD COLUMN origin TEXT")
                stored = self._con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if stored is None:  # a new ledger, or one written before the schema had a number (the same)
                    self._con.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)",
                                      (json.dumps(SCHEMA_VERSION),))
                elif json.loads(stored[0]) != SCHEMA_VERSION:
                    raise LedgerError(f"{self.path}: a ledger of schema version {json.loads(stored[0])}; this viewal "
                                      f"reads version {SCHEMA_VERSION} (upgrade viewal, or start a new run)")
            self.config()  # the stored config must be JSON
        except LedgerError:
            self._con.close()
            raise
        except (sqlite3.DatabaseError, json.JSONDecodeError) as e:
            self._con.close()
            raise LedgerError(f"{self.path}: not a readable viewal ledger (corrupt or truncated: {e}); "
                              f"move it away or start a new run (viewal experiment --overwrite)") from None

    # ----------------------------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT; ROLLBACK on any error)."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            self._mask_cache.clear()
            raise
        else:
            self._con.execute("COMMIT")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, cycle={self.cycle()})"

    # ----------------------------------------------------------------------------------- meta / config
    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_config(self, config: dict, overwrite: bool = False) -> None:
        """Store the run's configuration (JSON; include seeds and superpixel settings).

        A different config already stored is an error unless ``overwrite`` (a resumed run must not
        silently change its settings).
        """
        json.dumps(config)  # fail early on non-serialisable values
        old = self.meta("config")
        if old is not None and not overwrite and json.loads(json.dumps(config)) != old:
            diff = config_diff(old, json.loads(json.dumps(config)))
            raise LedgerError(f"{self.path}: holds a run with a different config ({'; '.join(diff[:6])}"
                              f"{'; ...' if len(diff) > 6 else ''}); resume with the stored settings, or use a new "
                              f"ledger or overwrite=True")
        self.set_meta("config", config)

    def config(self) -> dict:
        """The stored configuration (``{}`` when none)."""
        return self.meta("config", {}) or {}

    # ----------------------------------------------------------------------------------- cycles
    def cycle(self) -> int:
        """Current cycle = number of finished cycles (0 on a fresh ledger)."""
        return int(self.meta("cycle", 0))

    def finish_cycle(self, cycle: int, metrics: dict | None = None) -> None:
        """Record the cycle's metrics (optional) and advance to ``cycle + 1``, in one transaction."""
        if cycle != self.cycle():
            raise LedgerError(f"{self.path}: cannot finish cycle {cycle}, the current cycle is {self.cycle()}")
        with self._tx() as con:
            if metrics is not None:
                con.execute("INSERT OR REPLACE INTO results (cycle, metrics, created) VALUES (?, ?, ?)",
                            (int(cycle), json.dumps(metrics), time.time()))
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cycle', ?)", (json.dumps(int(cycle) + 1),))

    def record_result(self, cycle: int, metrics: dict) -> None:
        """Store (or replace) the metrics of ``cycle`` (e.g. ``{"miou": 0.41, "labelled_fraction": 0.03}``)."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO results (cycle, metrics, created) VALUES (?, ?, ?)",
                        (int(cycle), json.dumps(metrics), time.time()))

    def results(self) -> list[dict]:
        """``[{"cycle": c, **metrics}, ...]`` by cycle."""
        rows = self._con.execute("SELECT cycle, metrics FROM results ORDER BY cycle").fetchall()
        return [{"cycle": c, **json.loads(m)} for c, m in rows]

    # ----------------------------------------------------------------------------------- queries
    def record_queries(self, cycle: int, queries: Sequence[Any]) -> list[Any]:
        """Record a cycle's queries (``RegionQuery``-like objects) in one transaction.

        Refused when the cycle already has queries (a resumed run reuses them: :meth:`queries`).
        Returns the queries with ``query_id`` and ``cycle`` set (new objects, same fields).
        """
        now = time.time()
        out = []
        with self._tx() as con:
            n = con.execute("SELECT COUNT(*) FROM queries WHERE cycle = ?", (int(cycle),)).fetchone()[0]
            if n:
                raise LedgerError(f"{self.path}: cycle {cycle} already has {n} recorded queries")
            for rank, q in enumerate(queries):
                mask = np.asarray(q.mask, dtype=bool)
                if mask.ndim != 2:
                    raise ValueError(f"query {rank}: mask must be (H, W), got {mask.shape}")
                vs = None if q.view_score is None else float(q.view_score)
                cur = con.execute(
                    "INSERT INTO queries (cycle, rank, scene_id, frame_id, region_id, score, view_score, height, width,"
                    " n_pixels, mask, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (int(cycle), rank, str(q.scene_id), str(q.frame_id), int(q.region_id), float(q.score), vs,
                     mask.shape[0], mask.shape[1], int(mask.sum()), encode_mask(mask), now))
                out.append(RegionQuery(scene_id=str(q.scene_id), frame_id=str(q.frame_id), mask=mask,
                                       score=float(q.score), region_id=int(q.region_id), view_score=vs,
                                       cycle=int(cycle), query_id=int(cur.lastrowid)))
        return out

    def _query_rows(self, where: str, args: tuple) -> list[Any]:
        rows = self._con.execute(
            "SELECT q.id, q.cycle, q.scene_id, q.frame_id, q.region_id, q.score, q.view_score, q.height, q.width,"
            " q.mask"
            f" FROM queries q {where} ORDER BY q.cycle, q.rank", args).fetchall()
        return [RegionQuery(scene_id=s, frame_id=f, mask=decode_mask(m, (h, w)), score=sc, region_id=r,
                            view_score=vs, cycle=c, query_id=i) for i, c, s, f, r, sc, vs, h, w, m in rows]

    def queries(self, cycle: int | None = None) -> list[Any]:
        """Recorded queries (of one cycle, or all), as ``RegionQuery`` with ``query_id`` set, in rank order."""
        if cycle is None:
            return self._query_rows("", ())
        return self._query_rows("WHERE q.cycle = ?", (int(cycle),))

    def pending_queries(self, cycle: int | None = None) -> list[Any]:
        """Recorded queries that have no label yet."""
        cond = "WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.query_id = q.id)"
        if cycle is None:
            return self._query_rows(cond, ())
        return self._query_rows(cond + " AND q.cycle = ?", (int(cycle),))

    # ----------------------------------------------------------------------------------- labels
    def record_labels(self, cycle: int, items: Sequence[LabelItem], overlap: str = "error",
                      relabel: str = "error") -> int:
        """Record one labelling step atomically (all items or none).

        The checks run inside the write transaction, so steps recorded concurrently by several processes
        (annotators importing at once) see each other: a query is labelled once, whichever step comes first.

        Args:
            cycle: cycle of the step.
            items: label items; each mask must not be empty.
            overlap: ``"error"`` (default) refuses an item whose mask overlaps pixels already labelled in its
                frame (by an earlier step or an earlier item of this step); ``"allow"`` accepts it (corrections).
            relabel: what to do with an item whose query is already labelled: ``"error"`` (default) refuses the
                step; ``"skip-same-origin"`` leaves out items whose query was labelled from the same ``origin``
                (the same file imported again) and still refuses a label from another origin.
        Returns:
            number of items recorded.
        Raises:
            LedgerError when a query is already labelled (naming the origins of both labels), a query id is
            unknown, or a refused overlap occurs (nothing of the step is recorded).
        """
        if overlap not in ("error", "allow"):
            raise ValueError(f"overlap must be 'error' or 'allow', got {overlap!r}")
        if relabel not in ("error", "skip-same-origin"):
            raise ValueError(f"relabel must be 'error' or 'skip-same-origin', got {relabel!r}")
        recorded = 0
        now = time.time()
        step_masks: dict[str, np.ndarray] = {}
        with self._tx() as con:
            for k, it in enumerate(items):
                if it.source not in SOURCES:
                    raise ValueError(f"label item {k}: source must be one of {SOURCES}, got {it.source!r}")
                mask = np.asarray(it.mask, dtype=bool)
                lab = np.asarray(it.labels)
                if mask.ndim != 2 or lab.shape != mask.shape:
                    raise ValueError(f"label item {k} ({it.frame_key}): labels {lab.shape} and mask {mask.shape} "
                                     f"must be the same (H, W)")
                if not mask.any():
                    raise ValueError(f"label item {k} ({it.frame_key}): empty mask")
                if it.query_id is not None:
                    row = con.execute("SELECT scene_id, frame_id FROM queries WHERE id = ?", (int(it.query_id),)
                                      ).fetchone()
                    if row is None:
                        raise LedgerError(f"{self.path}: label item {k} answers unknown query {it.query_id}")
                    if tuple(row) != (it.scene_id, it.frame_id):
                        raise LedgerError(f"{self.path}: label item {k} is for {it.frame_key} but query "
                                          f"{it.query_id} is for {row[0]}/{row[1]}")
                    done = con.execute("SELECT id, source, origin FROM labels WHERE query_id = ?",
                                       (int(it.query_id),)).fetchone()
                    if done is not None:
                        if relabel == "skip-same-origin" and it.origin is not None and done[2] == it.origin:
                            continue
                        raise LedgerError(f"{self.path}: query {it.query_id} ({it.frame_key}, region {it.region_id}) "
                                          f"is already labelled (label {done[0]}, from {done[2] or done[1]}); "
                                          f"refused the second label from {it.origin or it.source}; nothing of "
                                          f"this step was recorded")
                key = it.frame_key
                if overlap == "error":
                    prev = step_masks.get(key)
                    if prev is None:
                        prev = self._labelled_mask_con(con, key, mask.shape)
                    if prev.shape != mask.shape:
                        raise LedgerError(f"{self.path}: label item {k} ({key}) has shape {mask.shape}, earlier labels "
                                          f"of the frame have {prev.shape}")
                    both = int(np.count_nonzero(prev & mask))
                    if both:
                        raise LedgerError(f"{self.path}: label item {k} ({key}, region {it.region_id}) overlaps "
                                          f"{both} already-labelled pixels; nothing of this step was recorded")
                    step_masks[key] = prev | mask
                stored = np.where(mask, lab, IGNORE_INDEX)
                con.execute(
                    "INSERT INTO labels (cycle, scene_id, frame_id, region_id, query_id, source, height, width, "
                    "n_pixels, mask, labels, created, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (int(cycle), it.scene_id, it.frame_id, int(it.region_id),
                     None if it.query_id is None else int(it.query_id), it.source, mask.shape[0], mask.shape[1],
                     int(mask.sum()), encode_mask(mask), encode_labels(stored), now, it.origin))
                recorded += 1
        for key in {it.frame_key for it in items}:
            self._mask_cache.pop(key, None)
        return recorded

    def _label_rows(self, con: sqlite3.Connection, frame_key: str, max_cycle: int | None = None) -> list[tuple]:
        s, f = _split_key(frame_key)
        cond, args = ("", ()) if max_cycle is None else (" AND cycle <= ?", (int(max_cycle),))
        return con.execute("SELECT height, width, mask, labels FROM labels WHERE scene_id = ? AND frame_id = ?"
                           f"{cond} ORDER BY id", (s, f, *args)).fetchall()

    def _labelled_mask_con(self, con: sqlite3.Connection, frame_key: str,
                           shape: tuple[int, int] | None) -> np.ndarray | None:
        cached = self._mask_cache.get(frame_key)
        if cached is not None:
            return cached.copy()
        rows = self._label_rows(con, frame_key)
        if not rows:
            return None if shape is None else np.zeros(shape, dtype=bool)
        h, w = rows[0][0], rows[0][1]
        out = np.zeros((h, w), dtype=bool)
        for rh, rw, m, _ in rows:
            out |= decode_mask(m, (rh, rw))
        self._mask_cache[frame_key] = out
        return out.copy()

    def labelled_mask(self, frame_key: str, shape: tuple[int, int] | None = None, *,
                      max_cycle: int | None = None) -> np.ndarray | None:
        """(H, W) bool pixels of ``"scene/frame"`` that carry a label (any source).

        A frame without labels gives zeros of ``shape``, or ``None`` when ``shape`` is not given.
        ``max_cycle``: only the labels recorded in cycles <= it.
        """
        if max_cycle is None:
            return self._labelled_mask_con(self._con, frame_key, shape)
        rows = self._label_rows(self._con, frame_key, max_cycle)
        if not rows:
            return None if shape is None else np.zeros(shape, dtype=bool)
        out = np.zeros((rows[0][0], rows[0][1]), dtype=bool)
        for rh, rw, m, _ in rows:
            out |= decode_mask(m, (rh, rw))
        return out

    def label_map(self, frame_key: str, shape: tuple[int, int] | None = None, *,
                  max_cycle: int | None = None) -> np.ndarray | None:
        """(H, W) int64 labels of ``"scene/frame"`` (255 where unlabelled; later labels win on overlap);
        ``max_cycle``: only the labels recorded in cycles <= it (the state a past cycle trained on)."""
        rows = self._label_rows(self._con, frame_key, max_cycle)
        if not rows:
            return None if shape is None else np.full(shape, IGNORE_INDEX, dtype=np.int64)
        h, w = rows[0][0], rows[0][1]
        out = np.full((h, w), IGNORE_INDEX, dtype=np.int64)
        for rh, rw, m, lb in rows:
            mask = decode_mask(m, (rh, rw))
            out[mask] = decode_labels(lb)[mask]
        return out

    def labelled_frames(self) -> list[str]:
        """Keys ``"scene/frame"`` of every frame with at least one label, in first-labelled order."""
        rows = self._con.execute("SELECT scene_id, frame_id, MIN(id) AS first FROM labels GROUP BY scene_id, frame_id "
                                 "ORDER BY first").fetchall()
        return [f"{s}/{f}" for s, f, _ in rows]

    def labelled_pixels(self, source: str | None = None) -> int:
        """Number of distinct labelled pixels over all frames (optionally of one source)."""
        cond, args = ("WHERE source = ?", (source,)) if source else ("", ())
        rows = self._con.execute(f"SELECT scene_id, frame_id, COUNT(*), SUM(n_pixels) FROM labels {cond} "
                                 "GROUP BY scene_id, frame_id", args).fetchall()
        total = 0
        for s, f, n, px in rows:
            if n == 1:
                total += int(px)
                continue
            q = self._con.execute(f"SELECT height, width, mask FROM labels WHERE scene_id = ? AND frame_id = ?"
                                  f"{' AND source = ?' if source else ''}", (s, f, *args)).fetchall()
            m = np.zeros((q[0][0], q[0][1]), dtype=bool)
            for h, w, b in q:
                m |= decode_mask(b, (h, w))
            total += int(m.sum())
        return total

    def labels_digest(self) -> str:
        """SHA-1 of every label recorded (frame, region, source, mask, class ids), in recording order:
        equal digests mean a model trained on either ledger saw the same labels."""
        import hashlib

        h = hashlib.sha1()
        for row in self._con.execute("SELECT scene_id, frame_id, region_id, source, height, width, mask, labels "
                                     "FROM labels ORDER BY id"):
            for v in row:
                b = v if isinstance(v, bytes) else str(v).encode()
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
        return h.hexdigest()

    def labels(self, cycle: int | None = None) -> list[dict]:
        """Label records (without arrays): id, cycle, scene_id, frame_id, region_id, query_id, source, n_pixels,
        origin."""
        cond, args = ("WHERE cycle = ?", (int(cycle),)) if cycle is not None else ("", ())
        cols = ("id", "cycle", "scene_id", "frame_id", "region_id", "query_id", "source", "n_pixels", "origin")
        rows = self._con.execute(f"SELECT {', '.join(cols)} FROM labels {cond} ORDER BY id", args).fetchall()
        return [dict(zip(cols, r)) for r in rows]

    def counts(self) -> dict[str, int]:
        """Numbers of queries, labels, labelled queries and results (for status displays and checks)."""
        one = lambda sql: int(self._con.execute(sql).fetchone()[0])  # noqa: E731
        return {"queries": one("SELECT COUNT(*) FROM queries"), "labels": one("SELECT COUNT(*) FROM labels"),
                "labelled_queries": one("SELECT COUNT(*) FROM labels WHERE query_id IS NOT NULL"),
                "results": one("SELECT COUNT(*) FROM results"), "cycle": self.cycle()}
