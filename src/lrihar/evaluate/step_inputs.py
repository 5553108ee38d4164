"""The inputs of step scoring (``lrihar evaluate --events``): annotated step segments from a CSV
file, and what ``lrihar run`` predicted (its JSONL output, its objects, or the project store).

Ground-truth CSV, one row per step segment (a header row names the columns, in any order; other
columns are ignored)::

    post,start,end,class,cycle,missing
    post-1,0.0,4.2,pick,1,
    post-1,4.2,9.0,screw,1,
    post-1,,,inspect,1,yes        <- a required step that was not done in cycle 1

``post`` (or ``source``, when there is no ``post`` column) says which post's (source's) events a
row is compared with; ``start``/``end`` are seconds on the source clock, like the events'.
``cycle`` (optional) names the work cycle (unit) a row belongs to. ``missing`` (optional; yes /
true / 1 / x, or empty) marks a step that should have been done in that cycle and was not: its
``start``/``end`` are the window in which an alert is expected, or empty for the cycle's extent.

Example:
    >>> truth = read_step_truth("gt/steps.csv", classes=["pick", "screw"])  # doctest: +SKIP
    >>> predicted = read_predicted_jsonl("run/events.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrihar.errors import BadInputError
from lrihar.evaluate.groundtruth import _raise_problems
from lrihar.events import ActionEvent, Alert, Cycle, Gap
from lrihar.naming import class_name_problem

REQUIRED = ("start", "end", "class")
YES, NO = {"1", "yes", "y", "true", "x"}, {"", "0", "no", "n", "false"}
MAX_NAMED = 8  # known classes / posts listed in one message


@dataclass(frozen=True)
class Segment:
    """One annotated step: ``key`` is the post (or source) it happened at."""

    key: str
    label: str
    start: float
    end: float
    cycle: str | None = None


@dataclass(frozen=True)
class MissingStep:
    """A step that should have been done in ``cycle`` and was not; an alert is expected for it
    between ``start`` and ``end`` (the cycle's extent when the row gave none)."""

    key: str
    step: str
    start: float
    end: float
    cycle: str | None = None


@dataclass(frozen=True)
class StepTruth:
    """A validated ground-truth CSV. ``key_column`` is ``post`` or ``source``."""

    path: str
    key_column: str
    segments: list[Segment]
    missing: list[MissingStep]
    has_cycles: bool
    has_missing_column: bool

    @property
    def keys(self) -> list[str]:
        return sorted({s.key for s in self.segments} | {m.key for m in self.missing})


@dataclass
class Predicted:
    """What a run reported: ended action events, alerts and cycles (gaps are not scored)."""

    events: list[ActionEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)


# -- ground truth ---------------------------------------------------------------------------------

def _listed(names: Iterable[str]) -> str:
    names = list(names)
    more = f", ... ({len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


def _seconds(text: str, column: str) -> float | str:
    """Seconds from a cell, or what is wrong with it."""
    try:
        value = float(text)
    except ValueError:
        return f"column '{column}': {text[:30]!r} is not a number of seconds"
    if not math.isfinite(value) or value < 0:
        return f"column '{column}': {text[:30]!r} must be a finite number of seconds, 0 or more"
    return value


def read_step_truth(path: str | Path, classes: Sequence[str] = (), posts: Sequence[str] = ()) -> StepTruth:
    """Read and validate a step-segment CSV (see the module docstring).

    Args:
        path: the CSV file.
        classes: the known action classes; a row with another class is an error (no check when
            empty).
        posts: the project's posts; with a ``post`` column, a row at another post is an error (no
            check when empty).

    Raises:
        BadInputError: the file is unreadable or empty, a column is missing, or rows are bad
            (each named by its line and column: not a number, end before start, unknown class).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the step ground truth ({exc.__class__.__name__}: "
                            f"{exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    key = "post" if "post" in header else "source" if "source" in header else None
    absent = [c for c in REQUIRED if c not in header] + ([] if key else ["post (or source)"])
    if absent:
        raise BadInputError(f"{path}: missing column(s) {', '.join(absent)}; the first row must name "
                            "the columns post (or source), start, end, class (optional: cycle, "
                            f"missing); it has: {', '.join(h for h in header if h) or 'nothing'}")
    has_missing = "missing" in header
    if has_missing and key != "post":
        raise BadInputError(f"{path}: column 'missing' needs a 'post' column: alerts name the post, "
                            "not the source")
    col = {name: header.index(name) for name in (*REQUIRED, key, "cycle", "missing") if name in header}
    problems: list[str] = []
    segments: list[Segment] = []
    pending: list[tuple[int, str, str, str | None, float | None, float | None]] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        where = f"line {line}"
        problem = _row_problem(cell, key, classes, posts, has_missing)
        if problem:
            problems.append(f"{where}, {problem}")
            continue
        cycle = cell.get("cycle")
        missing = has_missing and cell["missing"].lower() in YES
        times = [None if not cell[c] and missing else _seconds(cell[c], c) for c in ("start", "end")]
        bad = [t for t in times if isinstance(t, str)]
        if bad:
            problems.append(f"{where}, {bad[0]}")
            continue
        start, end = times
        if (start is None) != (end is None):
            problems.append(f"{where}, column '{'start' if start is None else 'end'}': give both start "
                            "and end, or neither (the whole cycle)")
        elif start is not None and end < start:
            problems.append(f"{where}, column 'end': {end:g} is before start {start:g}")
        elif missing and start is None and cycle is None:
            problems.append(f"{where}, column 'start': a missing step needs start and end (the time "
                            "its alert may come in), or a 'cycle' column")
        elif missing:
            pending.append((line, cell[key], cell["class"], cycle, start, end))
        else:
            segments.append(Segment(cell[key], cell["class"], start, end, cycle))
    missing_steps = _missing_steps(pending, segments, problems)
    _raise_problems(path, problems, "rows")
    if not segments and not missing_steps:
        raise BadInputError(f"{path}: no step segments (one row per segment: post, start, end, class)")
    return StepTruth(str(path), key, segments, missing_steps, "cycle" in col, has_missing)


def _row_problem(cell: dict[str, str], key: str, classes: Sequence[str], posts: Sequence[str],
                 has_missing: bool) -> str | None:
    """What is wrong with a row's names and flags (times are checked apart), or None."""
    if not cell[key]:
        return f"column '{key}': empty"
    if key == "post" and posts and cell[key] not in posts:
        return f"column 'post': unknown post {cell[key]!r} (the project's posts: {_listed(posts)})"
    name_problem = class_name_problem(cell["class"])
    if name_problem:
        return f"column 'class': {cell['class'][:40]!r} {name_problem}"
    if classes and cell["class"] not in classes:
        return (f"column 'class': unknown class {cell['class']!r} (the project's classes: "
                f"{_listed(classes)})")
    if "cycle" in cell and not cell["cycle"]:
        return "column 'cycle': empty (give every row its cycle, or drop the column)"
    if has_missing and cell["missing"].lower() not in YES | NO:
        return f"column 'missing': {cell['missing'][:20]!r} is not yes / no (or 1 / empty)"
    return None


def _missing_steps(pending, segments: list[Segment], problems: list[str]) -> list[MissingStep]:
    """Missing-step rows with their alert window: given, or their cycle's extent."""
    extent: dict[tuple[str, str | None], tuple[float, float]] = {}
    for s in segments:
        lo, hi = extent.get((s.key, s.cycle), (s.start, s.end))
        extent[(s.key, s.cycle)] = (min(lo, s.start), max(hi, s.end))
    out = []
    for line, key, step, cycle, start, end in pending:
        if start is None:
            if (key, cycle) not in extent:
                problems.append(f"line {line}, column 'start': cycle {cycle!r} at {key!r} has no segment "
                                "to take its time from; give start and end")
                continue
            start, end = extent[(key, cycle)]
        out.append(MissingStep(key, step, start, end, cycle))
    return out


# -- predictions ----------------------------------------------------------------------------------

_KINDS = {"event": ActionEvent, "alert": Alert, "cycle": Cycle, "gap": Gap}
_NUMBERS = {"event": ("start", "end"), "alert": ("at",), "cycle": ("start", "end"), "gap": ()}
_TEXTS = {"event": ("post", "source", "label", "state"), "alert": ("post", "step", "kind"),
          "cycle": ("post",), "gap": ()}


def _item_from_dict(doc: Any) -> ActionEvent | Alert | Cycle | Gap | str:
    """A runtime object from its ``to_dict()``, or what is wrong with the record."""
    if not isinstance(doc, dict):
        return f"must be a JSON object, got {type(doc).__name__}"
    kind = doc.get("type")
    if kind not in _KINDS:
        return f"'type' must be one of {', '.join(_KINDS)}, got {str(kind)[:30]!r}"
    cls = _KINDS[kind]
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in _NUMBERS[kind]:
        value = doc.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return f"{kind} field '{name}' must be a finite number, got {str(value)[:30]!r}"
    for name in _TEXTS[kind]:
        if not isinstance(doc.get(name), str):
            return f"{kind} field '{name}' must be text, got {str(doc.get(name))[:30]!r}"
    try:  # fields added later by the runtime (cycle_time, ok, ...) are left out, not refused
        return cls(**{k: doc[k] for k in names if k in doc})
    except TypeError as exc:
        return f"{kind}: {exc}"


def predicted_from_items(items: Iterable[Any], source: str = "") -> Predicted:
    """Sort runtime objects (or their ``to_dict()``) into what is scored: events that ended (each
    id once, its last record), alerts and cycles (each id once).

    Raises:
        BadInputError: a record is not a runtime item.
    """
    events: dict[int, ActionEvent] = {}
    alerts: dict[int, Alert] = {}
    cycles: dict[int, Cycle] = {}
    for n, item in enumerate(items):
        if isinstance(item, dict):
            item = _item_from_dict(item)
            if isinstance(item, str):
                raise BadInputError(f"{source or 'predictions'}: item {n}: {item}")
        if isinstance(item, ActionEvent):
            if item.state == "end":
                events[item.id] = item
        elif isinstance(item, Alert):
            alerts[item.id] = item
        elif isinstance(item, Cycle):
            cycles[item.id] = item
        elif not isinstance(item, Gap):
            raise BadInputError(f"{source or 'predictions'}: item {n} is a {type(item).__name__}, not an "
                                "action event, alert, cycle or gap")
    return Predicted(list(events.values()), list(alerts.values()), list(cycles.values()), source)


def read_predicted_jsonl(path: str | Path) -> Predicted:
    """Read the JSONL file ``lrihar run`` writes: one item's ``to_dict()`` per line (``type``:
    event, cycle, alert or gap). An event counts once it has ended (its ``state: end`` record).

    A last line cut short (the run was killed mid-write) is left out with a note; any other bad
    line is an error.

    Raises:
        BadInputError: the file is unreadable, or a line is not a runtime item (named by number).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the predictions ({exc.__class__.__name__}: {exc})"
                            ) from None
    lines = text.splitlines()
    docs, problems, notes = [], [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            if n == len(lines) and not text.endswith("\n"):
                notes.append(f"{path}: line {n} was cut short (the run stopped mid-write); left out")
                continue
            problems.append(f"line {n}: not JSON: {line[:40]!r}")
            continue
        item = _item_from_dict(doc)
        if isinstance(item, str):
            problems.append(f"line {n}: {item}")
        else:
            docs.append(item)
    _raise_problems(path, problems, "lines")
    predicted = predicted_from_items(docs, str(path))
    predicted.notes.extend(notes)
    return predicted


def load_predicted_from_store(project) -> Predicted:
    """What ``lrihar run`` stored in the project: its events, alerts and cycles.

    Raises:
        BadInputError: the store holds no action event (nothing was run on this project yet).
    """
    store = project.store
    if not store.events(limit=1):
        raise BadInputError(f"{project.root}: the project store holds no action events: run `lrihar run "
                            "SOURCE -p PROJECT` first, or give --predicted FILE.jsonl (the JSONL file a "
                            "run wrote)")
    items = [*store.events(), *store.alerts(), *store.cycles()]
    return predicted_from_items(items, str(store.path))
