"""The detector contract: images in, one ``supervision.Detections`` per image out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import supervision as sv


class Detector(ABC):
    """A zero-shot detector backend.

    Subclasses implement :meth:`detect_batch`. ``xyxy`` is in pixels of the input image,
    ``confidence`` in [0, 1], ``class_id`` 0 for every box and ``data["class_name"]`` holds the
    matched prompt phrase.
    """

    name: str = "base"
    batch_size: int = 1

    @abstractmethod
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """Detect in RGB ``uint8`` images of shape (H, W, 3)."""

    def __call__(self, image: np.ndarray) -> sv.Detections:
        return self.detect_batch([image])[0]

    def reset(self) -> None:  # noqa: B027 - optional hook, most backends are stateless
        """Forget state carried between frames (called when a new source starts)."""

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        """(box, text) thresholds recorded with every stored detection."""
        return (None, None)

    def describe(self) -> dict[str, Any]:
        """Settings that determine this detector's output, for provenance."""
        return {"backend": self.name}


def empty_detections(n_landmarks: int | None = None) -> sv.Detections:
    """No boxes, with the same ``data`` keys a backend fills in for real boxes."""
    import supervision as sv

    data: dict[str, np.ndarray] = {"class_name": np.array([], dtype=str)}
    if n_landmarks is not None:
        data["landmarks"] = np.zeros((0, n_landmarks, 3), dtype=np.float32)
        data["world_landmarks"] = np.zeros((0, n_landmarks, 3), dtype=np.float32)
        data["handedness"] = np.array([], dtype=str)
    return sv.Detections(
        xyxy=np.zeros((0, 4), dtype=np.float32),
        confidence=np.zeros(0, dtype=np.float32),
        class_id=np.zeros(0, dtype=int),
        data=data,
    )
