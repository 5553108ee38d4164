"""A scripted line for runtime tests: a clip where coloured squares stand for hand actions, a
tiny detector and a tiny crop labeller registered like the real ones.

Each action of the script is a square of its class's colour that appears at its first frame,
drifts, and is gone after its last frame. ``hue-blobs`` (a detector) boxes saturated blobs;
``hue`` (a crop labeller) names a crop's class by its mean colour. So the events a run must
produce follow from the script alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from lrihar.models.detectors import register_detector
from lrihar.models.detectors.base import Detector
from lrihar.runtime.labellers import CropLabeller, register_labeller
from lrihar.videowriter import write_video

COLOURS = {"pick": (220, 40, 30), "scan": (30, 200, 40), "place": (40, 60, 230), "label": (230, 210, 30)}
FPS = 10
SIZE = (160, 120)


def scripted_frames(script: list[tuple[str, int, int]], n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames; each (class, first, last) draws a 24 px square of that class in frames
    first..last (inclusive), in a lane of its own so two actions never touch."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    background = rng.integers(60, 100, (h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        for lane, (name, first, last) in enumerate(script):
            if first <= i <= last:
                x = 8 + ((i - first) * 2) % 40 + (lane % 2) * 80
                y = 10 + (lane // 2 % 3) * 36
                frame[y:y + 24, x:x + 24] = COLOURS[name]
        frames.append(frame)
    return frames


def scripted_clip(path: Path, script: list[tuple[str, int, int]], n: int) -> Path:
    """The scripted frames as an MP4 at :data:`FPS` (frame k at k / FPS seconds)."""
    return write_video(path, scripted_frames(script, n), fps=FPS)


class HueBlobDetector(Detector):
    """Boxes around saturated blobs (connected components of high colour spread)."""

    name = "hue-blobs"
    batch_sizes: ClassVar[list[int]] = []  # every call's batch size, to see calls batched across sources

    def detect_batch(self, images):
        HueBlobDetector.batch_sizes.append(len(images))
        import cv2
        import supervision as sv

        out = []
        for image in images:
            spread = image.max(axis=2).astype(int) - image.min(axis=2)
            mask = (spread > 90).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh, area in stats[1:n] if area >= 60],
                            np.float32).reshape(-1, 4)
            out.append(sv.Detections(xyxy=xyxy, confidence=np.full(len(xyxy), 0.9, np.float32),
                                     class_id=np.zeros(len(xyxy), int)))
        return out


class HueLabeller(CropLabeller):
    """The class whose colour is nearest the crop's mean colour, among ``classes`` (default all)."""

    name = "hue"

    def __init__(self, classes: list[str] | None = None) -> None:
        self.classes = list(classes or COLOURS)
        self._colours = np.array([COLOURS[c] for c in self.classes], float)

    def label(self, crops):
        names, scores = [], []
        for crop in crops:
            mean = crop.image.reshape(-1, 3).mean(0)
            d = np.linalg.norm(self._colours - mean, axis=1)
            names.append(self.classes[int(d.argmin())])
            scores.append(0.9)
        return names, np.array(scores, np.float32)


register_detector("hue-blobs")(lambda **kw: HueBlobDetector())
register_labeller("hue")(lambda project=None, config=None, **kw: HueLabeller(
    [c.name for c in config.classes] if config is not None and config.classes else None))
