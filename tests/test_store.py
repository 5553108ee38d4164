"""The SQLite store: schema version, WAL, all-or-nothing batches."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import supervision as sv

from lrihar.errors import BadInputError
from lrihar.store import SCHEMA_VERSION, FrameRecord, Store


def dets(n: int) -> sv.Detections:
    return sv.Detections(xyxy=np.tile([1.0, 2.0, 30.0, 40.0], (n, 1)), confidence=np.full(n, 0.5),
                         class_id=np.zeros(n, int), data={"class_name": np.array(["hand"] * n)})


def test_new_store_is_wal_and_versioned(tmp_path):
    store = Store(tmp_path / "p.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION


def test_store_from_a_newer_lrihar_is_refused(tmp_path):
    Store(tmp_path / "p.db").db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(BadInputError, match="newer than this lrihar"):
        Store(tmp_path / "p.db")


def test_not_a_database_is_bad_input(tmp_path):
    (tmp_path / "p.db").write_text("hello, I am not SQLite" * 100)
    with pytest.raises(BadInputError, match="not a usable lrihar store"):
        Store(tmp_path / "p.db")


def test_batch_is_all_or_nothing(tmp_path):
    store = Store(tmp_path / "p.db")
    run = store.start_run("test", {}, {})
    src = store.source_id("/v.mp4", "video")
    store.write_frames(run, src, [(FrameRecord(0, 0.0, 64, 48, "action"), dets(2))], "t")
    bad = [(FrameRecord(1, 0.1, 64, 48, "action"), dets(1)),
           (FrameRecord(0, 0.0, 64, 48, "empty"), None)]  # frame 0 again: primary key clash
    with pytest.raises(sqlite3.IntegrityError):
        store.write_frames(run, src, bad, "t")
    assert store.done_frames(src) == {0}
    assert store.counts()["detections"] == 2


def test_source_ids_are_stable_and_forget_drops_rows(tmp_path):
    store = Store(tmp_path / "p.db")
    run = store.start_run("test", {}, {})
    a = store.source_id("/a.mp4", "video")
    assert store.source_id("/a.mp4", "video") == a != store.source_id("/b.mp4", "video")
    store.write_frames(run, a, [(FrameRecord(i, i / 10, 64, 48, "action"), dets(1)) for i in range(3)], "t")
    store.forget_source(a)
    assert store.done_frames(a) == set() and store.counts()["detections"] == 0


def test_a_schema_1_store_is_upgraded_in_place_without_losing_rows(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE sources (id INTEGER PRIMARY KEY, uri TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                              added_at TEXT NOT NULL);
        CREATE TABLE runs (id INTEGER PRIMARY KEY, command TEXT NOT NULL, started_at TEXT NOT NULL,
                           finished_at TEXT, status TEXT NOT NULL DEFAULT 'running', config TEXT NOT NULL,
                           versions TEXT NOT NULL, stats TEXT);
        CREATE TABLE frames (source_id INTEGER NOT NULL, frame_index INTEGER NOT NULL,
                             timestamp REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
                             name TEXT, status TEXT NOT NULL, run_id INTEGER NOT NULL,
                             PRIMARY KEY (source_id, frame_index));
        CREATE TABLE detections (id INTEGER PRIMARY KEY, source_id INTEGER NOT NULL,
                                 frame_index INTEGER NOT NULL,
                                 x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
                                 score REAL NOT NULL, label TEXT NOT NULL, backend TEXT NOT NULL,
                                 box_threshold REAL, text_threshold REAL, handedness TEXT, landmarks TEXT,
                                 world_landmarks TEXT, run_id INTEGER NOT NULL);
        CREATE TABLE errors (id INTEGER PRIMARY KEY, run_id INTEGER, source_uri TEXT NOT NULL,
                             frame_index INTEGER, message TEXT NOT NULL, at TEXT NOT NULL);
        INSERT INTO sources VALUES (1, '/v.mp4', 'video', 'then');
        INSERT INTO runs (id, command, started_at, config, versions)
            VALUES (1, 'annotate', 'then', '{}', '{}');
        INSERT INTO frames VALUES (1, 0, 0.0, 64, 48, NULL, 'action', 1);
        INSERT INTO detections (source_id, frame_index, x1, y1, x2, y2, score, label, backend, run_id)
            VALUES (1, 0, 1, 2, 30, 40, 0.8, 'hand', 'mediapipe-hands', 1);
    """)
    db.close()
    store = Store(path)
    version = store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION
    row = next(store.detections())
    assert row.xyxy == (1, 2, 30, 40) and row.rejected is False and row.action is None
    store.write_auto_labels(1, [(row.id, "a", 0.9, None, None, "k", 0.5)])
    assert store.labels()[row.id]["auto_label"] == "a"
    assert store.source_id("/v.mp4", "video", "post-1") == 1
