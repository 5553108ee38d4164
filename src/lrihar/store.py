"""The project store: one SQLite file (WAL mode, schema-versioned, one transaction per batch).

A frame and all its detections are committed together, so a run killed at any point leaves
only whole frames behind and a rerun picks up exactly where it stopped.

Example:
    >>> from lrihar.store import Store
    >>> store = Store("proj/lrihar.db")  # doctest: +SKIP
    >>> store.counts()  # doctest: +SKIP
    {'sources': 1, 'frames': 50, 'detections': 73, ...}
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.errors import BadInputError

SCHEMA_VERSION = 5  # 2: embeddings, labels; 3: text_score, auto_label, post; 4: review; 5: run pid

FRAME_STATUSES = ("action", "empty", "gated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    added_at TEXT NOT NULL,
    post TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    stats TEXT,
    host TEXT,
    pid INTEGER,
    pid_start INTEGER
);
CREATE TABLE IF NOT EXISTS frames (
    source_id INTEGER NOT NULL REFERENCES sources(id),
    frame_index INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('action', 'empty', 'gated')),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    PRIMARY KEY (source_id, frame_index)
);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL,
    frame_index INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,
    text_score REAL,
    label TEXT NOT NULL,
    backend TEXT NOT NULL,
    box_threshold REAL,
    text_threshold REAL,
    handedness TEXT,
    landmarks TEXT,
    world_landmarks TEXT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    rejected INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (source_id, frame_index) REFERENCES frames(source_id, frame_index)
);
CREATE INDEX IF NOT EXISTS detections_by_frame ON detections(source_id, frame_index);
CREATE TABLE IF NOT EXISTS encoders (
    key TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS template_embeddings (
    sha1 TEXT NOT NULL,
    encoder_key TEXT NOT NULL REFERENCES encoders(key),
    vector BLOB NOT NULL,
    PRIMARY KEY (sha1, encoder_key)
);
CREATE TABLE IF NOT EXISTS detection_embeddings (
    detection_id INTEGER NOT NULL REFERENCES detections(id) ON DELETE CASCADE,
    encoder_key TEXT NOT NULL REFERENCES encoders(key),
    vector BLOB NOT NULL,
    PRIMARY KEY (detection_id, encoder_key)
);
CREATE TABLE IF NOT EXISTS labels (
    detection_id INTEGER PRIMARY KEY REFERENCES detections(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    auto_label TEXT,
    score REAL,
    runner_up TEXT,
    margin REAL,
    encoder_key TEXT,
    lambda REAL,
    provenance TEXT NOT NULL CHECK (provenance IN ('auto', 'corrected')),
    run_id INTEGER REFERENCES runs(id),
    at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS review_sessions (
    id INTEGER PRIMARY KEY,
    reviewer TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS review_log (
    id INTEGER PRIMARY KEY,
    action_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    session_id INTEGER REFERENCES review_sessions(id),
    action TEXT NOT NULL,
    detection_id INTEGER NOT NULL,
    before TEXT,
    after TEXT,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS review_log_by_action ON review_log(action_id);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    source_uri TEXT NOT NULL,
    frame_index INTEGER,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


# Columns added after schema 1, for upgrading an existing store in place.
_ADDED_COLUMNS = (("sources", "post", "TEXT"), ("detections", "text_score", "REAL"),
                  ("labels", "auto_label", "TEXT"), ("detections", "rejected", "INTEGER NOT NULL DEFAULT 0"),
                  ("labels", "version", "INTEGER NOT NULL DEFAULT 0"), ("runs", "host", "TEXT"),
                  ("runs", "pid", "INTEGER"), ("runs", "pid_start", "INTEGER"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FrameRecord:
    """What the store keeps of one processed frame."""

    index: int
    timestamp: float
    width: int
    height: int
    status: str
    name: str | None = None


@dataclass(frozen=True)
class DetectionRow:
    """One stored detection joined with its frame and source."""

    id: int
    source_uri: str
    source_kind: str
    frame_index: int
    timestamp: float
    frame_name: str | None
    width: int
    height: int
    xyxy: tuple[float, float, float, float]
    score: float
    label: str
    backend: str
    run_id: int
    handedness: str | None
    landmarks: list | None
    world_landmarks: list | None
    action: str | None = None
    action_score: float | None = None
    runner_up: str | None = None
    margin: float | None = None
    label_provenance: str | None = None
    rejected: bool = False


class Store:
    """SQLite project store. Safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise BadInputError(f"{self.path}: not a usable lrihar store ({exc})") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._mark_dead_runs()

    def _migrate(self) -> None:
        with self.transaction():
            # executescript() would commit on its own; run statements one by one instead.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise BadInputError(
                    f"{self.path}: store schema {row[0]} is newer than this lrihar "
                    f"(schema {SCHEMA_VERSION}); upgrade lrihar"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # tables were created above; add new columns
                for table, column, kind in _ADDED_COLUMNS:
                    have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                # Runs still 'running' from before schema 5 have no pid to check: almost surely
                # killed long ago (a live one would set its status again when it ends).
                self.db.execute("UPDATE runs SET status='interrupted' WHERE status='running'"
                                " AND pid IS NULL")
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                                (str(SCHEMA_VERSION),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def _mark_dead_runs(self) -> None:
        """Runs left 'running' by a process of this host that is gone (``kill -9``, a crash, power
        loss) become 'interrupted'. Runs of other hosts cannot be checked and are left alone."""
        rows = self.db.execute("SELECT id, pid, pid_start FROM runs WHERE status='running' AND host=?"
                               " AND pid IS NOT NULL", (socket.gethostname(),)).fetchall()
        gone = [(run_id,) for run_id, pid, start in rows if _process_gone(pid, start)]
        if gone:
            with self.transaction():
                self.db.executemany("UPDATE runs SET status='interrupted' WHERE id=? AND status='running'",
                                    gone)

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, command: str, config: dict[str, Any], versions: dict[str, str]) -> int:
        """Record a run with its resolved config, package versions and process; returns its id."""
        pid = os.getpid()
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO runs (command, started_at, config, versions, host, pid, pid_start)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (command, _now(), json.dumps(config, default=str), json.dumps(versions),
                 socket.gethostname(), pid, _process_start(pid)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, stats: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at=?, status=?, stats=? WHERE id=?",
                (_now(), status, json.dumps(stats), run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY id")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur]

    # -- sources and frames ---------------------------------------------------------------
    def source_id(self, uri: str, kind: str, post: str | None = None) -> int:
        """The id of source ``uri``, added if new; ``post`` (inspection post) is recorded if given."""
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO sources (uri, kind, added_at, post) VALUES (?, ?, ?, ?)",
                (uri, kind, _now(), post),
            )
            if post is not None:
                self.db.execute("UPDATE sources SET post=? WHERE uri=?", (post, uri))
            return int(self.db.execute("SELECT id FROM sources WHERE uri=?", (uri,)).fetchone()[0])

    def done_frames(self, source_id: int) -> set[int]:
        """Frame indices of ``source_id`` already processed (in any earlier run)."""
        cur = self.db.execute("SELECT frame_index FROM frames WHERE source_id=?", (source_id,))
        return {r[0] for r in cur}

    def forget_source(self, source_id: int) -> None:
        """Drop a source's frames and detections (with their embeddings and labels).

        Refused while a person's corrected labels hang on those detections: they would be lost.
        """
        corrected = self.db.execute(
            "SELECT COUNT(*) FROM labels l JOIN detections d ON d.id = l.detection_id"
            " WHERE d.source_id=? AND l.provenance='corrected'", (source_id,)).fetchone()[0]
        if corrected:
            uri = self.db.execute("SELECT uri FROM sources WHERE id=?", (source_id,)).fetchone()[0]
            raise BadInputError(f"{uri}: {corrected} reviewed labels belong to its detections; "
                                "redoing it would lose them (export or back up the store first)")
        with self.transaction():
            self.db.execute("DELETE FROM detections WHERE source_id=?", (source_id,))
            self.db.execute("DELETE FROM frames WHERE source_id=?", (source_id,))

    def write_frames(
        self,
        run_id: int,
        source_id: int,
        batch: Sequence[tuple[FrameRecord, Any]],
        backend: str,
        thresholds: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """Commit frames and their ``supervision.Detections`` in one transaction."""
        with self.transaction():
            for rec, dets in batch:
                if rec.status not in FRAME_STATUSES:
                    raise ValueError(f"unknown frame status {rec.status!r}")
                self.db.execute(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (source_id, rec.index, rec.timestamp, rec.width, rec.height, rec.name,
                     rec.status, run_id),
                )
                if dets is not None and len(dets):
                    self.db.executemany(
                        "INSERT INTO detections (source_id, frame_index, x1, y1, x2, y2, score,"
                        " text_score, label, backend, box_threshold, text_threshold, handedness,"
                        " landmarks, world_landmarks, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [(source_id, rec.index, *row, backend, *thresholds, *extra, run_id)
                         for row, extra in _detection_values(dets)],
                    )

    def add_errors(self, run_id: int | None, errors: Sequence[Any]) -> None:
        """Store :class:`lrihar.sources.SourceError` records."""
        if not errors:
            return
        with self.transaction():
            self.db.executemany(
                "INSERT INTO errors (run_id, source_uri, frame_index, message, at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, e.source_id, e.index, e.message, _now()) for e in errors],
            )

    # -- reading --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Row counts: sources, frames (by status), detections (rejected), labels (by provenance),
        review actions, errors, runs."""
        q = self.db.execute
        out = {t: q(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
               for t in ("sources", "frames", "detections", "errors", "runs")}
        for status, n in q("SELECT status, COUNT(*) FROM frames GROUP BY status"):
            out[f"frames_{status}"] = n
        out["detections_rejected"] = q("SELECT COUNT(*) FROM detections WHERE rejected = 1").fetchone()[0]
        for provenance, n in q("SELECT provenance, COUNT(*) FROM labels GROUP BY provenance"):
            out[f"labels_{provenance}"] = n
        out["review_actions"] = q("SELECT COUNT(DISTINCT action_id) FROM review_log WHERE undone = 0"
                                  ).fetchone()[0]
        return out

    def detections(self, source_uri: str | None = None,
                   include_rejected: bool = False) -> Iterator[DetectionRow]:
        """Stored detections in (source, frame, id) order; boxes a person rejected only if asked."""
        sql = (
            "SELECT d.id, s.uri, s.kind, d.frame_index, f.timestamp, f.name, f.width, f.height,"
            " d.x1, d.y1, d.x2, d.y2, d.score, d.label, d.backend, d.run_id, d.handedness,"
            " d.landmarks, d.world_landmarks, l.label, l.score, l.runner_up, l.margin, l.provenance,"
            " d.rejected FROM detections d"
            " JOIN frames f ON f.source_id = d.source_id AND f.frame_index = d.frame_index"
            " JOIN sources s ON s.id = d.source_id"
            " LEFT JOIN labels l ON l.detection_id = d.id"
        )
        where, params = [], []
        if source_uri is not None:
            where.append("s.uri = ?")
            params.append(source_uri)
        if not include_rejected:
            where.append("d.rejected = 0")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.uri, d.frame_index, d.id"
        for r in self.db.execute(sql, params):
            yield DetectionRow(
                id=r[0], source_uri=r[1], source_kind=r[2], frame_index=r[3], timestamp=r[4],
                frame_name=r[5], width=r[6], height=r[7], xyxy=(r[8], r[9], r[10], r[11]),
                score=r[12], label=r[13], backend=r[14], run_id=r[15], handedness=r[16],
                landmarks=json.loads(r[17]) if r[17] else None,
                world_landmarks=json.loads(r[18]) if r[18] else None,
                action=r[19], action_score=r[20], runner_up=r[21], margin=r[22],
                label_provenance=r[23], rejected=bool(r[24]),
            )

    def frames(self) -> Iterator[tuple[str, str, FrameRecord]]:
        """Every stored frame as (source uri, source kind, record), ordered."""
        cur = self.db.execute(
            "SELECT s.uri, s.kind, f.frame_index, f.timestamp, f.width, f.height, f.status, f.name"
            " FROM frames f JOIN sources s ON s.id = f.source_id ORDER BY s.uri, f.frame_index"
        )
        for uri, kind, idx, ts, w, h, status, name in cur:
            yield uri, kind, FrameRecord(idx, ts, w, h, status, name)

    # -- embeddings and labels ------------------------------------------------------------
    def register_encoder(self, description: dict[str, Any]) -> str:
        """A short stable key for an encoder configuration (its embeddings' cache key)."""
        text = json.dumps(description, sort_keys=True, default=str)
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO encoders VALUES (?, ?)", (key, text))
        return key

    def template_embeddings(self, encoder_key: str, sha1s: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached template embeddings of these file hashes."""
        out = {}
        for sha, blob in self.db.execute(
            "SELECT sha1, vector FROM template_embeddings WHERE encoder_key=?", (encoder_key,)
        ):
            if sha in sha1s:
                out[sha] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_template_embeddings(self, encoder_key: str, items: dict[str, np.ndarray]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO template_embeddings VALUES (?, ?, ?)",
                [(sha, encoder_key, _blob(v)) for sha, v in items.items()],
            )

    def embedded_detections(self, encoder_key: str) -> set[int]:
        cur = self.db.execute("SELECT detection_id FROM detection_embeddings WHERE encoder_key=?",
                              (encoder_key,))
        return {r[0] for r in cur}

    def put_detection_embeddings(self, encoder_key: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO detection_embeddings VALUES (?, ?, ?)",
                [(int(i), encoder_key, _blob(v)) for i, v in zip(ids, vectors, strict=True)],
            )

    def detection_embeddings(self, encoder_key: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every detection embedded with this encoder, ordered by id."""
        rows = self.db.execute("SELECT detection_id, vector FROM detection_embeddings "
                               "WHERE encoder_key=? ORDER BY detection_id", (encoder_key,)).fetchall()
        if not rows:
            return np.zeros(0, dtype=int), np.zeros((0, 0), dtype=np.float32)
        ids = np.array([r[0] for r in rows])
        return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def write_auto_labels(self, run_id: int, rows: Sequence[tuple]) -> int:
        """Store (detection_id, label, score, runner_up, margin, encoder_key, lambda) rows.

        The matcher's answer always lands in ``auto_label`` (and its score, runner-up, margin);
        ``label`` changes only where no person has corrected it. Returns how many labels were
        kept as corrected.
        """
        now = _now()
        with self.transaction():
            self.db.executemany(
                "INSERT INTO labels (detection_id, label, score, runner_up, margin, encoder_key,"
                " lambda, provenance, run_id, at, auto_label) VALUES (?,?,?,?,?,?,?,'auto',?,?,?)"
                " ON CONFLICT(detection_id) DO UPDATE SET auto_label=excluded.auto_label,"
                " label=CASE WHEN labels.provenance='auto' THEN excluded.label ELSE labels.label END,"
                " score=excluded.score, runner_up=excluded.runner_up, margin=excluded.margin,"
                " encoder_key=excluded.encoder_key, lambda=excluded.lambda,"
                " run_id=excluded.run_id, at=excluded.at",
                [(*r, run_id, now, r[1]) for r in rows],
            )
            kept = self.db.execute("SELECT COUNT(*) FROM labels WHERE provenance='corrected'").fetchone()
        return int(kept[0])

    def labels(self, provenance: str | None = None) -> dict[int, dict[str, Any]]:
        """Current label per detection id (optionally only 'auto' or 'corrected' ones)."""
        sql = ("SELECT detection_id, label, score, runner_up, margin, lambda, provenance, auto_label"
               " FROM labels")
        params: tuple = ()
        if provenance:
            sql += " WHERE provenance=?"
            params = (provenance,)
        return {r[0]: {"label": r[1], "score": r[2], "runner_up": r[3], "margin": r[4],
                       "lambda": r[5], "provenance": r[6], "auto_label": r[7]}
                for r in self.db.execute(sql, params)}


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process from Linux's /proc, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5); the name may hold spaces
    except (OSError, IndexError, ValueError):
        return None


def _process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _process_gone(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) has ended. With /proc, a zombie or
    a new process that reused the pid counts as ended; without it, only a missing pid does."""
    if _proc_stat(os.getpid()) is not None:
        stat = _proc_stat(pid)
        return stat is None or stat[0] in ("Z", "X") or (start is not None and stat[1] != start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _detection_values(dets: Any) -> Iterator[tuple[tuple, tuple]]:
    """Rows of (x1, y1, x2, y2, score, text_score, label) and (handedness, landmarks, world)."""
    n = len(dets)
    conf = dets.confidence if dets.confidence is not None else np.ones(n)
    data = dets.data
    text = data.get("text_score")
    labels = data.get("class_name", ["hand"] * n)
    hands = data.get("handedness")
    lms = data.get("landmarks")
    wlms = data.get("world_landmarks")
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        yield (
            (x1, y1, x2, y2, float(conf[i]), None if text is None else float(text[i]), str(labels[i])),
            (
                None if hands is None else str(hands[i]),
                None if lms is None else json.dumps(np.round(lms[i], 5).tolist()),
                None if wlms is None else json.dumps(np.round(wlms[i], 5).tolist()),
            ),
        )
