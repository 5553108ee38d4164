"""A descriptor of what the hand is doing, from the 21 landmarks that mediapipe-hands stores.

World landmarks (metres, MediaPipe's hand-centred frame) are moved to the wrist, scaled by the
wrist-to-middle-knuckle length, and mirrored for left hands so a left and a right hand doing the
same thing look alike. Three blocks follow, each scaled to a comparable size and weighted:

* the 63 normalised coordinates (weight 1): where each joint is;
* the 15 finger-joint flexion angles (``angle_weight``): invariant to how the hand is turned;
* the 10 pairwise fingertip distances (``tip_weight``): which fingers touch or spread, what
  tells fine-grained hand shapes apart (ASL letters: +16 points, docs/encoders.md).

Crops without landmarks get an all-zero vector: they match nothing.
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
TIPS = (4, 8, 12, 16, 20)
TIP_PAIRS = tuple(itertools.combinations(TIPS, 2))


def joint_angles(points: np.ndarray) -> np.ndarray:
    """The 15 angles (radians) between consecutive bones of each finger."""
    angles = []
    for chain in FINGERS:
        bones = np.diff(points[list(chain)], axis=0)
        for a, b in itertools.pairwise(bones):
            cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)
            angles.append(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.array(angles, dtype=np.float32)


def fingertip_distances(points: np.ndarray) -> np.ndarray:
    """The 10 distances between pairs of fingertips (in the units of ``points``)."""
    return np.array([np.linalg.norm(points[a] - points[b]) for a, b in TIP_PAIRS], dtype=np.float32)


def pose_descriptor(world: np.ndarray, handedness: str | None, angle_weight: float = 2.0,
                    tip_weight: float = 3.0) -> np.ndarray:
    """Wrist-centred, scale-normalised, handedness-mirrored coordinates, joint angles and
    fingertip distances (88 values)."""
    pts = np.asarray(world, dtype=np.float32).reshape(21, 3)
    pts = pts - pts[WRIST]
    if handedness == "Left":
        pts = pts * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    scale = float(np.linalg.norm(pts[MIDDLE_MCP])) or 1.0
    pts = pts / scale
    # Fixed divisors keep the three blocks of comparable size at weight 1; the default weights
    # are what measured best on the ASL letters set (docs/encoders.md).
    return np.concatenate([pts.ravel() / np.sqrt(21.0),
                           angle_weight * joint_angles(pts) / np.pi / np.sqrt(5.0),
                           tip_weight * fingertip_distances(pts) / np.sqrt(10.0)]).astype(np.float32)


@register_encoder("hand-pose")
class HandPoseEncoder(Encoder):
    """Landmark geometry (88-d): 63 normalised coordinates, 15 joint angles, 10 fingertip distances.

    Args:
        angle_weight: weight of the joint-angle block (0 = left out of the match).
        tip_weight: weight of the fingertip-distance block (0 = left out of the match).
    """

    name = "hand-pose"
    uses_landmarks = True
    uses_pixels = False

    def __init__(self, angle_weight: float = 2.0, tip_weight: float = 3.0, batch_size: int = 256) -> None:
        self.angle_weight = angle_weight
        self.tip_weight = tip_weight
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return 63 + 15 + len(TIP_PAIRS)

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.name, "angle_weight": self.angle_weight, "tip_weight": self.tip_weight}

    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for i, crop in enumerate(crops):
            if crop.world_landmarks is not None:
                out[i] = pose_descriptor(np.asarray(crop.world_landmarks), crop.handedness,
                                         self.angle_weight, self.tip_weight)
        return out
