"""Cheap first passes that decide which frames the expensive detector sees.

A gate answers ``passes(image) -> bool``; frames it rejects are stored as ``gated`` (sifted out)
without running the detector. Gates see every sampled frame in order; on a resumed run the
frames already done are shown to :meth:`Gate.observe` so stateful gates end up in the same state.

Example:
    >>> gate = build_gate(GateConfig(motion=True))  # doctest: +SKIP
    >>> gate.passes(frame.image)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lrihar.config import GateConfig


class Gate:
    """Passes every frame; subclasses override :meth:`_decide`."""

    name = "none"

    def __init__(self) -> None:
        self.seen = 0
        self.passed = 0

    def passes(self, image: np.ndarray) -> bool:
        self.seen += 1
        ok = self._decide(image)
        self.passed += ok
        return ok

    def _decide(self, image: np.ndarray) -> bool:
        return True

    def observe(self, image: np.ndarray) -> None:
        """Update state from a frame whose result is already stored (resume)."""

    def reset(self) -> None:
        """Start of a new source."""

    @property
    def pass_rate(self) -> float:
        return self.passed / self.seen if self.seen else 1.0


class MotionGate(Gate):
    """Frame differencing: passes when enough pixels changed since the previous frame.

    Frames are compared as small grey images (``width`` px wide), which costs well under a
    millisecond and ignores sensor noise. The first frame of each source passes.
    """

    name = "motion"

    def __init__(self, threshold: float = 0.01, pixel_delta: int = 25, width: int = 160) -> None:
        super().__init__()
        self.threshold = threshold
        self.pixel_delta = pixel_delta
        self.width = width
        self._previous: np.ndarray | None = None

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        size = (self.width, max(1, round(h * self.width / w)))
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), (5, 5), 0)

    def changed_fraction(self, image: np.ndarray) -> float:
        """Fraction of pixels that changed by more than ``pixel_delta`` (1.0 on the first frame)."""
        current = self._small_grey(image)
        previous, self._previous = self._previous, current
        if previous is None or previous.shape != current.shape:
            return 1.0
        diff = np.abs(current.astype(np.int16) - previous.astype(np.int16))
        return float((diff > self.pixel_delta).mean())

    def _decide(self, image: np.ndarray) -> bool:
        return self.changed_fraction(image) >= self.threshold

    def observe(self, image: np.ndarray) -> None:
        self._previous = self._small_grey(image)

    def reset(self) -> None:
        self._previous = None


class HandGate(Gate):
    """Passes frames in which the offline hand detector (single view, static) sees a hand."""

    name = "hands"

    def __init__(self, confidence: float = 0.3) -> None:
        super().__init__()
        from lrihar.models.detectors import create_detector

        self._detector = create_detector("mediapipe-hands", box_threshold=confidence,
                                         zoom_out=1.0, max_num_hands=1)

    def _decide(self, image: np.ndarray) -> bool:
        return len(self._detector(image)) > 0


@dataclass
class Cascade(Gate):
    """Gates in order, cheapest first; a frame must pass all. ``keepalive`` passes every N-th."""

    gates: list[Gate] = field(default_factory=list)
    keepalive: int = 0
    name: str = "cascade"

    def __post_init__(self) -> None:
        super().__init__()
        self._since_pass = 0

    def _decide(self, image: np.ndarray) -> bool:
        ok = True
        for gate in self.gates:
            if ok:
                ok = gate.passes(image)
            else:
                gate.observe(image)  # stateful gates must see every frame
        self._since_pass += 1
        if not ok and self.keepalive and self._since_pass >= self.keepalive:
            ok = True
        if ok:
            self._since_pass = 0
        return ok

    def observe(self, image: np.ndarray) -> None:
        for gate in self.gates:
            gate.observe(image)

    def reset(self) -> None:
        self._since_pass = 0
        for gate in self.gates:
            gate.reset()

    def stats(self) -> dict[str, dict[str, float]]:
        """Frames seen and passed per gate, and the cascade's pass-through rate."""
        out = {g.name: {"seen": g.seen, "passed": g.passed, "pass_rate": round(g.pass_rate, 4)}
               for g in self.gates}
        out["cascade"] = {"seen": self.seen, "passed": self.passed,
                          "pass_rate": round(self.pass_rate, 4)}
        return out


def build_gate(cfg: GateConfig) -> Cascade:
    """The cascade described by the project file's ``gate`` section (empty = pass all)."""
    gates: list[Gate] = []
    if cfg.motion:
        gates.append(MotionGate(cfg.motion_threshold, cfg.pixel_delta))
    if cfg.hands:
        gates.append(HandGate(cfg.hands_confidence))
    return Cascade(gates=gates, keepalive=cfg.keepalive)
