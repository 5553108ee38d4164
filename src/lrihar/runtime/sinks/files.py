"""Runtime items into plain files: a JSONL log of everything and CSV tables for spreadsheets.

Both append to what an earlier run left (never truncate) and flush every line, so a crash loses
at most the line being written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO

from lrihar.csv_cells import SafeDictWriter
from lrihar.errors import BadInputError
from lrihar.events import RuntimeItem


def _open_append(path: Path) -> IO[str]:
    """``path`` opened for appending text, on a fresh line even after a crash cut the last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            cut = f.read(1) != b"\n"
    handle = path.open("a", encoding="utf-8", newline="")
    if cut:
        handle.write("\n")
    return handle


class JsonlSink:
    """Every item (events in each state, cycles, alerts, gaps), one ``to_dict()`` per line.

    Each line carries ``type`` (event | cycle | alert | gap); an event's ``state`` tells new,
    update and end apart.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"JSONL {self.path}"
        self._file = _open_append(self.path)

    def emit(self, item: RuntimeItem) -> None:
        self._file.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# The CSV tables: file, item type, columns. Events and gaps get a row when they end (one row each);
# cycles and alerts each time they are emitted (the runtime emits them once). Lists are JSON text.
_CSV_TABLES = {
    "event": ("events.csv", ["id", "post", "source", "track_id", "label", "start", "end", "duration",
                             "confidence", "frames", "wall_start", "wall_end"]),
    "cycle": ("cycles.csv", ["id", "post", "start", "end", "cycle_time", "complete", "ok", "steps_seen",
                             "missing", "out_of_order", "too_short", "too_long"]),
    "alert": ("alerts.csv", ["id", "post", "cycle_id", "kind", "step", "at", "message", "event_id",
                             "wall_at"]),
    "gap": ("gaps.csv", ["id", "source", "post", "start", "end", "reason", "wall_start", "wall_end"]),
}


class CsvSink:
    """``events.csv`` (ended events), ``cycles.csv``, ``alerts.csv`` and ``gaps.csv`` (ended gaps)
    in ``folder``, each with its header once.

    Raises:
        BadInputError: a file there already has another header (appending would mix columns).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.name = f"CSV {self.folder}"
        self._files: dict[str, IO[str]] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        for kind, (name, columns) in _CSV_TABLES.items():
            path = self.folder / name
            header = _header(path)
            if header is not None and header != columns:
                self.close()
                raise BadInputError(f"{path}: its columns {header} are not the ones lrihar writes "
                                    f"{columns}; move the file away (or choose another output folder)")
            handle = _open_append(path)
            self._files[kind] = handle
            self._writers[kind] = SafeDictWriter(handle, columns, extrasaction="ignore")
            if header is None:
                self._writers[kind].writeheader()
                handle.flush()

    def emit(self, item: RuntimeItem) -> None:
        if item.type not in self._writers or (item.type == "event" and item.state != "end") or (
                item.type == "gap" and item.end is None):
            return
        row = item.to_dict()
        if item.type == "event":
            row["duration"] = item.duration
        row = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for k, v in row.items()}
        self._writers[item.type].writerow(row)
        self._files[item.type].flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def _header(path: Path) -> list[str] | None:
    """The first row of an existing, non-empty CSV file, else None."""
    if not path.exists() or not path.stat().st_size:
        return None
    with path.open(encoding="utf-8", newline="") as f:
        return next(csv.reader(f), None)
