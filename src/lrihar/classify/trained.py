"""``lrihar classify --classifier``: label every stored crop with a trained, exported classifier.

The classifier is named ``student`` (the latest distilled run's deployed export), ``teacher``
(the latest finetuned run's), a run name, or a path to an ``.onnx`` file exported by
``lrihar export-runtime --classifier``. It runs in ONNX Runtime in batches; its labels go to the
same labels table with provenance ``model`` (a person's corrections are never overwritten).

Example:
    >>> s = classify_with_model(Project.open("proj"), "student")  # doctest: +SKIP
    >>> s.counts  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from lrihar.artifacts import resolve_classifier
from lrihar.crops import iter_crops
from lrihar.progress import progress_bar
from lrihar.project import Project, recorded_run
from lrihar.sources import SourceError


@dataclass
class ModelClassifySummary:
    """What one ``classify --classifier`` run did."""

    run_id: int
    classifier: str
    onnx: str
    detections: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    kept_corrected: int = 0
    errors: list[SourceError] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = [asdict(e) for e in self.errors]
        return out


def classify_with_model(project: Project, classifier: str, padding: float | None = None,
                        batch_size: int = 64, show_progress: bool = False,
                        posts: list[str] | None = None) -> ModelClassifySummary:
    """Label every stored detection (not marked wrong) with the exported classifier ``classifier``;
    ``posts``: only those on frames of these posts."""
    from lrihar.classify.pipeline import label_counts
    from lrihar.lines import detection_ids_at
    from lrihar.models.classifiers import OnnxClassifier
    from lrihar.paths import sha256_of

    store = project.store
    onnx = resolve_classifier(project, classifier)
    model = OnnxClassifier(onnx, batch_size=batch_size)
    padding = project.config.classify.padding if padding is None else padding
    digest = sha256_of(onnx)
    key = store.register_encoder({"classifier": model.name, "onnx": onnx.name, "sha256": digest[:16]})
    summary = ModelClassifySummary(0, model.name, str(onnx))
    only = detection_ids_at(store, posts)
    todo = [r[0] for r in store.db.execute("SELECT id FROM detections WHERE rejected = 0")
            if only is None or r[0] in only]
    config = {"classifier": classifier, "onnx": str(onnx), "sha256": digest, "padding": padding,
              "classes": model.classes, "posts": posts}

    def close(seconds: float) -> dict:
        summary.seconds = seconds
        return summary.as_dict()

    with recorded_run(store, "classify", config, close) as run_id:
        summary.run_id = run_id
        crops = iter_crops(store, padding, summary.errors, only=set(todo))
        with progress_bar("classify", unit="crops", enabled=show_progress, total=len(todo)) as bar:
            while batch := list(itertools.islice(crops, batch_size)):
                r = model.classify([img for _, img in batch])
                rows = [(row.id, model.classes[r.label[k]], float(r.score[k]),
                         model.classes[r.runner_up[k]] if len(model.classes) > 1 else None,
                         float(r.margin[k]), key) for k, (row, _) in enumerate(batch)]
                # one transaction per batch: an interrupted run keeps what it labelled
                summary.kept_corrected = store.write_model_labels(run_id, rows)
                summary.detections += len(batch)
                bar.update(summary.detections)
        summary.counts = label_counts(store, model.classes, only)
        store.add_errors(run_id, summary.errors)
    return summary
