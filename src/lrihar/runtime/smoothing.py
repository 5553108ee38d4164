"""Temporal smoothing of per-frame labels, per track.

A single frame's label flickers (motion blur, a hand half out of the box). Two rules:

- ``majority``: the label held most often in the track's last ``window`` frames (a tie keeps the
  current label where it is among the tied, else the latest).
- ``hysteresis``: the current label stays until another label has been the frame label for
  ``window`` frames in a row, then switches to it.

``NG`` (no action) is a label like any other here: an action ends when NG wins.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Literal


class LabelSmoother:
    """Smoothed label and mean confidence per track id."""

    def __init__(self, mode: Literal["majority", "hysteresis"] = "majority", window: int = 5) -> None:
        if mode not in ("majority", "hysteresis"):
            raise ValueError(f"smoothing must be 'majority' or 'hysteresis', not {mode!r}")
        self.mode = mode
        self.window = window
        self._history: dict[int, deque[tuple[str, float]]] = {}
        self._held: dict[int, str] = {}

    def update(self, track_id: int, label: str, confidence: float) -> tuple[str, float]:
        """Add one frame's label of ``track_id``; return the smoothed label and its mean confidence
        over the window."""
        history = self._history.setdefault(track_id, deque(maxlen=self.window))
        history.append((label, confidence))
        held = self._held.get(track_id)
        if self.mode == "majority":
            counts = Counter(lab for lab, _ in history)
            top = max(counts.values())
            tied = {lab for lab, n in counts.items() if n == top}
            if held not in tied:
                held = next(lab for lab, _ in reversed(history) if lab in tied)
        elif held is None or (len(history) == self.window and all(lab == label for lab, _ in history)):
            held = label
        self._held[track_id] = held
        confs = [c for lab, c in history if lab == held]
        return held, sum(confs) / len(confs) if confs else 0.0

    def drop(self, track_id: int) -> None:
        """Forget a track that ended."""
        self._history.pop(track_id, None)
        self._held.pop(track_id, None)
