"""Appearance + pose: both embeddings side by side, each L2-normalised on its own.

With weight ``w`` on pose the matcher scores a crop against a template as
``(1 - w) · cos_appearance + w · cos_pose``; where either side has no landmarks the pose part
is empty and the score is the appearance cosine alone (see ``Encoder.parts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lrihar.errors import BadInputError
from lrihar.models.encoders import DEFAULT_ENCODER, create_encoder, register_encoder
from lrihar.models.encoders.base import Crop, Encoder, as_crops, l2_normalise


@register_encoder("fusion")
class FusionEncoder(Encoder):
    """Weighted appearance + hand-pose embedding.

    Args:
        pose_weight: ``w`` in [0, 1]; the appearance part gets ``1 - w``.
        appearance: the appearance encoder's name (default the offline default).
        appearance_options: keyword options for it (model, device, ...).
        angle_weight, tip_weight: passed to the hand-pose encoder.
    """

    name = "fusion"
    uses_landmarks = True

    def __init__(self, pose_weight: float = 0.5, appearance: str = DEFAULT_ENCODER,
                 appearance_options: dict | None = None, angle_weight: float = 2.0,
                 tip_weight: float = 3.0, **shared: Any) -> None:
        if not 0.0 <= pose_weight <= 1.0:
            raise BadInputError(f"classify.options.pose_weight: {pose_weight} is not in [0, 1]")
        if appearance in ("fusion", "hand-pose"):
            raise BadInputError("classify.options.appearance: name an image encoder, not "
                                f"{appearance!r}")
        self.pose_weight = pose_weight
        self.appearance = create_encoder(appearance, **shared | (appearance_options or {}))
        self.pose = create_encoder("hand-pose", angle_weight=angle_weight, tip_weight=tip_weight)

    @property
    def dim(self) -> int:
        return self.appearance.dim + self.pose.dim

    @property
    def components(self) -> list[Encoder]:
        """The encoders whose embeddings, side by side, are this one's (in ``parts`` order)."""
        return [self.appearance, self.pose]

    @property
    def parts(self) -> list[tuple[int, float]]:
        return [(self.appearance.dim, 1.0 - self.pose_weight), (self.pose.dim, self.pose_weight)]

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.name, "pose_weight": self.pose_weight,
                "appearance": self.appearance.describe(), "pose": self.pose.describe()}

    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        return np.concatenate([self.appearance.embed(crops), self.pose.embed(crops)], axis=1)

    def embed(self, crops: Sequence[Crop | np.ndarray]) -> np.ndarray:
        """Each part normalised separately (a row without landmarks keeps an empty pose part)."""
        crops = as_crops(crops)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        both = self._embed_batch(crops)
        da = self.appearance.dim
        return np.concatenate([l2_normalise(both[:, :da]), l2_normalise(both[:, da:])], axis=1)
