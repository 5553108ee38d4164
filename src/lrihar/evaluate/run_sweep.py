"""``lrihar sweep``: run each detector once on the ground-truth images, then sweep offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.errors import BadInputError
from lrihar.evaluate.groundtruth import GroundTruth, require_files
from lrihar.evaluate.sweep import (
    KINDS,
    ImagePredictions,
    best_pair,
    default_grid,
    plot_surfaces,
    sweep,
    sweep_kind,
    write_csv,
)
from lrihar.naming import safe_file_name
from lrihar.progress import progress_bar
from lrihar.sources import read_image

# score-nms backends with an ``nms_iou`` option of their own (OWLv2 applies no NMS).
NMS_BACKENDS = frozenset({"yolo", "mediapipe-hands"})


@dataclass(frozen=True)
class DetectorSpec:
    """``name`` or ``name=model`` from the command line."""

    backend: str
    model: str | None = None

    @classmethod
    def parse(cls, text: str) -> DetectorSpec:
        backend, _, model = text.partition("=")
        if not backend:
            raise BadInputError(f"--detector {text!r}: give NAME or NAME=MODEL")
        return cls(backend, model or None)

    @property
    def label(self) -> str:
        return self.backend if self.model is None else f"{self.backend} ({Path(self.model).name})"


@dataclass
class SweepResult:
    rows: dict[str, list[dict]] = field(default_factory=dict)
    best: dict[str, dict[str, dict | None]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def predict_once(spec: DetectorSpec, images: Sequence[str], a_min: float, b_min: float,
                 cache: Path | None = None, show_progress: bool = False,
                 source: str = "ground truth") -> list[ImagePredictions]:
    """Boxes and scores of every image at the lowest thresholds (cached in ``cache``).

    A ``score-nms`` backend that merges overlapping boxes itself (``yolo``; ``mediapipe-hands``
    across its views) runs with ``nms_iou=1.0``, i.e. none, so the offline NMS at each grid
    point starts from every box, as a rerun there would. The image files are needed only when
    the cache does not hold these predictions yet.
    """
    from lrihar.models.detectors import create_detector

    kind = sweep_kind(spec.backend)
    no_nms = kind == "score-nms" and spec.backend in NMS_BACKENDS
    key = hashlib.sha1(json.dumps([spec.backend, spec.model, a_min, b_min, list(images),
                                   {"nms_iou": 1.0} if no_nms else {}]).encode())
    if cache is not None and cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("key") == key.hexdigest():
            return [ImagePredictions.from_json(d) for d in doc["predictions"]]
    require_files(images, source)  # before loading a model, not half-way through the images
    kwargs: dict = {"box_threshold": a_min}
    if spec.model is not None:
        kwargs["model"] = spec.model
    if kind == "box-text":
        kwargs["text_threshold"] = b_min
    if no_nms:
        kwargs["nms_iou"] = 1.0
    detector = create_detector(spec.backend, **kwargs)
    preds = []
    with progress_bar(f"sweep {spec.backend}", unit="images", enabled=show_progress,
                      total=len(images)) as bar:
        for i, path in enumerate(images):
            preds.append(ImagePredictions.from_detections(detector(read_image(Path(path)))))
            bar.update(i + 1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key.hexdigest(), "spec": spec.__dict__,
                                     "predictions": [p.to_json() for p in preds]}))
    return preds


def run_sweep(specs: Sequence[DetectorSpec], gt: GroundTruth, out: Path,
              ious: Sequence[float] = (0.3, 0.4), accuracy_floor: float = 0.9,
              grid_a: Sequence[float] | None = None, grid_b: Sequence[float] | None = None,
              show_progress: bool = False) -> SweepResult:
    """Sweep every detector over its threshold grid; write CSV, JSON and surface plots to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    gts = [gt.boxes[p] for p in gt.images]
    result = SweepResult()
    for spec in specs:
        kind = sweep_kind(spec.backend)
        a = np.asarray(grid_a if grid_a is not None else default_grid(kind, 0), float)
        b = np.asarray(grid_b if grid_b is not None else default_grid(kind, 1), float)
        cache = out / f"predictions-{safe_file_name(spec.label)}.json"
        preds = predict_once(spec, gt.images, float(a.min()), float(b.min()) if kind == "box-text"
                             else 0.0, cache, show_progress, gt.source)
        rows = sweep(preds, gts, kind, a, b, ious)
        result.rows[spec.label] = rows
        result.best[spec.label] = {str(t): best_pair(rows, t, accuracy_floor) for t in ious}
    result.files.append(str(write_csv(result.rows, out / "sweep.csv")))
    for t in ious:
        for metric in ("recall", "accuracy"):
            stem = f"surface-{metric}-iou{t:g}".replace(".", "_")  # with_suffix must not eat ".3"
            result.files += [str(p) for p in plot_surfaces(result.rows, metric, t, out / stem)]
    from lrihar.versions import package_versions

    doc = {"ious": list(ious), "accuracy_floor": accuracy_floor, "axes": KINDS,
           "detectors": [spec.__dict__ for spec in specs], "versions": package_versions(),
           "best": result.best, "images": len(gt.images),
           "ground_truth_boxes": int(sum(len(g) for g in gts))}
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    result.files.append(str(out / "sweep.json"))
    return result
