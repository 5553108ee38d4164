"""Cosine matching of crop embeddings against template embeddings (paper eq. 1), and NG.

``similarity`` is the cosine of L2-normalised rows (for multi-part embeddings, the weighted
mean of per-part cosines over the parts both rows have). A class's score is the best template
of that class (``reduce="max"``) or the mean of its ``k`` best (``reduce="topk-mean"``). The
label is the best class when its score ≥ λ (per-class λ allowed), otherwise NG; an all-zero
embedding (no evidence, e.g. hand-pose without landmarks) is always NG. Ties go to the class
listed first.

Example:
    >>> import numpy as np
    >>> crops = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> templates = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> m = Matcher(templates, template_class=np.array([0, 1]), n_classes=2, lambdas=0.9)
    >>> m.assign(crops).label.tolist()
    [0, -1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrihar.classes import NG_INDEX


def similarity(a: np.ndarray, b: np.ndarray, parts: list[tuple[int, float]] | None = None) -> np.ndarray:
    """Cosine similarity matrix (len(a), len(b)) of row-normalised embeddings."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if parts is None or len(parts) == 1:
        return a @ b.T
    num = np.zeros((len(a), len(b)), dtype=np.float32)
    den = np.zeros_like(num)
    start = 0
    for length, weight in parts:
        pa, pb = a[:, start:start + length], b[:, start:start + length]
        present = np.outer(np.any(pa != 0, axis=1), np.any(pb != 0, axis=1))
        num += weight * (pa @ pb.T)
        den += weight * present
        start += length
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


@dataclass(frozen=True)
class Assignment:
    """Per crop: label (class index or NG = -1), best score, runner-up class and margin."""

    label: np.ndarray
    best_class: np.ndarray
    score: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray
    class_scores: np.ndarray


class Matcher:
    """Scores crops against a template bank and applies λ.

    Args:
        templates: (T, D) template embeddings.
        template_class: (T,) class index of each template.
        n_classes: number of classes (a class with no template can never win).
        lambdas: one λ, or one per class.
        reduce: ``max`` or ``topk-mean``.
        k: templates averaged by ``topk-mean``.
        parts: the encoder's embedding parts (see ``Encoder.parts``).
    """

    def __init__(self, templates: np.ndarray, template_class: np.ndarray, n_classes: int,
                 lambdas: float | np.ndarray = 0.0, reduce: str = "max", k: int = 3,
                 parts: list[tuple[int, float]] | None = None) -> None:
        if reduce not in ("max", "topk-mean"):
            raise ValueError(f"reduce must be 'max' or 'topk-mean', not {reduce!r}")
        self.templates = np.asarray(templates, dtype=np.float32)
        self.template_class = np.asarray(template_class, dtype=int)
        self.n_classes = n_classes
        self.lambdas = np.broadcast_to(np.asarray(lambdas, dtype=np.float32), (n_classes,))
        self.reduce = reduce
        self.k = k
        self.parts = parts

    def class_scores(self, crops: np.ndarray) -> np.ndarray:
        """(N, C) score of each crop for each class; -inf for classes without templates."""
        return self.class_scores_from_similarities(similarity(crops, self.templates, self.parts))

    def class_scores_from_similarities(self, sims: np.ndarray) -> np.ndarray:
        """Reduce an (N, T) crop-template similarity matrix to (N, C) class scores."""
        out = np.full((len(sims), self.n_classes), -np.inf, dtype=np.float32)
        for c in range(self.n_classes):
            cols = sims[:, self.template_class == c]
            if cols.shape[1] == 0:
                continue
            if self.reduce == "max":
                out[:, c] = cols.max(axis=1)
            else:
                k = min(self.k, cols.shape[1])
                out[:, c] = np.sort(cols, axis=1)[:, -k:].mean(axis=1)
        return out

    def assign(self, crops: np.ndarray) -> Assignment:
        """Best class per crop, NG where its score is below that class's λ."""
        scores = self.class_scores(crops)
        n = len(scores)
        if self.n_classes == 0 or n == 0:
            empty = np.full(n, NG_INDEX)
            return Assignment(empty, empty, np.full(n, -np.inf), empty, np.zeros(n), scores)
        order = np.argsort(-scores, axis=1, kind="stable")  # stable: ties go to the first class
        best = order[:, 0]
        rows = np.arange(n)
        best_score = scores[rows, best]
        if self.n_classes > 1:
            runner = order[:, 1]
            margin = best_score - scores[rows, runner]
        else:
            runner = np.full(n, NG_INDEX)
            margin = np.full(n, np.inf)
        # An all-zero embedding carries no evidence (e.g. hand-pose without landmarks): NG.
        has_signal = np.any(np.asarray(crops) != 0, axis=1)
        label = np.where((best_score >= self.lambdas[best]) & has_signal, best, NG_INDEX)
        return Assignment(label, best, best_score, runner, margin, scores)


def leave_one_out(vectors: np.ndarray, template_class: np.ndarray, n_classes: int,
                  reduce: str = "max", k: int = 3,
                  parts: list[tuple[int, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best class and score of each template matched against all the others.

    A template with an all-zero embedding (no landmarks for hand-pose) gets NG, as
    ``Matcher.assign`` gives it.
    """
    sims = similarity(vectors, vectors, parts)
    best = np.empty(len(vectors), dtype=int)
    score = np.empty(len(vectors), dtype=np.float32)
    for i in range(len(vectors)):
        keep = np.arange(len(vectors)) != i
        m = Matcher(vectors[keep], template_class[keep], n_classes, -np.inf, reduce, k)
        # reuse the precomputed similarities: score row i against the remaining templates
        scores = m.class_scores_from_similarities(sims[i:i + 1, keep])[0]
        best[i] = int(np.argmax(scores))
        score[i] = scores[best[i]]
    best[~np.any(np.asarray(vectors) != 0, axis=1)] = NG_INDEX
    return best, score
