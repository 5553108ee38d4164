"""Sources, frames and detections: what annotate stores and every later stage reads."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrihar.errors import BadInputError
from lrihar.store.connection import Connection, now
from lrihar.store.schema import FRAME_STATUSES


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
