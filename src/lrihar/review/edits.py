"""Review actions on the store: every change is immediate, logged with who/when, and undoable.

A label row carries a ``version``; an action on it may state the version it was shown, and is
refused (``ReviewConflict``) if someone changed the row since, so two people editing at once
never silently overwrite each other. Each action is one transaction and one ``action_id`` in
``review_log`` (with the state before and after), which :func:`undo_last` reverts. A verdict on a
whole frame (``empty``: a person looked, there is no hand) is logged the same way, by frame.

Example:
    >>> session = start_session(store, "ana")  # doctest: +SKIP
    >>> relabel(store, [12, 13], "door_open", "ana", session)  # doctest: +SKIP
    >>> undo_last(store, "ana")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lrihar.classes import HAND, NG, box_labels
from lrihar.errors import BadInputError, LriharError
from lrihar.lines import class_folders
from lrihar.store import Store
from lrihar.store.frames import MANUAL_BACKEND

"""The ``backend`` of a box a person drew (review page or import)."""
# A break longer than this between two actions is not counted as review time.
IDLE_SECONDS = 120.0


class ReviewConflict(LriharError):
    """The row changed since the reviewer saw it; reload and try again."""


def _now() -> datetime:
    return datetime.now(UTC)


def start_session(store: Store, reviewer: str) -> int:
    """Open a review session (its time and touched items feed the cost table)."""
    if not reviewer.strip():
        raise BadInputError("reviewer: give a name, so every correction says who made it")
    now = _now().isoformat()
    with store.transaction():
        cur = store.db.execute("INSERT INTO review_sessions (reviewer, started_at, last_at) VALUES (?,?,?)",
                               (reviewer, now, now))
    return int(cur.lastrowid)


def touch_session(db: sqlite3.Connection, session_id: int | None) -> None:
    if session_id is None:
        return
    row = db.execute("SELECT last_at FROM review_sessions WHERE id=?", (session_id,)).fetchone()
    if row is None:
        raise BadInputError(f"review session {session_id} does not exist; start a new one")
    now = _now()
    gap = (now - datetime.fromisoformat(row[0])).total_seconds()
    db.execute("UPDATE review_sessions SET last_at=?, seconds=seconds+? WHERE id=?",
               (now.isoformat(), min(max(gap, 0.0), IDLE_SECONDS), session_id))


def state(db: sqlite3.Connection, det_id: int) -> dict[str, Any]:
    """What a review can change about a detection: its box, rejection and label."""
    row = db.execute("SELECT d.x1, d.y1, d.x2, d.y2, d.rejected, l.label, l.provenance, l.version,"
                     " l.auto_label FROM detections d LEFT JOIN labels l ON l.detection_id = d.id"
                     " WHERE d.id=?", (det_id,)).fetchone()
    if row is None:
        raise BadInputError(f"detection {det_id} does not exist")
    return {"xyxy": list(row[:4]), "rejected": bool(row[4]), "label": row[5], "provenance": row[6],
            "version": row[7] or 0, "auto_label": row[8]}


def _check_versions(db: sqlite3.Connection, ids: Sequence[int], seen: dict[int, int] | None) -> None:
    for det_id in ids:
        current = state(db, det_id)["version"]
        if seen is not None and det_id in seen and seen[det_id] != current:
            raise ReviewConflict(f"detection {det_id} was changed by someone else (version {current}, "
                                 f"you saw {seen[det_id]}); reload the page")


def log_change(db: sqlite3.Connection, action_id: int, reviewer: str, session_id: int | None, action: str,
         det_id: int, before: dict | None, after: dict | None) -> None:
    db.execute("INSERT INTO review_log (action_id, at, reviewer, session_id, action, detection_id, before,"
               " after) VALUES (?,?,?,?,?,?,?,?)",
               (action_id, _now().isoformat(), reviewer, session_id, action, det_id,
                None if before is None else json.dumps(before), None if after is None else json.dumps(after)))


def frame_check(db: sqlite3.Connection, frame: tuple[int, int]) -> dict[str, Any]:
    """A person's verdict on ``frame`` (source id, frame index): ``{"verdict": "empty", "reviewer",
    "at"}`` (looked, really no hand), or ``{"verdict": None}``."""
    row = db.execute("SELECT verdict, reviewer, at FROM frame_reviews WHERE source_id=? AND frame_index=?",
                     frame).fetchone()
    return {"verdict": None} if row is None else {"verdict": row[0], "reviewer": row[1], "at": row[2]}


def _put_frame_check(db: sqlite3.Connection, frame: tuple[int, int], check: dict[str, Any]) -> None:
    """Make ``check`` (as :func:`frame_check` returns it) the frame's verdict."""
    if check["verdict"] is None:
        db.execute("DELETE FROM frame_reviews WHERE source_id=? AND frame_index=?", frame)
    else:
        db.execute("INSERT OR REPLACE INTO frame_reviews (source_id, frame_index, verdict, reviewer, at)"
                   " VALUES (?,?,?,?,?)", (*frame, check["verdict"], check["reviewer"], check["at"]))


def set_frame_check(db: sqlite3.Connection, action_id: int, reviewer: str, session_id: int | None,
                    frame: tuple[int, int], verdict: str | None) -> bool:
    """Mark ``frame`` as holding no hand (``verdict="empty"``) or clear the mark (None), logged under
    ``action_id`` as ``empty`` / ``unmark``; False (nothing logged) when it already was so."""
    before = frame_check(db, frame)
    if before["verdict"] == verdict:
        return False
    after = {"verdict": None} if verdict is None else {"verdict": verdict, "reviewer": reviewer,
                                                      "at": _now().isoformat()}
    _put_frame_check(db, frame, after)
    db.execute("INSERT INTO review_log (action_id, at, reviewer, session_id, action, source_id, frame_index,"
               " before, after) VALUES (?,?,?,?,?,?,?,?,?)",
               (action_id, _now().isoformat(), reviewer, session_id, "unmark" if verdict is None else "empty",
                *frame, json.dumps(before), json.dumps(after)))
    return True


def next_action_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(action_id), 0) + 1 FROM review_log").fetchone()[0])


def check_label(label: str, classes: Sequence[str]) -> str:
    """``label`` if a person may give it to a box of a project with these action ``classes``
    (:func:`lrihar.classes.box_labels`: the classes and NG, or ``hand`` and NG where there are
    none), else :class:`BadInputError` naming what the project offers."""
    offered = box_labels(classes)
    if label not in offered:
        what = "a class of the project" if classes else "a label of this project, which has no action classes"
        raise BadInputError(f"label {label!r} is not {what} ({', '.join(offered)})")
    return label


def set_label(db: sqlite3.Connection, det_id: int, label: str) -> None:
    now = _now().isoformat()
    db.execute("INSERT INTO labels (detection_id, label, provenance, at, version)"
               " VALUES (?,?,'corrected',?,1) ON CONFLICT(detection_id) DO UPDATE SET"
               " label=excluded.label, provenance='corrected', at=excluded.at,"
               " version=labels.version+1", (det_id, label, now))


def set_box(db: sqlite3.Connection, det_id: int, xyxy: Sequence[float]) -> None:
    """Move a box; its label row's version moves too, so stale pages see the change."""
    db.execute("UPDATE detections SET x1=?, y1=?, x2=?, y2=? WHERE id=?", (*xyxy, det_id))
    db.execute("UPDATE labels SET version=version+1 WHERE detection_id=?", (det_id,))


def reject(db: sqlite3.Connection, det_id: int) -> None:
    """Mark a box as a wrong detection (kept, but left out of datasets)."""
    db.execute("UPDATE detections SET rejected=1 WHERE id=?", (det_id,))
    db.execute("UPDATE labels SET version=version+1 WHERE detection_id=?", (det_id,))


def frame_of_detection(db: sqlite3.Connection, det_id: int) -> tuple[int, int]:
    """The (source id, frame index) a detection lies on."""
    row = db.execute("SELECT source_id, frame_index FROM detections WHERE id=?", (det_id,)).fetchone()
    if row is None:
        raise BadInputError(f"detection {det_id} does not exist")
    return int(row[0]), int(row[1])


def insert_frame_box(db: sqlite3.Connection, frame: tuple[int, int], xyxy: Sequence[float],
                     label: str) -> int:
    """A box a person drew on ``frame`` (source id, frame index), with its label; returns its id.

    The frame needs no stored box: a hand the detector missed on a frame it found empty is
    exactly what a person draws. The frame keeps its status (what the detector found).
    """
    run = db.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    cur = db.execute("INSERT INTO detections (source_id, frame_index, x1, y1, x2, y2, score, label, backend,"
                     " run_id) VALUES (?, ?, ?, ?, ?, ?, 1.0, ?, ?, ?)",
                     (*frame, *xyxy, HAND, MANUAL_BACKEND, run))
    det_id = int(cur.lastrowid)
    set_label(db, det_id, label)
    return det_id


def _apply(store: Store, action: str, ids: Sequence[int], reviewer: str, session_id: int | None,
           seen: dict[int, int] | None, change) -> list[dict]:
    """Run ``change(db, det_id)`` for each id in one transaction, logging before/after."""
    with store.transaction() as db:
        _check_versions(db, ids, seen)
        touch_session(db, session_id)  # first: an unknown session is a clear error, not a foreign-key one
        action_id = next_action_id(db)
        out = []
        for det_id in ids:
            before = state(db, det_id)
            change(db, det_id)
            after = state(db, det_id)
            log_change(db, action_id, reviewer, session_id, action, det_id, before, after)
            out.append({"id": det_id, **after})
    return out


def relabel(store: Store, ids: Sequence[int], label: str, reviewer: str, session_id: int | None = None,
            seen: dict[int, int] | None = None, classes: Sequence[str] | None = None) -> list[dict]:
    """Give detections another class (or NG); the label becomes a person's (``corrected``)."""
    if classes is not None:
        check_label(label, classes)
    return _apply(store, "relabel", ids, reviewer, session_id, seen, lambda db, i: set_label(db, i, label))


def accept(store: Store, ids: Sequence[int], reviewer: str, session_id: int | None = None,
           seen: dict[int, int] | None = None) -> list[dict]:
    """Confirm the current labels (a whole page at once): they become a person's."""

    def confirm(db: sqlite3.Connection, det_id: int) -> None:
        label = state(db, det_id)["label"]
        if label is None:
            raise BadInputError(f"detection {det_id} has no label to accept; relabel it instead")
        set_label(db, det_id, label)

    return _apply(store, "accept", ids, reviewer, session_id, seen, confirm)


def mark_wrong(store: Store, ids: Sequence[int], reviewer: str, session_id: int | None = None,
               seen: dict[int, int] | None = None) -> list[dict]:
    """Mark boxes as wrong detections: kept in the store, left out of datasets."""

    return _apply(store, "wrong", ids, reviewer, session_id, seen, reject)


def move_box(store: Store, det_id: int, xyxy: Sequence[float], reviewer: str,
             session_id: int | None = None, seen: dict[int, int] | None = None) -> dict:
    """Correct a box's corners (pixels of its frame)."""
    box = _valid_box(store, det_id, xyxy)
    return _apply(store, "box", [det_id], reviewer, session_id, seen, lambda db, i: set_box(db, i, box))[0]


def _valid_box(store: Store, det_id: int, xyxy: Sequence[float]) -> tuple[float, float, float, float]:
    return _valid_frame_box(store, frame_of_detection(store.db, det_id), xyxy)


def _valid_frame_box(store: Store, frame: tuple[int, int], xyxy: Sequence[float]
                     ) -> tuple[float, float, float, float]:
    row = store.db.execute("SELECT width, height FROM frames WHERE source_id=? AND frame_index=?",
                           frame).fetchone()
    if row is None:
        raise BadInputError(f"frame {frame[1]} of source {frame[0]} is not in the store")
    return clip_box(xyxy, row[0], row[1])


MIN_BOX = 2
"""Smallest box side in pixels, inside the frame, that a review or an import may store."""


def finite_number(value: object, where: str = "box") -> float:
    """``value`` as a float if it is a finite real number, else :class:`BadInputError` naming
    ``where``: bools, text, None, NaN and ±infinity are refused (``float()`` would take most)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadInputError(f"{where}: {reprlib.repr(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise BadInputError(f"{where}: {reprlib.repr(value)} is not a finite number")
    return number


def box_numbers(xyxy: object, where: str = "box") -> tuple[float, float, float, float]:
    """Four finite real numbers (see :func:`finite_number`) as floats, unchanged otherwise."""
    if isinstance(xyxy, str | bytes) or not isinstance(xyxy, Sequence) or len(xyxy) != 4:
        raise BadInputError(f"{where}: a box is four numbers, not {reprlib.repr(xyxy)}")
    x1, y1, x2, y2 = (finite_number(v, where) for v in xyxy)
    return x1, y1, x2, y2


def clip_box(xyxy: object, width: int, height: int, where: str = "box") -> tuple[float, float, float, float]:
    """A box as the store keeps it: four finite numbers, clipped to the ``width`` × ``height``
    frame, corners ordered, at least :data:`MIN_BOX` pixels each way (else
    :class:`BadInputError` naming ``where``, e.g. a box wholly outside the frame)."""
    x1, y1, x2, y2 = box_numbers(xyxy, where)
    x1, x2 = sorted((min(max(x1, 0), width), min(max(x2, 0), width)))
    y1, y2 = sorted((min(max(y1, 0), height), min(max(y2, 0), height)))
    if x2 - x1 < MIN_BOX or y2 - y1 < MIN_BOX:
        raise BadInputError(f"{where}: it must be at least {MIN_BOX} pixels wide and high inside the "
                            f"{width}x{height} frame")
    return x1, y1, x2, y2


def add_box(store: Store, like_det_id: int, xyxy: Sequence[float], label: str, reviewer: str,
            session_id: int | None = None, classes: Sequence[str] | None = None) -> dict:
    """Draw a new box (on the frame of ``like_det_id``) the detector missed, with its label."""
    return add_frame_box(store, frame_of_detection(store.db, like_det_id), xyxy, label, reviewer, session_id,
                         classes)


def add_frame_box(store: Store, frame: tuple[int, int], xyxy: Sequence[float], label: str, reviewer: str,
                  session_id: int | None = None, classes: Sequence[str] | None = None) -> dict:
    """Draw a box the detector missed on ``frame`` (source id, frame index), which may hold no box
    yet, with its label: clipped to the frame, logged as ``add``, undone by :func:`undo_last`."""
    if classes is not None:
        check_label(label, classes)
    box = _valid_frame_box(store, frame, xyxy)
    with store.transaction() as db:
        touch_session(db, session_id)
        action_id = next_action_id(db)
        det_id = insert_frame_box(db, frame, box, label)
        after = state(db, det_id)
        log_change(db, action_id, reviewer, session_id, "add", det_id, None, after)
        set_frame_check(db, action_id, reviewer, session_id, frame, None)  # a hand after all
    return {"id": det_id, **after}


def mark_frame_empty(store: Store, frame: tuple[int, int], reviewer: str, session_id: int | None = None,
                     empty: bool = True) -> dict:
    """Record that a person looked at ``frame`` (source id, frame index) and it holds no hand, or
    (``empty=False``) take that back; logged, undone by :func:`undo_last`. A frame that still holds
    a box is refused: mark its boxes wrong first. Returns the frame's verdict and ``changed``."""
    with store.transaction() as db:
        if db.execute("SELECT 1 FROM frames WHERE source_id=? AND frame_index=?", frame).fetchone() is None:
            raise BadInputError(f"frame {frame[1]} of source {frame[0]} is not in the store")
        boxes = db.execute("SELECT COUNT(*) FROM detections WHERE source_id=? AND frame_index=?"
                           " AND rejected=0", frame).fetchone()[0]
        if empty and boxes:
            raise BadInputError(f"frame {frame[1]} of source {frame[0]} still holds {boxes} box(es): mark "
                                "the wrong ones wrong first (w), then mark the frame as holding no hand")
        touch_session(db, session_id)
        changed = set_frame_check(db, next_action_id(db), reviewer, session_id, frame,
                                  "empty" if empty else None)
        return {"source_id": frame[0], "frame_index": frame[1], **frame_check(db, frame), "changed": changed}


def undo_last(store: Store, reviewer: str) -> list[dict]:
    """Revert ``reviewer``'s most recent action that is not undone yet; returns the restored rows."""
    with store.transaction() as db:
        row = db.execute("SELECT MAX(action_id) FROM review_log WHERE reviewer=? AND undone=0 AND"
                         " action != 'undo'", (reviewer,)).fetchone()
        if row[0] is None:
            raise BadInputError(f"nothing to undo for {reviewer!r}")
        entries = db.execute("SELECT detection_id, action, before, after, source_id, frame_index"
                             " FROM review_log WHERE action_id=? ORDER BY id DESC", (row[0],)).fetchall()
        restored = []
        for det_id, action, before_json, after_json, source_id, frame_index in entries:
            if det_id is None:  # a verdict on a whole frame
                _put_frame_check(db, (source_id, frame_index), json.loads(before_json))
                restored.append({"source_id": source_id, "frame_index": frame_index,
                                 **frame_check(db, (source_id, frame_index))})
                continue
            if action == "promote":  # the template file goes; the detection never changed
                Path(json.loads(after_json)["template"]).unlink(missing_ok=True)
            if action == "add":
                db.execute("DELETE FROM detections WHERE id=?", (det_id,))
                restored.append({"id": det_id, "deleted": True})
                continue
            before = json.loads(before_json)
            db.execute("UPDATE detections SET x1=?, y1=?, x2=?, y2=?, rejected=? WHERE id=?",
                       (*before["xyxy"], int(before["rejected"]), det_id))
            if before["label"] is None:
                db.execute("DELETE FROM labels WHERE detection_id=?", (det_id,))
            else:
                db.execute("UPDATE labels SET label=?, provenance=?, version=version+1 WHERE detection_id=?",
                           (before["label"], before["provenance"], det_id))
            restored.append({"id": det_id, **state(db, det_id)})
        db.execute("UPDATE review_log SET undone=1 WHERE action_id=?", (row[0],))
    return restored


def session_stats(store: Store) -> list[dict]:
    """Per session: reviewer, seconds of review (idle gaps capped), detections touched (AW)."""
    rows = store.db.execute(
        "SELECT s.id, s.reviewer, s.started_at, s.seconds, COUNT(DISTINCT l.detection_id)"
        " FROM review_sessions s LEFT JOIN review_log l ON l.session_id = s.id AND l.undone = 0"
        " GROUP BY s.id ORDER BY s.id").fetchall()
    return [{"session": r[0], "reviewer": r[1], "started_at": r[2], "seconds": round(r[3], 1),
             "touched": r[4]} for r in rows]


def promote_template(store: Store, cfg, det_id: int, frame: Any, box: Sequence[float], reviewer: str,
                     session_id: int | None = None, padding: float = 0.0):
    """Save a detection's crop as a template of its class (the template bank picks it up).

    The file goes into the class's template folder, which must lie inside the templates root
    when the project has one (a class name is never allowed to point elsewhere).
    """
    from PIL import Image

    from lrihar.boxes import crop
    from lrihar.naming import check_class_name
    from lrihar.paths import inside

    label = state(store.db, det_id)["label"]
    if label in (None, NG):
        raise BadInputError(f"detection {det_id} has no class to be a template of; label it first")
    folders = class_folders(cfg)
    if label not in folders:
        raise BadInputError(f"detection {det_id}: its label {label!r} is not a class of the project "
                            f"({', '.join(folders)}); relabel it first")
    folder = Path(folders[label])
    root = cfg.classify.templates
    if root is not None:  # the folder is root/<class name>: the name must be a plain folder name
        check_class_name(label, f"detection {det_id}")
    path = inside(root if root is not None else folder, folder / f"review-{det_id}.jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(crop(frame, box, padding)).save(path, quality=95)
    with store.transaction() as db:
        touch_session(db, session_id)
        now = state(db, det_id)
        log_change(db, next_action_id(db), reviewer, session_id, "promote", det_id, now,
             now | {"template": str(path)})
    return path
