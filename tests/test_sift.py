"""Gates: motion differencing, the cascade, keepalive and resume equivalence."""

from __future__ import annotations

import numpy as np

from conftest import synthetic_frames
from lrihar.annotate.sift import Cascade, MotionGate, build_gate
from lrihar.config import GateConfig


def test_motion_gate_passes_motion_and_drops_still_frames():
    frames = synthetic_frames(10, still=range(4, 8))
    gate = MotionGate(threshold=0.01)
    decisions = [gate.passes(f) for f in frames]
    # frame 0 passes (first), 1-3 move, 4-7 repeat frame 3, 8-9 move again
    assert decisions == [True, True, True, True, False, False, False, False, True, True]
    assert gate.pass_rate == 0.6


def test_motion_gate_ignores_sensor_noise():
    rng = np.random.default_rng(0)
    base = synthetic_frames(1)[0].astype(int)
    gate = MotionGate(threshold=0.01, pixel_delta=25)
    noisy = [np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8) for _ in range(5)]
    assert [gate.passes(f) for f in noisy] == [True, False, False, False, False]


def test_keepalive_passes_every_nth_frame():
    frames = [synthetic_frames(1)[0]] * 7
    gate = Cascade(gates=[MotionGate()], keepalive=3)
    assert [gate.passes(f) for f in frames] == [True, False, False, True, False, False, True]


def test_observe_on_resume_leaves_the_gate_in_the_same_state():
    frames = synthetic_frames(12, still=range(5, 9))
    full = MotionGate()
    expected = [full.passes(f) for f in frames]
    resumed = MotionGate()
    for f in frames[:6]:  # these were stored by the interrupted run
        resumed.observe(f)
    assert [resumed.passes(f) for f in frames[6:]] == expected[6:]


def test_empty_cascade_passes_everything_and_reports_stats():
    gate = build_gate(GateConfig())
    assert all(gate.passes(f) for f in synthetic_frames(3))
    assert gate.stats()["cascade"] == {"seen": 3, "passed": 3, "pass_rate": 1.0}
    motion = build_gate(GateConfig(motion=True))
    for f in synthetic_frames(6, still=range(2, 6)):
        motion.passes(f)
    assert motion.stats()["motion"]["passed"] == 2


def test_hand_gate_passes_real_hands_and_drops_empty_frames(hands_dev):
    from conftest import load_gt
    from lrihar.sources import read_image

    gate = build_gate(GateConfig(hands=True))
    image = hands_dev / "mmpose_hands" / load_gt(hands_dev / "mmpose_hands")[0]["file"]
    assert gate.passes(read_image(image))
    assert not gate.passes(np.full((240, 320, 3), 90, dtype=np.uint8))
    assert gate.stats()["hands"] == {"seen": 2, "passed": 1, "pass_rate": 0.5}
