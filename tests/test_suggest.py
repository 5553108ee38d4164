"""`lrihar suggest`: frames where detectors disagree, weak boxes, busy frames with no box."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from detector_fixtures import ColourBoxDetector, draw_frames
from lrihar.annotate.pipeline import annotate
from lrihar.cli import main
from lrihar.config import with_overrides
from lrihar.project import Project
from lrihar.review.edits import mark_wrong
from lrihar.review.suggest import Suggestion, disagreement, pick_diverse, suggest_frames


class LeftHalfDetector(ColourBoxDetector):
    """A second opinion that misses every box in the right half of the frame."""

    name = "left-half"

    def detect_batch(self, images):
        out = []
        for image, dets in zip(images, super().detect_batch(images), strict=True):
            out.append(dets[dets.xyxy[:, 0] < image.shape[1] / 2])
        return out


@pytest.fixture
def project(tmp_path):
    """Three sources: A (confident boxes), B (weak boxes), C (no hands, behind the motion gate)."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "hand"}]}))
    proj = Project.open(root)
    draw_frames(tmp_path / "A", 6, seed=0)
    draw_frames(tmp_path / "B", 2, seed=1)
    rng = np.random.default_rng(2)
    (tmp_path / "C").mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "C" / f"c{i}.png")
    annotate(proj, [str(tmp_path / "A")], detector=ColourBoxDetector(0.9))
    annotate(proj, [str(tmp_path / "B")], detector=ColourBoxDetector(0.2))
    gated = with_overrides(proj.config, "gate", motion=True)
    annotate(proj, [str(tmp_path / "C")], config=gated, detector=ColourBoxDetector(0.9))
    return proj


def _by_frame(picks: list[Suggestion]) -> dict[str, Suggestion]:
    return {"/".join(s.frame.split("/")[-2:]): s for s in picks}  # "A/frame01.png"


def test_each_signal_finds_its_frames(project, tmp_path):
    picks = _by_frame(suggest_frames(project, k=100, compare=LeftHalfDetector()))
    # A: frames with a second box (odd ones) lose it in the second opinion; the others agree
    for i in range(6):
        name = f"A/frame{i:02d}.png"
        if i % 2:
            assert picks[name].reasons == ["disagree: colour-boxes 2 boxes, left-half 1 boxes, 1 matched"]
            assert picks[name].score == pytest.approx(0.5) and picks[name].compare_boxes == 1
        else:
            assert name not in picks  # both detectors agree, confident box: nothing to look at
    assert picks["B/frame00.png"].reasons == ["low confidence: weakest box 0.20"]
    assert picks["B/frame00.png"].score == pytest.approx(0.6 * 0.3 / 0.5)
    assert picks["B/frame01.png"].reasons == ["disagree: colour-boxes 2 boxes, left-half 1 boxes, 1 matched",
                                              "low confidence: weakest box 0.20"]  # both count
    busy = [s for s in picks.values() if s.source.endswith("/C")]
    assert busy and all(s.reasons == ["busy but empty: the motion gate passed it, no box"] for s in busy)
    assert all(s.status == "empty" and s.score == pytest.approx(0.8) for s in busy)
    ranked = suggest_frames(project, k=3, compare=LeftHalfDetector())
    assert ranked[0].frame.endswith("B/frame01.png") and ranked[0].score == pytest.approx(0.86)
    # a second busy frame (0.8 × 0.7 for sharing a source) still beats a disagreement (0.5)
    assert [s.status for s in ranked[1:]] == ["empty", "empty"]


def test_frames_a_person_already_corrected_are_left_out(project):
    rows = [r for r in project.store.detections() if r.source_uri.endswith("/B")]
    row = next(r for r in rows if sum(o.frame_name == r.frame_name for o in rows) == 2)
    mark_wrong(project.store, [row.id], reviewer="ann")  # its frame keeps one weak box
    names = {s.frame for s in suggest_frames(project, k=100)}
    assert row.frame_name not in names
    assert row.frame_name in {s.frame for s in suggest_frames(project, k=100, include_reviewed=True)}


def test_picks_spread_over_sources_and_time():
    def s(source, index, score, video=True):
        return Suggestion(source, index, None if video else f"{source}/{index}.png", f"{source}#{index}",
                          "action", score)

    pool = [s("v1", i, 0.9) for i in range(20)] + [s("v2", 0, 0.7), s("dir", 0, 0.6, video=False),
                                                   s("dir", 1, 0.6, video=False)]
    picks = pick_diverse(pool, 5, source_decay=0.7, min_gap=5)
    # gains: v1 0.9; v2 0.7 > v1 0.63; v1 0.63 > dir 0.6; dir 0.6 > v1 0.44; v1 0.44 > dir 0.42
    assert [p.source for p in picks] == ["v1", "v2", "v1", "dir", "v1"]
    v1 = sorted(p.frame_index for p in picks if p.source == "v1")
    assert all(b - a >= 5 for a, b in itertools.pairwise(v1))  # no neighbouring frames
    assert {p.source for p in picks} == {"v1", "v2", "dir"}


def test_disagreement_is_one_minus_matched_over_union():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    assert disagreement(a, a, 0.5) == (0.0, 2)
    assert disagreement(a, a[:1], 0.5) == (0.5, 1)
    assert disagreement(a, np.zeros((0, 4)), 0.5) == (1.0, 0)
    assert disagreement(np.zeros((0, 4)), np.zeros((0, 4)), 0.5) == (0.0, 0)


def test_cli_writes_json_and_a_table(project, tmp_path, capsys):
    out = tmp_path / "frames.json"
    assert main(["suggest", "-p", str(project.root), "-n", "3", "-o", str(out), "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert len(doc) == 3
    assert set(doc[0]) >= {"source", "frame_index", "name", "frame", "score", "reasons"}
    assert doc[0]["score"] >= doc[-1]["score"]
    assert "busy but empty" in capsys.readouterr().out
    assert main(["suggest", "-p", str(project.root), "-n", "0"]) == 2


def test_cli_compares_with_the_trained_detector(tiny_yolo, capsys):
    root = str(tiny_yolo["project"].root)
    assert main(["suggest", "-p", root, "-n", "2", "--compare", "yolo", "--no-progress"]) == 0
    assert "yolo" in capsys.readouterr().out  # the project's latest export gave the second opinion


def test_empty_frames_without_a_gate_count_less_and_not_when_a_second_detector_agrees(tmp_path):
    from PIL import Image

    root = tmp_path / "p"
    root.mkdir()
    (root / "lrihar.yaml").write_text("{}")
    proj = Project.open(root)
    (tmp_path / "D").mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 50, 3), 60 + i, np.uint8)).save(tmp_path / "D" / f"d{i}.png")
    annotate(proj, [str(tmp_path / "D")], detector=ColourBoxDetector())
    plain = suggest_frames(proj, k=10)
    assert [s.reasons for s in plain] == [["no box found"]] * 2 and plain[0].score == pytest.approx(0.4)
    assert suggest_frames(proj, k=10, compare=LeftHalfDetector()) == []
