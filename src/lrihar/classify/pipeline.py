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

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.classes import NG, NG_INDEX
from lrihar.classify.contact_sheet import contact_sheet, save_sheet
from lrihar.classify.match import Matcher
from lrihar.classify.templates import TemplateBank, build_bank
from lrihar.config import ProjectConfig
from lrihar.crops import iter_crops
from lrihar.lines import class_folders
from lrihar.models.encoders import Crop, Encoder, create_encoder
from lrihar.naming import safe_file_name
from lrihar.progress import progress_bar
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


def build_encoder(cfg: ProjectConfig, name: str | None = None, options: dict | None = None) -> Encoder:
    """The encoder the project file's ``classify`` section describes.

    ``name`` and ``options`` stand in for ``classify.encoder`` and ``classify.options`` (how
    ``auto`` builds its candidates); ``auto`` itself is resolved by ``classify.auto``.
    """
    c = cfg.classify
    name = name or c.encoder
    if name == "auto":
        raise ValueError("encoder 'auto' is chosen per project: use classify.auto.resolve_encoder")
    kwargs: dict[str, Any] = {"batch_size": c.batch_size}
    if name != "hand-pose":  # landmark geometry has no weights and no device
        kwargs["device"] = c.device
        if c.model is not None:
            kwargs["model"] = c.model
    encoder = create_encoder(name, **kwargs | (c.options if options is None else options))
    # How it was built, so that another process (a Ray actor) can build the same one.
    encoder.built_with = (name, options)
    return encoder


def class_lambdas(cfg: ProjectConfig, classes: list[str]) -> np.ndarray:
    """λ per class: ``classes[].lambda`` where given, else ``classify.lambda``."""
    per_class = {c.name: c.lambda_ for c in cfg.classes if c.lambda_ is not None}
    return np.array([per_class.get(name, cfg.classify.lambda_) for name in classes], dtype=np.float32)


def matcher_for(bank: TemplateBank, encoder: Encoder, cfg: ProjectConfig) -> Matcher:
    return Matcher(bank.vectors, bank.template_class, len(bank.classes),
                   class_lambdas(cfg, bank.classes), cfg.classify.reduce, cfg.classify.k,
                   encoder.parts)


Embedder = Callable[..., int]
"""(store, encoder, key, padding, errors, show_progress, only=ids or None) -> crops embedded."""
"""Embeds the stored detections not yet embedded with an encoder: :func:`embed_detections`'s
signature (store, encoder, encoder key, padding, errors, show_progress) -> how many."""


def embed_detections(store: Store, encoder: Encoder, encoder_key: str, padding: float,
                     errors: list[SourceError], show_progress: bool = False,
                     only: set[int] | None = None) -> int:
    """Embed and store detections not yet embedded with this encoder; returns how many.

    ``only`` limits the work to these detection ids.
    """
    wanted = only if only is not None else {
        r[0] for r in store.db.execute("SELECT id FROM detections WHERE rejected = 0")}
    todo = wanted - store.embedded_detections(encoder_key)
    if not todo:
        return 0
    components = getattr(encoder, "components", None)
    if components:
        return _join_components(store, encoder, encoder_key, components, padding, errors, show_progress, todo)
    done = 0
    if encoder.uses_pixels:
        crops = iter_crops(store, padding, errors, only=todo)
    else:  # landmark geometry: no frame needs decoding
        crops = ((row, _NO_PIXELS) for row in store.detections() if row.id in todo)
    with progress_bar("embed", unit="crops", enabled=show_progress, total=len(todo)) as bar:
        while batch := list(itertools.islice(crops, encoder.batch_size)):
            items = [Crop(img, None if row.world_landmarks is None else np.asarray(row.world_landmarks),
                          row.handedness, None if row.landmarks is None else np.asarray(row.landmarks))
                     for row, img in batch]
            store.put_detection_embeddings(encoder_key, [row.id for row, _ in batch], encoder.embed(items))
            done += len(batch)
            bar.update(done)
    return done


_NO_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)


def _join_components(store: Store, encoder: Encoder, encoder_key: str, components: list[Encoder],
                     padding: float, errors: list[SourceError], show_progress: bool, todo: set[int]) -> int:
    """Fusion: embed each part under its own key (shared with the plain encoders, so nothing is
    embedded twice), then store the parts side by side under the fusion's key."""
    keys = []
    for part in components:
        keys.append(store.register_encoder(part.describe()))
        embed_detections(store, part, keys[-1], padding, errors, show_progress, only=todo)
    return store_joined_parts(store, encoder_key, keys, todo)


def store_joined_parts(store: Store, encoder_key: str, part_keys: list[str], todo: set[int]) -> int:
    """Store the parts' embeddings of the ``todo`` detections side by side under ``encoder_key``
    (those every part embedded); returns how many."""
    stored = [store.detection_embeddings(key) for key in part_keys]
    ids = np.array(sorted(todo), dtype=int)
    for part_ids, _ in stored:
        ids = np.intersect1d(ids, part_ids)
    if len(ids):
        joined = np.concatenate([vectors[np.isin(part_ids, ids)] for part_ids, vectors in stored], axis=1)
        store.put_detection_embeddings(encoder_key, ids.tolist(), joined)
    return len(ids)


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
    from lrihar.lines import detection_ids_at

    cfg = config or project.config
    store = project.store
    only = detection_ids_at(store, posts)
    folders = class_folders(cfg, templates)
    choice = None
    if encoder is None:
        from lrihar.classify.auto import resolve_encoder

        encoder, choice = resolve_encoder(store, cfg, folders)
    key = store.register_encoder(encoder.describe())
    bank = build_bank(store, encoder, key, folders)
    matcher = matcher_for(bank, encoder, cfg)
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
