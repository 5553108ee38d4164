"""Sources, frames and detections: what annotate stores and every later stage reads."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrihar.classes import HAND
from lrihar.errors import BadInputError
from lrihar.store.connection import Connection, now
from lrihar.store.schema import FRAME_STATUSES

MANUAL_BACKEND = "manual"
"""``detections.backend`` of a box a person drew (review page, or imported from a labelling tool)."""

# A person's box: drawn, marked wrong, with a corrected (or confirmed) label, or touched by any
# review action that is not undone (a moved box keeps its automatic label, so the log tells).
# Re-annotation keeps these as they are and ``--redo`` refuses to drop them.
PERSON_BOX = (f"(d.backend = '{MANUAL_BACKEND}' OR d.rejected = 1"
              " OR EXISTS (SELECT 1 FROM labels l WHERE l.detection_id = d.id AND l.provenance = 'corrected')"
              " OR EXISTS (SELECT 1 FROM review_log r WHERE r.detection_id = d.id AND r.undone = 0))")

KEEP_IOU = 0.5
"""A new box overlapping a person's box (kept or rejected) at this IoU or more is not stored."""


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
class FrameWrite:
    """What writing one frame did: its final status and what happened to its boxes."""

    status: str
    added: int = 0
    kept: int = 0
    replaced: int = 0
    left_out: int = 0


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


class FramesMixin(Connection):
    """The ``sources``, ``frames`` and ``detections`` tables."""
    def source_id(self, uri: str, kind: str, post: str | None = None) -> int:
        """The id of source ``uri``, added if new; ``post`` (inspection post) is recorded if given."""
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO sources (uri, kind, added_at, post) VALUES (?, ?, ?, ?)",
                (uri, kind, now(), post),
            )
            if post is not None:
                self.db.execute("UPDATE sources SET post=? WHERE uri=?", (post, uri))
            return int(self.db.execute("SELECT id FROM sources WHERE uri=?", (uri,)).fetchone()[0])

    def done_frames(self, source_id: int) -> set[int]:
        """Frame indices of ``source_id`` already processed (in any earlier run)."""
        cur = self.db.execute("SELECT frame_index FROM frames WHERE source_id=?", (source_id,))
        return {r[0] for r in cur}

    def frame_detectors(self, source_id: int) -> dict[int, Any]:
        """Frame index -> the ``detector`` (its ``describe()``) recorded by the run that stored the
        frame, None where that run recorded none."""
        frames = self.db.execute("SELECT frame_index, run_id FROM frames WHERE source_id=?",
                                 (source_id,)).fetchall()
        detectors: dict[int, Any] = {}
        for run_id in {r for _, r in frames}:
            row = self.db.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            config = json.loads(row[0]) if row and row[0] else {}
            detectors[run_id] = config.get("detector") if isinstance(config, dict) else None
        return {index: detectors[run_id] for index, run_id in frames}

    def forget_source(self, source_id: int) -> None:
        """Drop a source's frames and detections (with their embeddings and labels).

        Refused while boxes a person drew or fixed (see :data:`PERSON_BOX`: reviewed labels,
        drawn, moved or rejected boxes) are among them: they would be lost.
        """
        person = self.db.execute(f"SELECT COUNT(*) FROM detections d WHERE d.source_id=? AND {PERSON_BOX}",
                                 (source_id,)).fetchone()[0]
        if person:
            uri = self.db.execute("SELECT uri FROM sources WHERE id=?", (source_id,)).fetchone()[0]
            raise BadInputError(
                f"{uri}: {person} boxes a person drew or fixed (reviewed labels, drawn, moved or "
                "rejected boxes) belong to its frames; --redo would lose them. Rerun without --redo "
                "to re-annotate with a new detector while keeping them (or export and back up the "
                "store first)")
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
        replace: bool = False,
    ) -> list[FrameWrite]:
        """Commit frames and their ``supervision.Detections`` in one transaction.

        With ``replace``, frames already stored are annotated again: a person's boxes on them
        (:data:`PERSON_BOX`) stay exactly as they are, every other box is replaced by the new
        ones, except new boxes that overlap a person's box (kept or rejected) at IoU ≥
        :data:`KEEP_IOU` (the person's box wins; a box marked wrong is not proposed again), and
        no new box on a frame a person marked as holding no hand (their verdict wins). The
        status is recomputed: ``action`` while a box that is not rejected remains. Without
        ``replace`` a frame already stored is an error (``sqlite3.IntegrityError``).
        """
        upsert = (" ON CONFLICT (source_id, frame_index) DO UPDATE SET timestamp=excluded.timestamp,"
                  " width=excluded.width, height=excluded.height, name=excluded.name,"
                  " status=excluded.status, run_id=excluded.run_id") if replace else ""
        out = []
        with self.transaction():
            for rec, dets in batch:
                if rec.status not in FRAME_STATUSES:
                    raise ValueError(f"unknown frame status {rec.status!r}")
                old = self.db.execute(
                    f"SELECT d.id, d.x1, d.y1, d.x2, d.y2, d.rejected, {PERSON_BOX} FROM detections d"
                    " WHERE d.source_id=? AND d.frame_index=?", (source_id, rec.index)).fetchall()
                kept = [r for r in old if r[6]]
                rows = list(_detection_values(dets)) if dets is not None else []
                empty = self._marked_empty(source_id, rec.index)  # a person's "no hand" wins
                new = [] if empty else _not_on(rows, [r[1:5] for r in kept])
                status = ("action" if new or any(not r[5] for r in kept)
                          else "empty" if rec.status == "action" else rec.status)
                self.db.execute(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + upsert,
                    (source_id, rec.index, rec.timestamp, rec.width, rec.height, rec.name, status, run_id),
                )
                self.db.executemany(
                    "INSERT INTO detections (source_id, frame_index, x1, y1, x2, y2, score,"
                    " text_score, label, backend, box_threshold, text_threshold, handedness,"
                    " landmarks, world_landmarks, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(source_id, rec.index, *row, backend, *thresholds, *extra, run_id)
                     for row, extra in new],
                )
                # Dropped after the new rows went in, so their ids are not handed out again at once
                # (a review page still showing an old box then finds it gone, not another box).
                # Their labels and embeddings go with them (ON DELETE CASCADE).
                dropped = [(r[0],) for r in old if not r[6]]
                self.db.executemany("DELETE FROM detections WHERE id=?", dropped)
                out.append(FrameWrite(status, len(new), len(kept), len(dropped), len(rows) - len(new)))
        return out

    def _marked_empty(self, source_id: int, frame_index: int) -> bool:
        """A person marked this frame as holding no hand ("no hand here", or an import that says so)."""
        return self.db.execute("SELECT 1 FROM frame_reviews WHERE source_id=? AND frame_index=?"
                               " AND verdict='empty'", (source_id, frame_index)).fetchone() is not None

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


def _not_on(rows: list[tuple[tuple, tuple]], boxes: list[tuple]) -> list[tuple[tuple, tuple]]:
    """``rows`` (of :func:`_detection_values`) whose box overlaps none of ``boxes`` at :data:`KEEP_IOU`."""
    if not rows or not boxes:
        return rows
    from lrihar.boxes import box_iou

    iou = box_iou(np.array([row[:4] for row, _ in rows], float), np.array(boxes, float))
    return [r for r, best in zip(rows, iou.max(axis=1), strict=True) if best < KEEP_IOU]


def _detection_values(dets: Any) -> Iterator[tuple[tuple, tuple]]:
    """Rows of (x1, y1, x2, y2, score, text_score, label) and (handedness, landmarks, world)."""
    n = len(dets)
    conf = dets.confidence if dets.confidence is not None else np.ones(n)
    data = dets.data
    text = data.get("text_score")
    labels = data.get("class_name", [HAND] * n)
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
