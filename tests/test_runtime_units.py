"""The small parts of `lrihar run`: label smoothing, the event lifecycle, per-source track ids."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from lrihar.runtime.action_events import EventBuilder
from lrihar.runtime.ids import IdCounter
from lrihar.runtime.smoothing import LabelSmoother
from lrihar.runtime.tracking import HandTracker


def _run(smoother: LabelSmoother, labels: str) -> str:
    return "".join(smoother.update(1, c, 0.5)[0] for c in labels)


def test_majority_smoothing_ignores_a_single_flicker_and_follows_a_real_change():
    # window 3: one stray "b" never wins; two "b" in the last three do.
    assert _run(LabelSmoother("majority", 3), "aaabaaa") == "aaaaaaa"
    assert _run(LabelSmoother("majority", 3), "aaabbbb") == "aaaabbb"


def test_hysteresis_changes_only_after_a_full_window_of_the_new_label():
    assert _run(LabelSmoother("hysteresis", 3), "aabbabbb") == "aaaaaaab"


def test_smoothed_confidence_is_the_mean_over_the_held_label():
    s = LabelSmoother("majority", 4)
    for label, conf in [("a", 0.2), ("a", 0.4), ("b", 1.0)]:
        held, mean = s.update(7, label, conf)
    assert held == "a" and mean == pytest.approx(0.3)
    with pytest.raises(ValueError, match="majority"):
        LabelSmoother("median")


def test_event_lifecycle_new_update_end_with_start_at_the_first_frame():
    ids = IdCounter({"event": 41})
    b = EventBuilder("post-1", "cam", ids, min_frames=3, lost_track_s=0.5, update_every_s=1.0)
    out = []
    for k in range(25):  # 0.0 .. 2.4 s of "pick" on track 1
        out += b.observe(k / 10, 1000 + k / 10, {1: ("pick", 0.8)})
    out += b.observe(2.5, 1002.5, {1: ("NG", 0.9)})  # NG wins: the action ends
    states = [(e.state, e.id) for e in out]
    assert states[0] == ("new", 42) and states[-1] == ("end", 42)
    assert [s for s, _ in states].count("update") == 2  # at most once a second
    new, end = out[0], out[-1]
    assert new.start == 0.0 and new.end == pytest.approx(0.2)  # confirmed on its 3rd frame
    assert end.start == 0.0 and end.end == pytest.approx(2.4) and end.frames == 25
    assert end.wall_start == 1000 and end.confidence == pytest.approx(0.8)


def test_a_lost_track_ends_its_event_and_a_short_one_never_starts():
    b = EventBuilder("p", "cam", IdCounter(), min_frames=3, lost_track_s=0.25)
    out = b.observe(0.0, 0, {1: ("pick", 1), 2: ("scan", 1)})
    out += b.observe(0.1, 0, {1: ("pick", 1), 2: ("scan", 1)})   # track 2: two frames only
    out += b.observe(0.2, 0, {1: ("pick", 1)})
    out += b.observe(0.3, 0, {1: ("pick", 1)})
    out += b.observe(0.7, 0, {})                                  # both unseen > 0.25 s
    assert [(e.label, e.state) for e in out] == [("pick", "new"), ("pick", "end")]
    assert sorted(b.lost_tracks) == [1, 2] and b.open_events == []


def test_track_ids_are_numbered_per_source():
    box = sv.Detections(xyxy=np.array([[10, 10, 50, 50]], float), confidence=np.array([0.9]))
    a, b = HandTracker(10), HandTracker(10)
    for _ in range(3):
        ta = a.update(sv.Detections(xyxy=box.xyxy.copy(), confidence=box.confidence.copy()))
    moved = sv.Detections(xyxy=np.array([[100, 100, 140, 140]], float), confidence=np.array([0.9]))
    for _ in range(3):
        a.update(moved)  # a second hand on source a
        tb = b.update(sv.Detections(xyxy=box.xyxy.copy(), confidence=box.confidence.copy()))
    assert ta.tracker_id.tolist() == [1] and tb.tracker_id.tolist() == [1]
    assert a.update(moved).tracker_id.max() == 2
