"""Runtime sinks into the real store and real files: round trips, resumed ids, crash recovery."""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
import time

import pytest

from lrihar.errors import BadInputError
from lrihar.events import ActionEvent, Alert, Cycle, Gap
from lrihar.runtime.ids import IdCounter
from lrihar.runtime.sinks.files import CsvSink, JsonlSink
from lrihar.runtime.sinks.store_sink import StoreSink
from lrihar.store import SCHEMA_VERSION, Store


def event(id_=1, state="new", end=1.0, **kw):
    return ActionEvent(id=id_, post="post-1", source="cam.mp4", track_id=3, label="screw", start=0.5,
                       end=end, confidence=0.8, frames=4, state=state, wall_start=100.0, wall_end=100.5, **kw)


def cycle(id_=1):
    return Cycle(id=id_, post="post-1", start=0.0, end=12.5, steps_seen=["pick", "screw"], missing=["check"],
                 out_of_order=[], too_short=["screw"], too_long=[], complete=False)


def alert(id_=1):
    return Alert(id=id_, post="post-1", cycle_id=1, kind="missing", step="check", at=12.5,
                 message="check was skipped", event_id=2, wall_at=112.5)


def lifecycle(ev: ActionEvent):
    """The same event object going new -> update -> end, as the runtime mutates and re-emits it."""
    yield ev
    ev.state, ev.end, ev.frames, ev.wall_end = "update", 2.0, 9, 101.5
    yield ev
    ev.state, ev.end, ev.frames, ev.wall_end = "end", 3.0, 15, 102.5
    yield ev


def test_store_sink_round_trip_batches_and_nothing_lost_on_close(tmp_path):
    store = Store(tmp_path / "p.db")
    run = store.start_run("run", {}, {})
    sink = StoreSink(store, run, batch_size=1000, flush_s=60)  # only close() can write these
    ev = event()
    for item in lifecycle(ev):
        sink.emit(item)
    other = event(2, state="update", end=9.0)
    sink.emit(other)
    sink.emit(cycle())
    sink.emit(alert())
    sink.emit(Gap(id=1, source="rtsp://cam", post="post-1", start=4.0, end=None, reason="stream dropped"))
    ev.state = "new"  # a change after emit must not leak into what was queued
    assert store.events() == []  # batched: nothing committed before close
    sink.close()
    sink.close()  # idempotent
    got = store.events()
    assert [(e.id, e.state, e.end, e.frames, e.wall_end) for e in got] == [
        (1, "end", 3.0, 15, 102.5), (2, "update", 9.0, 4, 100.5)]
    assert got[0] == dataclasses.replace(ev, state="end")
    assert store.events(state="update") == [other]
    assert store.cycles() == [cycle()] and store.cycles()[0].cycle_time == 12.5
    assert store.alerts(post="post-1") == [alert()] and store.alerts(post="post-2") == []
    assert store.gaps()[0].end is None
    assert store.db.execute("SELECT DISTINCT run_id FROM events").fetchall() == [(run,)]
    row = store.db.execute("SELECT steps_seen, complete, cycle_time FROM cycles").fetchone()
    assert (json.loads(row[0]), row[1], row[2]) == (["pick", "screw"], 0, 12.5)


def test_store_sink_commits_after_flush_interval_and_after_batch_size(tmp_path):
    store = Store(tmp_path / "p.db")
    run = store.start_run("run", {}, {})
    sink = StoreSink(store, run, batch_size=3, flush_s=0.3)
    sink.emit(event(1))
    sink.emit(event(2))
    deadline = time.monotonic() + 5
    while len(store.events()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(store.events()) == 2  # written by the timer, with no more items arriving
    slow = StoreSink(store, run, batch_size=3, flush_s=60)
    for i in range(3, 6):
        slow.emit(event(i))
    deadline = time.monotonic() + 5
    while len(store.events()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(store.events()) == 5  # the third item filled the batch
    sink.close()
    slow.close()


def test_ids_resume_after_restart_and_crash_left_events_are_closed(tmp_path):
    path = tmp_path / "p.db"
    store = Store(path)
    assert store.last_runtime_ids() == {"event": 0, "cycle": 0, "alert": 0, "gap": 0}
    run = store.start_run("run", {}, {})
    open_new = event(7, state="new")
    open_update = dataclasses.replace(event(8, state="update"), wall_end=0.0)  # never had a wall end
    store.write_runtime_items(run, [event(5, state="end"), open_new, open_update, cycle(4), alert(9)])
    store.close()

    store = Store(path)  # the "restarted" run
    ids = IdCounter(store.last_runtime_ids())
    assert (ids.next("event"), ids.next("cycle"), ids.next("alert"), ids.next("gap")) == (9, 5, 10, 1)
    assert store.close_open_events(at_wall=999.0) == 2
    assert store.events(state="new") == store.events(state="update") == []
    ended = {e.id: e for e in store.events()}
    assert ended[7].state == "end" and ended[7].wall_end == 100.5  # its last known end is kept
    assert ended[8].wall_end == 999.0
    assert store.close_open_events(at_wall=1000.0) == 0


def test_readers_filter_and_limit_to_the_newest(tmp_path):
    store = Store(tmp_path / "p.db")
    store.write_runtime_items(None, [alert(i) for i in range(1, 6)]
                              + [dataclasses.replace(alert(6), post="post-2")])
    assert [a.id for a in store.alerts(limit=2)] == [5, 6]
    assert [a.id for a in store.alerts(post="post-1", limit=2)] == [4, 5]
    assert [a.id for a in store.alerts(post="post-2")] == [6]


def test_a_schema_7_store_gains_the_runtime_tables_without_losing_rows(tmp_path):
    path = tmp_path / "p.db"
    store = Store(path)
    run = store.start_run("annotate", {}, {})
    store.close()
    db = sqlite3.connect(path)  # back to schema 7: no runtime tables
    db.executescript("""
        DROP TABLE events; DROP TABLE cycles; DROP TABLE alerts; DROP TABLE gaps;
        UPDATE meta SET value='7' WHERE key='schema_version';
    """)
    db.close()
    store = Store(path)
    assert int(store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]) \
        == SCHEMA_VERSION == 8
    assert [r["id"] for r in store.runs()] == [run]
    store.write_runtime_items(run, [event(1), cycle(1)])
    assert store.events() == [event(1)] and store.cycles() == [cycle(1)]
    assert store.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='events_open'").fetchone()[0] == 1


def test_jsonl_sink_appends_every_item_with_its_type(tmp_path):
    path = tmp_path / "out" / "run.jsonl"
    sink = JsonlSink(path)
    for item in lifecycle(event()):
        sink.emit(item)
        assert path.read_text().count("\n") >= 1  # flushed at once, not at close
    sink.emit(cycle())
    sink.close()
    with path.open("a") as f:
        f.write('{"type": "event", "id": 99, "cut by a cra')  # a crash mid-line
    sink = JsonlSink(path)  # a second run appends, on a fresh line
    sink.emit(alert())
    sink.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    rows = [json.loads(line) for i, line in enumerate(lines) if i != 4]
    assert [(r["type"], r.get("state")) for r in rows] == [
        ("event", "new"), ("event", "update"), ("event", "end"), ("cycle", None), ("alert", None)]
    assert rows[2]["end"] == 3.0 and rows[3]["missing"] == ["check"] and rows[3]["cycle_time"] == 12.5


def test_csv_sinks_write_one_header_and_rows_for_ended_items(tmp_path):
    sink = CsvSink(tmp_path)
    for item in lifecycle(event()):
        sink.emit(item)
    sink.emit(cycle())
    sink.emit(alert())
    sink.emit(Gap(id=1, source="rtsp://cam", post="post-1", start=4.0, end=None, reason="dropped"))
    sink.emit(Gap(id=1, source="rtsp://cam", post="post-1", start=4.0, end=6.0, reason="dropped"))
    sink.close()
    sink = CsvSink(tmp_path)  # a restarted run appends without a second header
    sink.emit(event(2, state="end", end=4.0))
    sink.close()

    def rows(name):
        with (tmp_path / name).open(newline="") as f:
            return list(csv.DictReader(f))

    events = rows("events.csv")
    assert [(r["id"], r["end"], r["duration"], r["frames"]) for r in events] == [
        ("1", "3.0", "2.5", "15"), ("2", "4.0", "3.5", "4")]
    (c,) = rows("cycles.csv")
    assert (c["cycle_time"], c["ok"], json.loads(c["missing"])) == ("12.5", "False", ["check"])
    assert [r["message"] for r in rows("alerts.csv")] == ["check was skipped"]
    assert [r["end"] for r in rows("gaps.csv")] == ["6.0"]


def test_csv_sink_refuses_a_file_with_other_columns(tmp_path):
    (tmp_path / "alerts.csv").write_text("when,what\n1,x\n")
    with pytest.raises(BadInputError, match=r"alerts\.csv.*move the file away"):
        CsvSink(tmp_path)
    assert (tmp_path / "alerts.csv").read_text() == "when,what\n1,x\n"
