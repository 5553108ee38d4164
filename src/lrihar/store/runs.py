"""Runs (every command's config, versions, process and outcome) and the errors they met."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrihar.credentials import mask_config, mask_text
from lrihar.store.connection import Connection, now


class RunsMixin(Connection):
    """The ``runs`` and ``errors`` tables."""
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

    def start_run(self, command: str, config: dict[str, Any], versions: dict[str, str]) -> int:
        """Record a run with its resolved config (secrets masked), package versions and process;
        returns its id."""
        pid = os.getpid()
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO runs (command, started_at, config, versions, host, pid, pid_start)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (command, now(), json.dumps(mask_config(config), default=str), json.dumps(versions),
                 socket.gethostname(), pid, _process_start(pid)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, stats: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at=?, status=?, stats=? WHERE id=?",
                (now(), status, json.dumps(stats), run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY id")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur]

    def add_errors(self, run_id: int | None, errors: Sequence[Any]) -> None:
        """Store :class:`lrihar.sources.SourceError` records."""
        if not errors:
            return
        with self.transaction():
            self.db.executemany(
                "INSERT INTO errors (run_id, source_uri, frame_index, message, at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, mask_text(e.source_id), e.index, mask_text(e.message), now()) for e in errors],
            )


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
