"""``lrihar suggest``: the stored frames most worth a person's look before the next training.

A person corrects few frames (the paper: ~100 of 500), so they should be the frames where the
boxes are most likely wrong. Each stored frame gets a score from these signals, and the reasons:

* **disagreement** — a second detector (``compare``, e.g. the trained ``yolo`` against the
  ``mediapipe-hands`` boxes in the store), or boxes of two backends stored on one frame, do not
  match at IoU ``iou``: 1 − (matched pairs / boxes of either side), weight 1.
* **low confidence** — the weakest box scores below ``low_confidence``: (t − s) / t, weight 0.6.
* **busy but empty** — the motion gate let the frame through (something moved) yet no box was
  found: a missed hand, often a gloved one; weight 0.8 (0.4 when no gate ran, as the frame
  may just be empty, and 0 then if the second detector sees nothing either).

Frames a person already reviewed (a box drawn, moved or marked wrong, a label corrected) are
left out. The K frames are then picked greedily for spread: each pick from a source lowers the
others of that source by ``source_decay``, and video frames within ``min_gap`` of a pick are
skipped (neighbouring frames repeat the same mistake).

Example:
    >>> picks = suggest_frames(Project.open("proj"), k=20)  # doctest: +SKIP
    >>> picks[0].reasons  # doctest: +SKIP
    ['disagree: mediapipe-hands 0 boxes, yolo 2 boxes, 0 matched']
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lrihar.boxes import box_iou
from lrihar.crops import FrameRef, frame_stem
from lrihar.dump import frame_file_name
from lrihar.errors import BadInputError
from lrihar.models.detectors.base import Detector
from lrihar.project import Project
from lrihar.store import DetectionRow, Store
from lrihar.store.frames import MANUAL_BACKEND

WEIGHTS = {"disagree": 1.0, "low_confidence": 0.6, "busy_empty": 0.8, "empty": 0.4}


@dataclass
class Suggestion:
    """One frame worth a look, with why.

    ``frame`` is the image path (or ``video#frame=N``); ``file`` the frame's file name in
    ``lrihar export -f labelstudio|cvat``, which ``lrihar import`` matches corrections by.
    """

    source: str
    frame_index: int
    name: str | None
    frame: str
    status: str
    score: float
    reasons: list[str] = field(default_factory=list)
    boxes: int = 0
    compare_boxes: int | None = None
    file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def match_count(a: np.ndarray, b: np.ndarray, iou: float) -> int:
    """Pairs of boxes of ``a`` and ``b`` matched one-to-one at IoU ≥ ``iou`` (greedy, best first)."""
    if not len(a) or not len(b):
        return 0
    m = box_iou(a, b)
    matched = 0
    while m.size and m.max() >= iou:
        i, j = np.unravel_index(int(m.argmax()), m.shape)
        matched += 1
        m[i, :], m[:, j] = -1, -1
    return matched


def disagreement(a: np.ndarray, b: np.ndarray, iou: float) -> tuple[float, int]:
    """1 − matched / (boxes of either side), and the number matched; 0 when both are empty."""
    matched = match_count(a, b, iou)
    union = len(a) + len(b) - matched
    return (0.0 if union == 0 else 1.0 - matched / union), matched


def _gated_runs(store: Store) -> set[int]:
    """Runs whose frames went through the motion gate first."""
    out = set()
    for run in store.runs():
        cfg = json.loads(run["config"] or "{}")
        if cfg.get("project", {}).get("gate", {}).get("motion"):
            out.add(int(run["id"]))
    return out


def _frame_runs(store: Store) -> dict[tuple[str, int], int]:
    # Read-only query: FrameRecord does not carry the run that stored the frame.
    cur = store.db.execute("SELECT s.uri, f.frame_index, f.run_id FROM frames f "
                           "JOIN sources s ON s.id = f.source_id")
    return {(uri, idx): run for uri, idx, run in cur}


def _reviewed(rows: list[DetectionRow]) -> bool:
    return any(r.rejected or r.backend == MANUAL_BACKEND or r.label_provenance == "corrected" for r in rows)


def _compare_boxes(detector: Detector, frames: Iterable[tuple[str, int, str | None]],
                   show_progress: bool = False) -> dict[tuple[str, int], Any]:
    """Run ``detector`` on the given stored frames (each source decoded once, unreadable frames
    skipped)."""
    from lrihar.crops import read_frames
    from lrihar.progress import progress_bar

    out: dict[tuple[str, int], Any] = {}
    refs = sorted((FrameRef(uri, idx, name) for uri, idx, name in frames),
                  key=lambda r: (r.source_uri, r.frame_index))
    with progress_bar(f"suggest: {detector.name}", unit="frames", enabled=show_progress,
                      total=len(refs)) as bar:
        for _uri, group in itertools.groupby(read_frames(refs), key=lambda pair: pair[0].source_uri):
            detector.reset()  # a tracking detector must not carry one source's state into the next
            for ref, image in group:
                out[(ref.source_uri, ref.frame_index)] = detector(image)
                bar.update(len(out))
    return out


def score_frames(project: Project, compare: Detector | None = None, iou: float = 0.5,
                 low_confidence: float = 0.5, include_reviewed: bool = False,
                 show_progress: bool = False) -> list[Suggestion]:
    """Every stored frame that is not gated, with its score and reasons (unsorted)."""
    store = project.store
    by_frame: dict[tuple[str, int], list[DetectionRow]] = defaultdict(list)
    for row in store.detections(include_rejected=True):
        by_frame[(row.source_uri, row.frame_index)].append(row)
    gated_runs, frame_run = _gated_runs(store), _frame_runs(store)
    frames = [(uri, rec) for uri, _kind, rec in store.frames() if rec.status != "gated"]
    if not include_reviewed:
        frames = [(uri, rec) for uri, rec in frames if not _reviewed(by_frame.get((uri, rec.index), []))]
    other = (_compare_boxes(compare, [(uri, rec.index, rec.name) for uri, rec in frames], show_progress)
             if compare is not None else {})
    out = []
    for uri, rec in frames:
        rows = [r for r in by_frame.get((uri, rec.index), []) if not r.rejected]
        s = Suggestion(uri, rec.index, rec.name, frame_file_name(uri, rec.index, rec.name), rec.status,
                       0.0, boxes=len(rows), file=f"{frame_stem(FrameRef(uri, rec.index, rec.name))}.jpg")
        parts: list[tuple[float, str]] = []
        backends = sorted({r.backend for r in rows})
        stored = {b: np.array([r.xyxy for r in rows if r.backend == b], float).reshape(-1, 4)
                  for b in backends}
        if len(backends) >= 2:  # two detectors' boxes stored on this frame
            a, b = backends[:2]
            d, m = disagreement(stored[a], stored[b], iou)
            if d > 0:
                parts.append((WEIGHTS["disagree"] * d, f"disagree: {a} {len(stored[a])} boxes, "
                                                        f"{b} {len(stored[b])} boxes, {m} matched"))
        if compare is not None and (uri, rec.index) in other:
            dets = other[(uri, rec.index)]
            s.compare_boxes = len(dets)
            mine = np.array([r.xyxy for r in rows], float).reshape(-1, 4)
            d, m = disagreement(mine, np.asarray(dets.xyxy, float), iou)
            if d > 0:
                label = "/".join(backends) or "stored"
                parts.append((WEIGHTS["disagree"] * d, f"disagree: {label} {len(mine)} boxes, "
                                                        f"{compare.name} {len(dets)} boxes, {m} matched"))
        scores = [r.score for r in rows if r.backend != MANUAL_BACKEND]
        if scores and min(scores) < low_confidence:
            parts.append((WEIGHTS["low_confidence"] * (low_confidence - min(scores)) / low_confidence,
                          f"low confidence: weakest box {min(scores):.2f}"))
        if rec.status == "empty":
            if frame_run.get((uri, rec.index)) in gated_runs:
                parts.append((WEIGHTS["busy_empty"], "busy but empty: the motion gate passed it, no box"))
            elif s.compare_boxes != 0:  # a second detector that also sees nothing agrees
                parts.append((WEIGHTS["empty"], "no box found"))
        s.score = round(sum(p for p, _ in parts), 4)
        s.reasons = [reason for _, reason in sorted(parts, key=lambda p: -p[0])]
        out.append(s)
    return out


def pick_diverse(scored: list[Suggestion], k: int, source_decay: float = 0.7,
                 min_gap: int = 5) -> list[Suggestion]:
    """The ``k`` best frames, spread over sources and (in videos) over time."""
    pool = sorted((s for s in scored if s.score > 0), key=lambda s: (-s.score, s.source, s.frame_index))
    picked: list[Suggestion] = []
    per_source: dict[str, int] = defaultdict(int)
    while pool and len(picked) < k:
        gains = [s.score * source_decay ** per_source[s.source] for s in pool]
        best = int(np.argmax(gains))  # first of equals: the pool is sorted best first
        s = pool.pop(best)
        picked.append(s)
        per_source[s.source] += 1
        if s.name is None:  # a video frame: its neighbours show the same scene
            pool = [o for o in pool if o.source != s.source or abs(o.frame_index - s.frame_index) >= min_gap]
    return picked


def suggest_frames(project: Project, k: int = 20, compare: Detector | None = None, iou: float = 0.5,
                   low_confidence: float = 0.5, include_reviewed: bool = False, source_decay: float = 0.7,
                   min_gap: int = 5, show_progress: bool = False) -> list[Suggestion]:
    """The ``k`` stored frames most worth a correction, best first (see the module docstring)."""
    if k < 1:
        raise BadInputError(f"-n: ask for at least one frame, not {k}")
    scored = score_frames(project, compare, iou, low_confidence, include_reviewed, show_progress)
    return pick_diverse(scored, k, source_decay, min_gap)
