"""A descriptor of what the hand is doing, from the 21 landmarks that mediapipe-hands stores.

World landmarks (metres, MediaPipe's hand-centred frame) are moved to the wrist, scaled by the
wrist-to-middle-knuckle length, and mirrored for left hands so a left and a right hand doing the
same thing look alike. Fifteen finger-joint flexion angles are appended (scaled to [0, 1] and
weighted by ``angle_weight``): they are invariant to how the hand is turned, which the
coordinates are not. Crops without landmarks get an all-zero vector: they match nothing.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from lrihar.models.encoders import register_encoder
from lrihar.models.encoders.base import Crop, Encoder

WRIST, MIDDLE_MCP = 0, 9
# Landmark chains wrist -> tip per finger (MediaPipe hand topology).
FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))


def joint_angles(points: np.ndarray) -> np.ndarray:
    """The 15 angles (radians) between consecutive bones of each finger."""
    angles = []
    for chain in FINGERS:
        bones = np.diff(points[list(chain)], axis=0)
        for a, b in itertools.pairwise(bones):
            cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)
            angles.append(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.array(angles, dtype=np.float32)


def pose_descriptor(world: np.ndarray, handedness: str | None, angle_weight: float = 1.0) -> np.ndarray:
    """Wrist-centred, scale-normalised, handedness-mirrored coordinates plus joint angles."""
    pts = np.asarray(world, dtype=np.float32).reshape(21, 3) - world[WRIST]
    if handedness == "Left":
        pts = pts * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    scale = float(np.linalg.norm(pts[MIDDLE_MCP])) or 1.0
    coords = (pts / scale).ravel()
    angles = joint_angles(pts) / np.pi
    # Balance the two blocks: 63 coordinates of order 1 vs 15 angles in [0, 1].
    return np.concatenate([coords / np.sqrt(21.0), angle_weight * angles / np.sqrt(5.0)])


@register_encoder("hand-pose")
class HandPoseEncoder(Encoder):
    """Landmark geometry (78-d): 63 normalised coordinates and 15 joint angles.

    Args:
        angle_weight: weight of the joint-angle block (0 = coordinates only).
    """

    name = "hand-pose"
    uses_landmarks = True

    def __init__(self, angle_weight: float = 1.0, batch_size: int = 256) -> None:
        self.angle_weight = angle_weight
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return 78

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.name, "angle_weight": self.angle_weight}

    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for i, crop in enumerate(crops):
            if crop.world_landmarks is not None:
                out[i] = pose_descriptor(np.asarray(crop.world_landmarks), crop.handedness,
                                         self.angle_weight)
        return out
