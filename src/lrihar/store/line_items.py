"""What ``lrihar run`` found on the line: action events, work cycles, alerts and stream gaps.

Rows are keyed by the item's own id (:class:`lrihar.runtime.ids.IdCounter`), so writing an item
again updates it in place: an event is inserted when ``new`` and updated on ``update`` / ``end``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lrihar.credentials import mask_text
from lrihar.events import ActionEvent, Alert, Cycle, Gap, RuntimeItem
from lrihar.store.connection import Connection

# Item type -> (table, its columns after run_id). `end` is an SQL keyword, hence the quoting below.
_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "event": ("events", ("id", "post", "source", "track_id", "label", "start", "end", "confidence",
                         "frames", "state", "wall_start", "wall_end")),
    "cycle": ("cycles", ("id", "post", "start", "end", "steps_seen", "missing", "out_of_order",
                         "too_short", "too_long", "complete", "cycle_time")),
    "alert": ("alerts", ("id", "post", "cycle_id", "kind", "step", "at", "message", "event_id",
                         "wall_at")),
    "gap": ("gaps", ("id", "source", "post", "start", "end", "reason", "wall_start", "wall_end")),
}
_LISTS = ("steps_seen", "missing", "out_of_order", "too_short", "too_long")  # JSON text in `cycles`
_RESERVED = "runtime_ids_reserved:"  # meta key prefix: the highest id of a kind handed out so far

_CLASSES = {"event": ActionEvent, "cycle": Cycle, "alert": Alert, "gap": Gap}


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in ("run_id", *columns))
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    # run_id stays the one of the run that first wrote the row.
    sets = ", ".join(f'"{c}"=excluded."{c}"' for c in columns if c != "id")
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {sets}"


_UPSERT = {kind: _upsert_sql(table, columns) for kind, (table, columns) in _TABLES.items()}


def _row(kind: str, item: Mapping[str, Any]) -> tuple:
    values = []
    for column in _TABLES[kind][1]:
        value = item[column]
        if column in _LISTS:
            value = json.dumps(list(value))
        elif column == "complete":
            value = int(bool(value))
        values.append(value)
    return tuple(values)


class LiveMixin(Connection):
    """The ``events``, ``cycles``, ``alerts`` and ``gaps`` tables."""

    def write_runtime_items(self, run_id: int | None,
                            items: Iterable[RuntimeItem | Mapping[str, Any]]) -> int:
        """Insert or update items (dataclasses or their ``to_dict()``) by id, all in one transaction.

        Kinds without a table are skipped. Returns how many rows were written.
        """
        rows: dict[str, list[tuple]] = {}
        for item in items:
            data = item if isinstance(item, Mapping) else item.to_dict()
            data = {**data, **{k: mask_text(data[k]) for k in ("source", "reason")
                               if isinstance(data.get(k), str)}}  # a camera's password never stored
            if data.get("type") in _TABLES:
                rows.setdefault(data["type"], []).append((run_id, *_row(data["type"], data)))
        with self.transaction():
            for kind, batch in rows.items():
                self.db.executemany(_UPSERT[kind], batch)
        return sum(map(len, rows.values()))

    def last_runtime_ids(self) -> dict[str, int]:
        """The highest id per item type stored or reserved (0 where none), for
        :class:`~lrihar.runtime.ids.IdCounter`: a restarted run goes on above both, so an id a
        crashed run sent to JSONL / MQTT before the store held it is never handed out again."""
        stored = {kind: int(self.db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0])
                  for kind, (table, _) in _TABLES.items()}
        reserved = dict(self.db.execute("SELECT substr(key, ?), CAST(value AS INTEGER) FROM meta"
                                        " WHERE key LIKE ?", (len(_RESERVED) + 1, _RESERVED + "%")))
        return {kind: max(n, reserved.get(kind, 0)) for kind, n in stored.items()}

    def reserve_runtime_ids(self, kind: str, upto: int) -> None:
        """Record durably that ids of ``kind`` up to ``upto`` may be in use. Its own connection, so
        any thread (a capture thread numbering a gap) may call it."""
        with sqlite3.connect(self.path, timeout=30.0, isolation_level=None) as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                       " value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                       (_RESERVED + kind, str(upto)))
        db.close()

    def close_open_events(self, at_wall: float) -> int:
        """End the events a crashed run left ``new`` / ``update``; returns how many.

        Their last stored end is kept (the action was last seen then; a crash hours ago must not
        stretch it to now); ``at_wall`` is the wall end only of one that never had a wall end.
        """
        with self.transaction():
            cur = self.db.execute(
                "UPDATE events SET state='end', wall_end=CASE WHEN wall_end > 0 THEN wall_end ELSE ? END"
                " WHERE state <> 'end'", (at_wall,))
        return cur.rowcount

    def _read(self, kind: str, where: Mapping[str, Any], limit: int | None) -> list:
        table, columns = _TABLES[kind]
        names = ", ".join(f'"{c}"' for c in columns)
        clauses = [(f'"{c}" IN ({",".join("?" * len(v))})' if isinstance(v, tuple) else f'"{c}"=?',
                    v if isinstance(v, tuple) else (v,)) for c, v in where.items() if v is not None]
        sql = f"SELECT {names} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(c for c, _ in clauses)
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit is not None else "")
        rows = self.db.execute(sql, [x for _, v in clauses for x in v]).fetchall()
        out = []
        for row in reversed(rows):  # oldest first, also for "the last N"
            data = dict(zip(columns, row, strict=True))
            if kind == "cycle":
                data.update({c: json.loads(data[c]) for c in _LISTS}, complete=bool(data["complete"]))
                del data["cycle_time"]  # a property of Cycle
            out.append(_CLASSES[kind](**data))
        return out

    def events(self, post: str | None = None, state: str | None = None, run_id: int | None = None,
               limit: int | None = None, ids: Sequence[int] | None = None) -> list[ActionEvent]:
        """Stored action events (``ids``: only these), oldest first (the newest ``limit`` when given)."""
        return self._read("event", {"post": post, "state": state, "run_id": run_id,
                                    "id": None if ids is None else tuple(ids)}, limit)

    def cycles(self, post: str | None = None, run_id: int | None = None,
               limit: int | None = None) -> list[Cycle]:
        """Stored work cycles, oldest first (the newest ``limit`` when given)."""
        return self._read("cycle", {"post": post, "run_id": run_id}, limit)

    def alerts(self, post: str | None = None, cycle_id: int | None = None, run_id: int | None = None,
               limit: int | None = None) -> list[Alert]:
        """Stored alerts, oldest first (the newest ``limit`` when given)."""
        return self._read("alert", {"post": post, "cycle_id": cycle_id, "run_id": run_id}, limit)

    def gaps(self, source: str | None = None, run_id: int | None = None,
             limit: int | None = None) -> list[Gap]:
        """Stored stream gaps, oldest first (the newest ``limit`` when given)."""
        return self._read("gap", {"source": source, "run_id": run_id}, limit)
