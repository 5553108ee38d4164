"""``lrihar classify``: embed every stored detection, match it against the templates, store labels.

Embeddings are committed in batches and cached per encoder, so an interrupted run resumes
where it stopped and a rerun with another λ only re-matches. Labels a person corrected are
never overwritten.

Example:
    >>> from lrihar.classify.pipeline import classify
    >>> summary = classify(Project.open("proj"))  # doctest: +SKIP
    >>> summary.counts  # doctest: +SKIP
    {'door_open': 120, 'insert_instructions': 80, 'NG': 14}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.classes import NG, NG_INDEX
from lrihar.classify.contact_sheet import contact_sheet, save_sheet
from lrihar.classify.embed import Embedder, embed_detections
from lrihar.classify.matcher import template_matcher
from lrihar.config import ProjectConfig
from lrihar.crops import iter_crops
from lrihar.lines import detection_ids_at
from lrihar.models.encoders import Encoder
from lrihar.naming import safe_file_name
from lrihar.project import Project, recorded_run
from lrihar.sources import SourceError
from lrihar.store import Store


@dataclass
class ClassifySummary:
    """What one ``classify`` run did."""

    run_id: int
    encoder: str
    lambdas: dict[str, float]
    templates: dict[str, int]
    detections: int = 0
    embedded: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    kept_corrected: int = 0
    errors: list[SourceError] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: what ``encoder: auto`` measured and chose (None when the encoder was named)
    encoder_selection: dict[str, Any] | None = None
    #: the posts whose crops this run labelled (None: every crop)
    posts: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = [asdict(e) for e in self.errors]
        return out


def classify(project: Project, *, config: ProjectConfig | None = None, templates: Path | None = None,
             encoder: Encoder | None = None, sheets_dir: Path | None = None, sheet_size: int = 60,
             show_progress: bool = False, embedder: Embedder | None = None,
             posts: list[str] | None = None) -> ClassifySummary:
    """Label every stored detection with an action class or NG.

    Args:
        project: the opened project.
        config: the resolved config (project file plus overrides).
        templates: a templates root (one sub-folder per class) overriding the project file.
        encoder: a ready encoder (else built from the config).
        sheets_dir: where to write one contact sheet per class (None = no sheets).
        sheet_size: crops per contact sheet (lowest scores first).
        show_progress: draw a progress bar on stderr.
        embedder: embeds the detections not yet embedded (default :func:`embed_detections`, in
            this process; see :mod:`lrihar.engines.ray_classify`).
        posts: label only the crops of these posts (None: every crop); ``config`` should then be
            theirs (:meth:`lrihar.lines.Layout.config_for`).
    """
    cfg = config or project.config
    store = project.store
    only = detection_ids_at(store, posts)
    tm = template_matcher(store, cfg, templates, encoder)
    encoder, key, bank, matcher, choice = tm.encoder, tm.key, tm.bank, tm.matcher, tm.choice
    lambdas = {name: round(float(lam), 4) for name, lam in zip(bank.classes, matcher.lambdas, strict=True)}
    selection = choice.as_dict() if choice is not None else None
    run_config = {"project": cfg.model_dump(mode="json", by_alias=True),
                  "encoder": encoder.describe(), "templates": bank.counts(), "encoder_selection": selection,
                  "posts": posts}
    summary = ClassifySummary(0, encoder.name, lambdas, bank.counts(), encoder_selection=selection,
                              posts=posts)

    def close(seconds: float) -> dict:
        summary.seconds = seconds
        return summary.as_dict()

    with recorded_run(store, "classify", run_config, close) as run_id:
        summary.run_id = run_id
        summary.embedded = (embedder or embed_detections)(store, encoder, key, cfg.classify.padding,
                                                          summary.errors, show_progress, only=only)
        ids, vectors = store.detection_embeddings(key)
        if only is not None:
            mine = np.isin(ids, list(only))
            ids, vectors = ids[mine], vectors[mine]
        summary.detections = len(ids)
        if len(ids):
            result = matcher.assign(vectors)
            names = [*bank.classes, NG]  # index -1 -> NG
            rows = [(int(i), names[lab], _finite(s), names[r] if r != NG_INDEX else None, _finite(m), key,
                     float(matcher.lambdas[b]))
                    for i, lab, s, r, m, b in zip(ids, result.label, result.score, result.runner_up,
                                                  result.margin, result.best_class, strict=True)]
            summary.kept_corrected = store.write_auto_labels(run_id, rows)
        summary.counts = label_counts(store, bank.classes, only)
        if sheets_dir is not None:
            summary.sheets = [str(p) for p in write_contact_sheets(store, sheets_dir, sheet_size,
                                                                   cfg.classify.padding, only)]
        store.add_errors(run_id, summary.errors)
    return summary


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def label_counts(store: Store, classes: list[str], only: set[int] | None = None) -> dict[str, int]:
    """Detections per current label, classes in project order then NG; ``only``: of these ids."""
    rows = store.db.execute("SELECT l.label, d.id FROM labels l JOIN detections d ON"
                            " d.id = l.detection_id WHERE d.rejected = 0").fetchall()
    got: dict[str, int] = {}
    for label, det_id in rows:
        if only is None or det_id in only:
            got[label] = got.get(label, 0) + 1
    return {name: int(got.get(name, 0)) for name in [*classes, NG]} | {
        k: int(v) for k, v in got.items() if k not in classes and k != NG}


def write_contact_sheets(store: Store, out_dir: Path, per_class: int = 60,
                         padding: float = 0.0, only: set[int] | None = None) -> list[Path]:
    """One PNG per label: up to ``per_class`` crops, lowest score first, captioned with scores;
    ``only``: of these detection ids."""
    labels = {i: v for i, v in store.labels().items() if only is None or i in only}
    by_label: dict[str, list[tuple[float, int]]] = {}
    for det_id, lab in labels.items():
        score = lab["score"] if lab["score"] is not None else -1.0
        by_label.setdefault(lab["label"], []).append((score, det_id))
    chosen = {name: sorted(items)[:per_class] for name, items in by_label.items()}
    wanted = {det_id for items in chosen.values() for _, det_id in items}
    crops = {row.id: img for row, img in iter_crops(store, padding, only=wanted)}
    paths = []
    for name, items in sorted(chosen.items()):
        shown = [(s, i) for s, i in items if i in crops]
        sheet = contact_sheet([crops[i] for _, i in shown],
                              [f"{s:.3f}" + ("*" if labels[i]["provenance"] == "corrected" else "")
                               for s, i in shown],
                              f"{name}: {len(by_label[name])} crops, lowest {len(shown)} scores shown")
        paths.append(save_sheet(Path(out_dir) / f"{safe_file_name(name)}.png", sheet))
    return paths
