"""The encoder contract: crops in, one L2-normalised float32 row per crop out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Crop:
    """A detected (or template) hand crop and, where the detector gave them, its landmarks.

    Attributes:
        image: RGB ``uint8`` pixels of the crop.
        world_landmarks: (21, 3) MediaPipe world landmarks in metres, or None.
        handedness: "Left" / "Right" as MediaPipe reports it, or None.
        landmarks: (21, 3) landmarks in image pixels (z in the scale of x), or None.
    """

    image: np.ndarray
    world_landmarks: np.ndarray | None = None
    handedness: str | None = None
    landmarks: np.ndarray | None = None


def as_crops(items: Sequence[Crop | np.ndarray]) -> list[Crop]:
    """Accept bare RGB arrays where a :class:`Crop` is expected."""
    return [it if isinstance(it, Crop) else Crop(np.asarray(it)) for it in items]


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (they match nothing)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Encoder(ABC):
    """A frozen image (or pose) encoder for template matching."""

    name: str = "base"
    batch_size: int = 32
    #: True for encoders that read ``Crop.world_landmarks`` (pose, fusion).
    uses_landmarks: bool = False
    #: False for encoders that never look at ``Crop.image`` (pose): no frame is decoded for them.
    uses_pixels: bool = True

    @abstractmethod
    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        """Raw features of one batch, shape (len(crops), dim)."""

    def embed(self, crops: Sequence[Crop | np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings, shape (len(crops), dim), float32."""
        crops = as_crops(crops)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._embed_batch(crops[i:i + self.batch_size])
                 for i in range(0, len(crops), self.batch_size)]
        return l2_normalise(np.concatenate(parts))

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding length."""

    @property
    def parts(self) -> list[tuple[int, float]]:
        """(length, weight) of the independently normalised parts of an embedding.

        One part for plain encoders. The matcher scores multi-part embeddings (fusion) as the
        weighted mean of per-part cosines over the parts both rows have (a missing part is an
        all-zero slice), which is how fusion falls back to appearance alone.
        """
        return [(self.dim, 1.0)]

    def describe(self) -> dict[str, Any]:
        """Settings that determine the embeddings (their cache key in the store)."""
        return {"encoder": self.name}
