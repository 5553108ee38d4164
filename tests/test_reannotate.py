"""Re-annotation: `annotate` with a new detector keeps every box a person drew or fixed.

A project is annotated by the red-blob detector, labelled, then reviewed: a person draws the
green "gloved hand" it missed, moves one box, marks one wrong and relabels one. A second
detector finds the red boxes 2 px off (so every new box differs from the stored one) and the
green hands too; re-annotating with it must leave the person's rows untouched, replace the rest,
and never store a new box on top of a person's box (drawn or rejected).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_fixtures import (
    ColourBoxDetector,
    annotated_project,
    draw_frames,
    record_export,
    synthetic_yolo_onnx,
)
from lrihar.annotate.pipeline import annotate, detector_identity, same_detector
from lrihar.boxes import box_iou
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.review.edits import add_box, mark_wrong, move_box, relabel, undo_last

GREEN = (40, 200, 60)
GLOVE = [60, 50, 84, 72]  # where frames 0 and 4 get a green "gloved hand" (right half: no red there)
TESTS = Path(__file__).resolve().parent


def blobs(mask: np.ndarray) -> np.ndarray:
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    return np.array([[x, y, x + w, y + h] for x, y, w, h, area in stats[1:n] if area >= 20],
                    np.float32).reshape(-1, 4)


class GloveAwareDetector(ColourBoxDetector):
    """The new detector: red boxes found 2 px lower right, and the green hands too."""

    name = "glove-aware"

    def __init__(self, batch_size: int = 2) -> None:
        super().__init__(score=0.7)
        self.batch_size = batch_size

    def detect_batch(self, images):
        import supervision as sv

        out = []
        for image, red in zip(images, super().detect_batch(images), strict=True):
            green = (image[..., 1] > 150) & (image[..., 0] < 90) & (image[..., 2] < 90)
            shifted = np.minimum(red.xyxy + 2, [96, 80, 96, 80])
            xyxy = np.concatenate([shifted, blobs(green)]).astype(np.float32)
            out.append(sv.Detections(xyxy=xyxy, confidence=np.full(len(xyxy), 0.7, np.float32),
                                     class_id=np.zeros(len(xyxy), int),
                                     data={"class_name": np.array(["hand"] * len(xyxy))}))
        return out


def reviewed_project(root: Path, frames: Path) -> tuple[Project, dict[str, int]]:
    """The project annotated by the red-blob detector, then corrected by two people."""
    if not frames.is_dir():
        draw_frames(frames, 8)
        for i in (0, 4):
            path = frames / f"frame{i:02d}.png"
            image = np.array(Image.open(path))
            image[GLOVE[1]:GLOVE[3], GLOVE[0]:GLOVE[2]] = GREEN
            Image.fromarray(image).save(path)
    project = annotated_project(root, frames, classes=[{"name": "hand"}, {"name": "glove"}])
    store = project.store
    # Every box labelled as `lrihar classify` would, so relabelling one is a person's correction.
    store.write_auto_labels(1, [(r.id, "hand", 0.9, None, None, "test", 0.5) for r in store.detections()])
    first = {}
    for row in store.detections():
        first.setdefault(Path(row.frame_name).stem, row)
    person = {"moved": first["frame01"].id, "wrong": first["frame02"].id, "relabelled": first["frame03"].id}
    x1, y1, x2, y2 = first["frame01"].xyxy
    move_box(store, person["moved"], [x1 + 4, y1, x2 + 4, y2], "ben")
    mark_wrong(store, [person["wrong"]], "ben")
    relabel(store, [person["relabelled"]], "glove", "ben")
    person["drawn"] = add_box(store, first["frame00"].id, GLOVE, "glove", "ana")["id"]
    return project, person


def person_rows(store, ids) -> list[tuple]:
    marks = ",".join("?" * len(ids))
    q = store.db.execute
    return [*q(f"SELECT * FROM detections WHERE id IN ({marks}) ORDER BY id", ids),
            *q(f"SELECT * FROM labels WHERE detection_id IN ({marks}) ORDER BY 1", ids)]


def stored_rows(db_path: Path) -> dict[str, list]:
    """Everything re-annotation decides, without ids and run ids (a killed run adds a run)."""
    db = sqlite3.connect(db_path)
    out = {
        "frames": db.execute("SELECT source_id, frame_index, width, height, name, status FROM frames"
                             " ORDER BY 1, 2").fetchall(),
        "boxes": db.execute("SELECT d.frame_index, d.x1, d.y1, d.x2, d.y2, d.score, d.backend, d.rejected,"
                            " l.label, l.provenance FROM detections d LEFT JOIN labels l ON"
                            " l.detection_id = d.id ORDER BY 1, 2, 3, 4, 5, 7").fetchall(),
        "log": db.execute("SELECT action_id, reviewer, action, before, after, undone FROM review_log"
                          " ORDER BY id").fetchall(),
    }
    db.close()
    return out


@pytest.fixture
def reviewed(tmp_path):
    return (*reviewed_project(tmp_path / "p", tmp_path / "frames"), tmp_path / "frames")


def test_reannotation_keeps_a_persons_boxes_and_replaces_the_rest(reviewed):
    project, person, frames = reviewed
    store = project.store
    ids = sorted(person.values())
    before = person_rows(store, ids)
    old_auto = {r.id for r in store.detections(include_rejected=True)} - set(ids)
    assert len(old_auto) == 12 - 3  # 8 frames, 1 or 2 red boxes each; 3 of them a person touched

    summary = annotate(project, [str(frames)], detector=GloveAwareDetector())

    assert (summary.frames_reannotated, summary.frames_resumed) == (8, 0)
    assert person_rows(store, ids) == before  # byte for byte: boxes, rejection, labels, versions
    rows = list(store.detections(include_rejected=True))
    assert not old_auto & {r.id for r in rows}  # the old detector's untouched boxes are gone
    new = [r for r in rows if r.id not in person.values()]
    assert {(r.backend, r.run_id) for r in new} == {("glove-aware", summary.run_id)}
    # No new box on a person's box: the drawn glove, the moved, relabelled and rejected boxes
    # each hid one proposal; the glove on the untouched frame 4 was added.
    assert (summary.boxes_kept, summary.boxes_replaced, summary.boxes_left_out) == (4, 9, 4)
    assert summary.boxes == len(new) == 12 + 2 - 4
    by_frame: dict[int, list] = {}
    for r in rows:
        by_frame.setdefault(r.frame_index, []).append(r.xyxy)
    for boxes in by_frame.values():
        iou = box_iou(np.array(boxes), np.array(boxes))
        assert (iou[~np.eye(len(boxes), dtype=bool)] < 0.5).all()
    right_half_4 = [tuple(r.xyxy) for r in new if r.frame_index == 4 and r.xyxy[0] >= 48]
    assert right_half_4 == [tuple(map(float, GLOVE))]
    # Status from what the frame holds now: frame 2 has only its rejected box left.
    status = dict(store.db.execute("SELECT frame_index, status FROM frames"))
    assert status == {i: "empty" if i == 2 else "action" for i in range(8)}
    # Labels of the dropped boxes went with them; the person's four remain.
    labels = store.db.execute("SELECT detection_id FROM labels ORDER BY 1").fetchall()
    assert [r[0] for r in labels] == ids
    stats = json.loads(store.runs()[-1]["stats"])
    assert (stats["frames_reannotated"], stats["boxes_kept"], stats["boxes_replaced"]) == (8, 4, 9)

    again = annotate(project, [str(frames)], detector=GloveAwareDetector())  # same detector: resume
    assert (again.frames_resumed, again.frames_reannotated, again.boxes) == (8, 0, 0)


def test_undo_of_a_persons_box_still_works_after_reannotation(reviewed):
    project, person, frames = reviewed
    assert annotate(project, [str(frames)], detector=GloveAwareDetector()).frames_reannotated == 8
    store = project.store
    assert undo_last(store, "ana") == [{"id": person["drawn"], "deleted": True}]
    assert not store.db.execute("SELECT id FROM detections WHERE id=?", (person["drawn"],)).fetchall()
    [restored] = undo_last(store, "ben")  # ben's last action: the relabel
    assert restored["id"] == person["relabelled"]
    assert (restored["label"], restored["provenance"]) == ("hand", "auto")


def test_which_stored_frames_count_as_another_detectors():
    yolo = {"backend": "yolo", "model": "/a/x.onnx", "sha256": "ab", "imgsz": [320, 320],
            "box_threshold": 0.25, "threads": None, "providers": ["CPUExecutionProvider"]}
    now = detector_identity(yolo)
    moved = yolo | {"model": "/b/x.onnx", "threads": 2, "providers": ["CUDAExecutionProvider"]}
    assert same_detector(moved, now)  # another folder, another runtime: the same boxes
    assert not same_detector(yolo | {"sha256": "cd"}, now)  # retrained
    assert not same_detector(yolo | {"box_threshold": 0.4}, now)
    assert not same_detector({"backend": "mediapipe-hands", "box_threshold": 0.25}, now)
    assert not same_detector(None, now)  # a run that recorded no detector
    assert same_detector({k: v for k, v in yolo.items() if k != "imgsz"}, now)  # not recorded then


def test_keep_stored_leaves_frames_of_another_detector_alone(reviewed):
    project, _, frames = reviewed
    before = stored_rows(project.store.path)
    summary = annotate(project, [str(frames)], detector=GloveAwareDetector(), reannotate=False)
    assert (summary.frames_resumed, summary.frames_reannotated, summary.boxes) == (8, 0, 0)
    assert stored_rows(project.store.path) == before


def test_redo_refuses_to_drop_a_moved_box(tmp_path):
    draw_frames(tmp_path / "frames", 2)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    row = next(project.store.detections())
    x1, y1, x2, y2 = row.xyxy
    move_box(project.store, row.id, [x1 + 3, y1, x2 + 3, y2], "ben")  # its label stays automatic
    before = stored_rows(project.store.path)
    with pytest.raises(BadInputError, match="moved"):
        annotate(project, [str(tmp_path / "frames")], detector=ColourBoxDetector(), redo=True)
    assert stored_rows(project.store.path) == before


KILLED_RUN = """
import os, signal, sys
sys.path[:0] = [{tests!r}]
from lrihar.annotate.pipeline import annotate, detector_identity, same_detector
from lrihar.project import Project
from test_reannotate import GloveAwareDetector

class KilledOnThirdCall(GloveAwareDetector):
    calls = 0

    def detect_batch(self, images):
        KilledOnThirdCall.calls += 1
        if KilledOnThirdCall.calls == 3:  # two batches (four frames) are committed by now
            os.kill(os.getpid(), signal.SIGKILL)
        return super().detect_batch(images)

annotate(Project.open({root!r}), [{frames!r}], detector=KilledOnThirdCall())
"""


def test_kill_9_mid_reannotation_then_rerun_equals_an_uninterrupted_run(tmp_path):
    frames = tmp_path / "frames"
    killed, _ = reviewed_project(tmp_path / "killed", frames)
    clean, _ = reviewed_project(tmp_path / "clean", frames)
    script = KILLED_RUN.format(tests=str(TESTS), root=str(killed.root), frames=str(frames))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr
    half = Project.open(killed.root).store
    assert dict(half.db.execute("SELECT frame_index, run_id FROM frames")) == {0: 2, 1: 2, 2: 2, 3: 2, 4: 1,
                                                                                5: 1, 6: 1, 7: 1}
    rerun = annotate(Project.open(killed.root), [str(frames)], detector=GloveAwareDetector())
    assert (rerun.frames_resumed, rerun.frames_reannotated) == (4, 4)
    annotate(clean, [str(frames)], detector=GloveAwareDetector())
    assert stored_rows(killed.root / "lrihar.db") == stored_rows(clean.root / "lrihar.db")
    assert [r["status"] for r in half.runs()] == ["done", "interrupted", "done"]


def test_cli_yolo_reannotates_with_the_projects_latest_export(tmp_path, monkeypatch):
    draw_frames(tmp_path / "frames", 4)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    row = next(project.store.detections())
    mark_wrong(project.store, [row.id], "ben")
    wrong_before = person_rows(project.store, [row.id])
    export = project.root / "models" / "detector" / "tiny" / "export"
    export.mkdir(parents=True)
    onnx = record_export(synthetic_yolo_onnx(export / "detector-64.onnx"))
    monkeypatch.chdir(tmp_path)  # not the project: the model must come from -p, not the current folder
    out = tmp_path / "summary.json"
    code = main(["annotate", str(tmp_path / "frames"), "-p", str(project.root), "--detector", "yolo",
                 "--no-progress", "--json", str(out)])
    assert code == 0
    summary = json.loads(out.read_text())
    assert (summary["frames_reannotated"], summary["frames_resumed"], summary["boxes_kept"]) == (4, 0, 1)
    store = Project.open(project.root).store
    assert json.loads(store.runs()[-1]["config"])["detector"]["model"] == str(onnx)
    assert person_rows(store, [row.id]) == wrong_before
    assert {r.backend for r in store.detections()} == {"yolo"}



def test_a_frame_a_person_marked_as_holding_no_hand_gets_no_detector_box(tmp_path):
    from lrihar.review.edits import mark_frame_empty

    draw_frames(tmp_path / "frames", 4)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    store = project.store
    row = next(store.detections())
    frame = store.db.execute("SELECT source_id, frame_index FROM detections WHERE id=?", (row.id,)).fetchone()
    mark_wrong(store, [d.id for d in store.detections() if d.frame_name == row.frame_name], "ana")
    mark_frame_empty(store, tuple(frame), "ana")
    verdict_before = store.db.execute("SELECT * FROM frame_reviews").fetchall()

    class CornerDetector(ColourBoxDetector):
        """Finds a "hand" in every frame's corner, away from every stored box."""

        name = "corner"

        def detect_batch(self, images):
            import supervision as sv

            return [sv.Detections(xyxy=np.array([[0, 0, 12, 12]], np.float32),
                                  confidence=np.array([0.9], np.float32), class_id=np.zeros(1, int),
                                  data={"class_name": np.array(["hand"])}) for _ in images]

    annotate(project, [str(tmp_path / "frames")], detector=CornerDetector())

    on_frame = store.db.execute("SELECT COUNT(*) FROM detections WHERE source_id=? AND frame_index=?"
                                " AND rejected=0", tuple(frame)).fetchone()[0]
    assert on_frame == 0  # the detector finds a box there too; the person's verdict wins
    assert store.db.execute("SELECT * FROM frame_reviews").fetchall() == verdict_before
    others = store.db.execute("SELECT COUNT(*) FROM detections WHERE backend='corner'").fetchone()[0]
    assert others == 3  # the other frames were annotated again
