"""Test parts the Ray engine's workers import (they unpickle detectors by module and name, so these
live in a module on the workers' PYTHONPATH, not in a test file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detector_fixtures import RED, ColourBoxDetector


def red_box_frames(n: int, seed: int, still: range = range(0), size: tuple[int, int] = (96, 80)
                   ) -> list[np.ndarray]:
    """Frames of a red square moving over a textured background; frames in ``still`` repeat the one
    before (the motion gate drops them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    background = rng.integers(30, 90, (h, w, 3), dtype=np.uint8)
    frames: list[np.ndarray] = []
    for i in range(n):
        if i in still and frames:
            frames.append(frames[-1].copy())
            continue
        frame = background.copy()
        x, y = 4 + (i * 5 + seed * 11) % (w - 30), 4 + (i * 3) % (h - 30)
        frame[y:y + 22, x:x + 22] = RED
        frames.append(frame)
    return frames


class CrashOnceDetector(ColourBoxDetector):
    """The colour detector, except that the first call anywhere kills its worker process (as a
    lost node would), leaving ``marker`` behind so that the redone call succeeds."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = Path(marker)

    def detect_batch(self, images):
        try:
            self.marker.open("x").close()  # exactly one caller wins, even with two actors
        except FileExistsError:
            return super().detect_batch(images)
        os._exit(1)
