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
