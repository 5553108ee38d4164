"""Choosing λ: leave-one-out scores of the templates themselves, and reviewed labels if any.

For each template, the others are the bank: its best class and score tell how the matcher
would treat a crop just like it. Sweeping λ gives, per value, the share of templates still
accepted with the right class (accuracy) and the share sent to NG (NG rate). Where a person has
corrected labels, the same sweep runs on those crops too (their NG class counts as right when
the matcher says NG). The suggested λ keeps ``keep`` (default 95 %) of correctly matched
templates accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.classes import NG, NG_INDEX
from lrihar.classify.embed import embed_detections
from lrihar.classify.match import Matcher, leave_one_out
from lrihar.classify.matcher import template_matcher
from lrihar.lines import detection_ids_at


@dataclass
class LambdaSweep:
    """Accuracy / NG rate per λ on one evaluation set."""

    name: str
    lambdas: np.ndarray
    accuracy: np.ndarray
    ng_rate: np.ndarray
    n: int

    def rows(self) -> list[dict[str, float]]:
        return [{"lambda": round(float(lam), 3), "accuracy": round(float(a), 4),
                 "ng_rate": round(float(r), 4)}
                for lam, a, r in zip(self.lambdas, self.accuracy, self.ng_rate, strict=True)]


@dataclass
class Calibration:
    """What ``calibrate-lambda`` found."""

    suggested: float
    sweeps: list[LambdaSweep] = field(default_factory=list)
    loo_accuracy_without_ng: float = 0.0
    encoder: dict = field(default_factory=dict)
    #: what ``encoder: auto`` measured and chose (see classify/auto.py), else None
    encoder_selection: dict | None = None


def sweep(name: str, truth: np.ndarray, best: np.ndarray, score: np.ndarray,
          grid: np.ndarray) -> LambdaSweep:
    """Accuracy (right class accepted, or NG where truth is NG) and NG rate for each λ."""
    acc, ng = [], []
    for lam in grid:
        label = np.where(score >= lam, best, NG_INDEX)
        acc.append(float((label == truth).mean()) if len(truth) else 0.0)
        ng.append(float((label == NG_INDEX).mean()) if len(truth) else 0.0)
    return LambdaSweep(name, grid, np.array(acc), np.array(ng), len(truth))


def suggest_lambda(truth: np.ndarray, best: np.ndarray, score: np.ndarray, keep: float = 0.95) -> float:
    """Largest λ that still accepts ``keep`` of the correctly matched examples."""
    right = score[(best == truth)]
    if not len(right):
        return 0.0
    return float(np.floor(np.quantile(right, 1.0 - keep) * 100) / 100)


def plot_sweeps(calibration: Calibration, path: Path) -> Path:
    """Accuracy and NG rate against λ, one line pair per evaluation set, suggested λ marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for s in calibration.sweeps:
        line, = ax.plot(s.lambdas, s.accuracy, label=f"{s.name}: accuracy (n={s.n})")
        ax.plot(s.lambdas, s.ng_rate, linestyle="--", color=line.get_color(),
                label=f"{s.name}: NG rate")
    ax.axvline(calibration.suggested, color="grey", linewidth=1)
    ax.text(calibration.suggested, 0.02, f" suggested λ = {calibration.suggested:.2f}", color="grey")
    ax.set_xlabel("λ (cosine similarity threshold)")
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    ax.set_title("Choosing λ: accuracy vs NG rate")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def calibrate_project(project, *, config=None, templates: Path | None = None, encoder=None,
                      keep: float = 0.95, grid: np.ndarray | None = None,
                      posts: list[str] | None = None) -> Calibration:
    """Sweep λ on the project's templates (leave-one-out) and on its reviewed labels.

    Args:
        project: an opened :class:`lrihar.project.Project`.
        config: resolved config (default the project's).
        templates: templates root overriding the project file.
        encoder: a ready encoder (else the config's; ``auto`` chooses as ``classify`` does).
        keep: share of correctly matched templates the suggested λ keeps accepting.
        grid: λ values to sweep (default 0.00 … 1.00 by 0.01).
        posts: only the reviewed labels of these posts (``config`` should then be theirs).
    """
    cfg = config or project.config
    store = project.store
    grid = np.round(np.arange(0.0, 1.0001, 0.01), 2) if grid is None else grid
    tm = template_matcher(store, cfg, templates, encoder)
    encoder, key, bank, choice = tm.encoder, tm.key, tm.bank, tm.choice
    best, score = leave_one_out(bank.vectors, bank.template_class, len(bank.classes),
                                cfg.classify.reduce, cfg.classify.k, encoder.parts)
    truth = bank.template_class
    result = Calibration(suggested=suggest_lambda(truth, best, score, keep),
                         loo_accuracy_without_ng=float((best == truth).mean()),
                         encoder=encoder.describe(),
                         encoder_selection=choice.as_dict() if choice is not None else None)
    result.sweeps.append(sweep("templates (leave-one-out)", truth, best, score, grid))

    only = detection_ids_at(store, posts)
    reviewed = {i: v["label"] for i, v in store.labels("corrected").items()
                if (v["label"] in bank.classes or v["label"] == NG) and (only is None or i in only)}
    if reviewed:
        embed_detections(store, encoder, key, cfg.classify.padding, [], only=set(reviewed))
        ids, vectors = store.detection_embeddings(key)
        mask = np.isin(ids, list(reviewed))
        matcher = Matcher(bank.vectors, bank.template_class, len(bank.classes), -np.inf,
                          cfg.classify.reduce, cfg.classify.k, encoder.parts)
        assigned = matcher.assign(vectors[mask])
        names = bank.classes
        rtruth = np.array([names.index(reviewed[i]) if reviewed[i] in names else NG_INDEX for i in ids[mask]])
        result.sweeps.append(sweep("reviewed labels", rtruth, assigned.best_class, assigned.score, grid))
    return result
