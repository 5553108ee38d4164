"""``classify.encoder: auto``: pick the encoder that labels this project's classes best.

Whether appearance or hand pose defines a class depends on the project: gloved vs bare hands is a
question of appearance, ASL letters one of pose. For each candidate (the appearance encoder,
``fusion`` at a few pose weights, ``hand-pose``) auto measures the leave-one-out accuracy of
the templates (each template matched against all the others, the code ``calibrate-lambda``
uses) and, where a person has corrected labels, the accuracy on those crops; it picks the best,
ties going to the candidate with less weight on pose (appearance first).

A template or crop without hand landmarks counts as wrong for ``hand-pose`` and is matched on
appearance alone by ``fusion``; where only part of the stored detections have landmarks, the
template estimate is weighted by that share. The pose candidates are left out, with the reason,
where no template has landmarks or no stored detection has any (boxes from Grounding DINO or
OWLv2 carry none). Embeddings are cached in the store per (file SHA-1, encoder), so a rerun
recomputes nothing but the (millisecond) matching.

Example:
    >>> choice = resolve_encoder(project.store, project.config, folders)[1]  # doctest: +SKIP
    >>> choice.chosen, [(r.label, r.score) for r in choice.rows]  # doctest: +SKIP
    ('hand-pose', [('mobilenet-v2', 0.28), ('fusion w=0.25', 0.4), ...])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.classify.embed import embed_detections
from lrihar.classify.match import Matcher, leave_one_out
from lrihar.classify.templates import build_bank
from lrihar.config import ProjectConfig
from lrihar.errors import BadInputError
from lrihar.models.build import build_encoder
from lrihar.models.encoders import DEFAULT_ENCODER, Encoder
from lrihar.store import Store

AUTO = "auto"
DEFAULT_POSE_WEIGHTS = (0.25, 0.5, 0.75)


@dataclass
class CandidateResult:
    """How one candidate did; ``score`` decides, ``left_out`` says why it could not run."""

    label: str
    pose_weight: float
    templates_accuracy: float | None = None
    reviewed_accuracy: float | None = None
    score: float | None = None
    left_out: str = ""


@dataclass
class EncoderChoice:
    """What auto measured and chose. ``encoder`` is the ready chosen encoder."""

    chosen: str
    rows: list[CandidateResult]
    templates: int
    reviewed: int
    detections_with_landmarks: float | None
    encoder: Encoder | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen,
                "encoder": self.encoder.describe() if self.encoder is not None else None,
                "templates": self.templates, "reviewed": self.reviewed,
                "detections_with_landmarks": self.detections_with_landmarks,
                "candidates": [asdict(r) for r in self.rows]}


def candidate_label(pose_weight: float, appearance: str = DEFAULT_ENCODER) -> str:
    if pose_weight <= 0:
        return appearance
    return "hand-pose" if pose_weight >= 1 else f"fusion w={pose_weight:g}"


def _has_signal(vectors: np.ndarray) -> np.ndarray:
    return np.any(vectors != 0, axis=1)


def candidate_vectors(appearance: np.ndarray, pose: np.ndarray, w: float) -> tuple[np.ndarray, list | None]:
    """Vectors and parts of the candidate with pose weight ``w`` (fusion = both side by side)."""
    if w <= 0:
        return appearance, None
    if w >= 1:
        return pose, None
    return (np.concatenate([appearance, pose], axis=1),
            [(appearance.shape[1], 1.0 - w), (pose.shape[1], w)])


def rank_candidates(appearance: np.ndarray, pose: np.ndarray, template_class: np.ndarray,
                    n_classes: int, *, reviewed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    pose_weights: tuple[float, ...] = DEFAULT_POSE_WEIGHTS, reduce: str = "max",
                    k: int = 3, detections_with_landmarks: float | None = None,
                    pose_unavailable: str = "", appearance_name: str = DEFAULT_ENCODER,
                    ) -> tuple[str, list[CandidateResult]]:
    """Score every candidate from the appearance and pose embeddings of the same templates.

    Args:
        appearance, pose: (T, D) template embeddings of the appearance and pose encoders
            (a pose row is all zero where the template has no landmarks).
        template_class: (T,) class index of each template.
        n_classes: number of classes.
        reviewed: (appearance, pose, class index) of crops a person labelled, or None.
        pose_weights: fusion weights tried between appearance (0) and hand-pose (1).
        reduce, k: the matcher's class-score reduction.
        detections_with_landmarks: share of the stored detections that have landmarks.
        pose_unavailable: why the pose candidates cannot run ("" = they can).
        appearance_name: the appearance encoder's name, for the table.

    Returns:
        The chosen candidate's label and one row per candidate, appearance first.
    """
    weights = [0.0, *sorted(w for w in pose_weights if 0 < w < 1), 1.0]
    n_t, n_r = len(template_class), 0 if reviewed is None else len(reviewed[2])
    rows: list[CandidateResult] = []
    appearance_estimate = 0.0
    for w in weights:
        row = CandidateResult(candidate_label(w, appearance_name), w)
        rows.append(row)
        if w > 0 and pose_unavailable:
            row.left_out = pose_unavailable
            continue
        vectors, parts = candidate_vectors(appearance, pose, w)
        best, _ = leave_one_out(vectors, template_class, n_classes, reduce, k, parts)
        row.templates_accuracy = float((best == template_class).mean())  # no landmarks: NG, wrong
        estimate = row.templates_accuracy
        c = detections_with_landmarks
        if w > 0 and c is not None and c < 1:
            # Crops without landmarks: fusion falls back to appearance, hand-pose cannot label them.
            estimate = c * estimate + (1 - c) * (appearance_estimate if w < 1 else 0.0)
        if w == 0:
            appearance_estimate = estimate
        row.score = estimate
        if n_r:
            r_vectors, _ = candidate_vectors(reviewed[0], reviewed[1], w)
            matcher = Matcher(vectors, template_class, n_classes, -np.inf, reduce, k, parts)
            label = matcher.assign(r_vectors).label
            row.reviewed_accuracy = float((label == reviewed[2]).mean())
            row.score = (n_t * estimate + n_r * row.reviewed_accuracy) / (n_t + n_r)
    scored = [r for r in rows if r.score is not None]
    # max() keeps the first of equal scores: the one with the least weight on pose.
    chosen = max(scored, key=lambda r: round(r.score, 9))
    return chosen.label, rows


def _auto_options(cfg: ProjectConfig) -> tuple[str, dict, tuple[float, ...]]:
    """(appearance encoder, its options, fusion weights) from ``classify.options`` under auto."""
    options = dict(cfg.classify.options)
    appearance = options.pop("appearance", DEFAULT_ENCODER)
    if appearance in (AUTO, "hand-pose", "fusion"):
        raise BadInputError(f"classify.options.appearance: name an image encoder, not {appearance!r}")
    weights = options.pop("pose_weights", DEFAULT_POSE_WEIGHTS)
    if (not isinstance(weights, list | tuple)
            or not all(isinstance(w, int | float) and 0 < w < 1 for w in weights)):
        raise BadInputError(f"classify.options.pose_weights: {weights!r}; give a list of fusion "
                            "weights between 0 and 1, e.g. [0.25, 0.5, 0.75]")
    return appearance, options, tuple(float(w) for w in weights)


def _detection_landmarks(store: Store) -> tuple[int, int, str]:
    """(detections, those with world landmarks, detector backends) over boxes not rejected."""
    n, with_pose, backends = store.db.execute(
        "SELECT COUNT(*), COUNT(world_landmarks), GROUP_CONCAT(DISTINCT backend) FROM detections"
        " WHERE rejected = 0").fetchone()
    return int(n), int(with_pose), backends or ""


def choose_encoder(store: Store, cfg: ProjectConfig, folders: dict[str, Path]) -> EncoderChoice:
    """Measure every candidate on this project's templates and reviewed labels; build the best."""
    appearance_name, appearance_options, weights = _auto_options(cfg)
    appearance = build_encoder(cfg, appearance_name, appearance_options)
    pose = build_encoder(cfg, "hand-pose", {})
    keys = [store.register_encoder(e.describe()) for e in (appearance, pose)]
    banks = [build_bank(store, e, key, folders) for e, key in zip((appearance, pose), keys, strict=True)]
    classes = banks[0].classes

    n_det, n_pose, backends = _detection_landmarks(store)
    unavailable = ""
    if not _has_signal(banks[1].vectors).any():
        unavailable = "MediaPipe found no hand in any template crop: no landmarks to compare"
    elif n_det and not n_pose:
        unavailable = (f"no stored detection has hand landmarks (boxes from {backends}); "
                       "hand-pose needs boxes from the mediapipe-hands detector")

    reviewed = {i: v["label"] for i, v in store.labels("corrected").items() if v["label"] in classes}
    reviewed_vectors = None
    if reviewed:
        stored = []
        for encoder, key in zip((appearance, pose), keys, strict=True):
            embed_detections(store, encoder, key, cfg.classify.padding, [], only=set(reviewed))
            stored.append(store.detection_embeddings(key))
        # crops embedded by both (a frame that can no longer be read has no appearance)
        ids = np.intersect1d(np.intersect1d(stored[0][0], stored[1][0]), list(reviewed))
        a, p = (vectors[np.isin(i, ids)] for i, vectors in stored)
        reviewed_vectors = (a, p, np.array([classes.index(reviewed[int(i)]) for i in ids]))

    chosen, rows = rank_candidates(
        banks[0].vectors, banks[1].vectors, banks[0].template_class, len(classes),
        reviewed=reviewed_vectors, pose_weights=weights, reduce=cfg.classify.reduce, k=cfg.classify.k,
        detections_with_landmarks=n_pose / n_det if n_det else None, pose_unavailable=unavailable,
        appearance_name=appearance_name)
    w = next(r.pose_weight for r in rows if r.label == chosen)
    if w <= 0:
        encoder = appearance
    elif w >= 1:
        encoder = pose
    else:
        encoder = build_encoder(cfg, "fusion", {"pose_weight": w, "appearance": appearance_name,
                                                "appearance_options": appearance_options})
        # The fusion embedding of a template is its two cached parts side by side: store it
        # so the classify run embeds no template again.
        joined = np.concatenate([banks[0].vectors, banks[1].vectors], axis=1)
        store.put_template_embeddings(store.register_encoder(encoder.describe()),
                                      {f.sha1: v for f, v in zip(banks[0].files, joined, strict=True)})
    return EncoderChoice(chosen, rows, len(banks[0].files),
                         0 if reviewed_vectors is None else len(reviewed_vectors[2]),
                         round(n_pose / n_det, 4) if n_det else None, encoder)


def resolve_encoder(store: Store, cfg: ProjectConfig,
                    folders: dict[str, Path]) -> tuple[Encoder, EncoderChoice | None]:
    """The encoder ``classify.encoder`` names, or, for ``auto``, the one auto chooses (and why)."""
    if cfg.classify.encoder != AUTO:
        return build_encoder(cfg), None
    choice = choose_encoder(store, cfg, folders)
    return choice.encoder, choice
