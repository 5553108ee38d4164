"""What each idea for a stronger ``hand-pose`` pays on the ASL letters set, one idea at a time.

Same data as ``classify_accuracy.py`` (templates: ground-truth crops of the unaugmented ``valid``
split, landmarks as ``classify`` gets them; queries: ``test`` images through ``mediapipe-hands``).
Per variant: accuracy without NG with 3 templates per letter (mean ± sd of 5 draws) and with all
of ``valid`` (≤ 9 per letter), and leave-one-out over every unaugmented image with landmarks
(valid + test, 208 crops), a second opinion less tied to the 68 test crops.

Variants: the descriptor before this work (coordinates + joint angles), fingertip distances at a
few weights, the new default (angles ×2, fingertip distances ×3), and on top of it: image-plane
landmarks beside the world ones, both handedness mirrors (score = max over the query mirrored
and not), top-k mean over templates, no handedness mirroring.

Usage: python benchmarks/hand_pose_ideas.py  -> benchmarks/results/hand_pose_ideas.json
"""

from __future__ import annotations

import numpy as np

from _common import write_result
from classify_accuracy import asl_set, draw_templates
from lrihar.classify.match import Matcher, similarity
from lrihar.models.encoders.base import l2_normalise
from lrihar.models.encoders.hand_pose import MIDDLE_MCP, WRIST, pose_descriptor

MIRROR = {"Left": "Right", "Right": "Left"}


def image_plane(points: np.ndarray, handedness: str | None) -> np.ndarray:
    """(x, y) image landmarks moved to the wrist, scaled, mirrored for left hands (42 values)."""
    pts = np.asarray(points, np.float32)[:, :2] - points[WRIST, :2]
    if handedness == "Left":
        pts = pts * np.array([-1.0, 1.0], np.float32)
    return (pts / (float(np.linalg.norm(pts[MIDDLE_MCP])) or 1.0)).ravel() / np.sqrt(21.0)


def embed(crops, describe) -> np.ndarray:
    """One row per crop from ``describe(crop, handedness)``; all zero without landmarks."""
    rows = [describe(c, c.handedness) if c.world_landmarks is not None else None for c in crops]
    dim = len(next(r for r in rows if r is not None))
    return l2_normalise(np.stack([np.zeros(dim, np.float32) if r is None else r for r in rows]))


def variants(crops) -> dict[str, tuple[np.ndarray, str]]:
    """Name -> (crop-by-crop similarity matrix, class-score reduction)."""
    def descriptor(angle: float, tip: float):
        return lambda c, h: pose_descriptor(c.world_landmarks, h, angle, tip)

    out = {}
    for name, angle, tip in [("before: coordinates + angles (angle_weight 1)", 1, 0),
                             ("+ fingertip distances, tip_weight 1", 1, 1),
                             ("+ fingertip distances, tip_weight 2", 1, 2),
                             ("+ fingertip distances, tip_weight 3", 1, 3),
                             ("angle_weight 2 (no tips)", 2, 0),
                             ("new default: angle_weight 2, tip_weight 3", 2, 3)]:
        v = embed(crops, descriptor(angle, tip))
        out[name] = (similarity(v, v), "max")
    new = descriptor(2, 3)
    v = embed(crops, new)
    s = similarity(v, v)
    for weight in (0.5, 1.0):
        both = embed(crops, lambda c, h, w=weight: np.concatenate([new(c, h),
                                                                    w * image_plane(c.landmarks, h)]))
        out[f"new default + image-plane (x, y), weight {weight:g}"] = (similarity(both, both), "max")
    mirrored = embed(crops, lambda c, h: new(c, MIRROR.get(h, h)))
    out["new default + both handedness mirrors (max)"] = (np.maximum(s, similarity(mirrored, v)), "max")
    unmirrored = embed(crops, lambda c, h: new(c, None))
    out["new default, no handedness mirroring"] = (similarity(unmirrored, unmirrored), "max")
    out["new default + top-k mean (k = 2)"] = (s, "topk-mean")
    return out


def accuracy(sims: np.ndarray, reduce: str, labels: np.ndarray, signal: np.ndarray, t: np.ndarray,
             q: np.ndarray, n_classes: int) -> float:
    """Best-class accuracy of queries ``q`` against templates ``t`` (no landmarks: wrong)."""
    matcher = Matcher(np.zeros((len(t), 1)), labels[t], n_classes, reduce=reduce, k=2)
    best = matcher.class_scores_from_similarities(sims[np.ix_(q, t)]).argmax(axis=1)
    return float(((best == labels[q]) & signal[q]).mean())


def main() -> None:
    data = asl_set()
    n = len(data.classes)
    signal = np.array([c.world_landmarks is not None for c in data.crops])
    queries = np.where(data.query)[0]
    everyone = np.where(signal)[0]
    results = {}
    for name, (sims, reduce) in variants(data.crops).items():
        three = [accuracy(sims, reduce, data.labels, signal, draw_templates(data, 3, s), queries, n)
                 for s in range(5)]
        ten = accuracy(sims, reduce, data.labels, signal, draw_templates(data, 10, 0), queries, n)
        loo = np.mean([accuracy(sims, reduce, data.labels, signal, everyone[everyone != i], np.array([i]), n)
                       for i in everyone])
        results[name] = {"3_per_letter": round(float(np.mean(three)), 4),
                         "3_per_letter_sd": round(float(np.std(three)), 4),
                         "all_valid": round(ten, 4), "leave_one_out_all": round(float(loo), 4)}
        print(f"{name:55s} {results[name]}", flush=True)
    print("wrote", write_result("hand_pose_ideas", {"queries": len(queries), "variants": results}))


if __name__ == "__main__":
    main()
