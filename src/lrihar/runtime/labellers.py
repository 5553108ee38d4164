"""Crop labellers for ``lrihar run``: one action class (or NG) and a confidence per hand crop.

Registered like the detectors, so a plant (or a test) can add its own:

- ``onnx``: an exported classifier (the distilled student) in ONNX Runtime, batched, no torch.
- ``templates``: the template matcher of ``lrihar classify`` (the project's encoder, templates
  and λ), for a line with nothing trained yet.

``resolve_labeller(project, "auto")`` takes the newest exported student, else the teacher, else
the line's classifier packed by ``lrihar models pack -p`` (in ``--models-dir``), else the templates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from lrihar.artifacts import packed_line_model, resolve_classifier
from lrihar.classes import NG
from lrihar.errors import BadInputError
from lrihar.lines import project_layout
from lrihar.models.encoders.base import Crop
from lrihar.registry import Registry


class CropLabeller(ABC):
    """Crops in, (class name or ``NG``, confidence) per crop out."""

    name: str = "base"
    classes: list[str]

    @abstractmethod
    def label(self, crops: Sequence[Crop]) -> tuple[list[str], np.ndarray]:
        """Labels and confidences (float32, one per crop)."""


LABELLERS: Registry[CropLabeller] = Registry("crop labeller", ["lrihar.runtime.labellers"])
register_labeller = LABELLERS.register
create_labeller = LABELLERS.create


class OnnxLabeller(CropLabeller):
    """An exported classifier; its class ``NG`` (when trained with NG) stays NG."""

    def __init__(self, model: str, batch_size: int = 32, threads: int | None = None,
                 min_confidence: float = 0.0) -> None:
        from lrihar.models.classifiers import OnnxClassifier

        self.model = OnnxClassifier(model, batch_size=batch_size, threads=threads)
        self.classes = [c for c in self.model.classes if c != NG]
        self.name = f"onnx: {self.model.name}"
        self.min_confidence = min_confidence

    def label(self, crops: Sequence[Crop]) -> tuple[list[str], np.ndarray]:
        if not crops:
            return [], np.zeros(0, np.float32)
        r = self.model.classify([c.image for c in crops])
        names = [self.model.classes[k] if s >= self.min_confidence else NG
                 for k, s in zip(r.label, r.score, strict=True)]
        return names, r.score.astype(np.float32)


class TemplateLabeller(CropLabeller):
    """The template matcher (paper eq. 1 and λ) with the project's encoder and templates."""

    def __init__(self, project, config=None) -> None:
        from lrihar.classify.matcher import template_matcher

        cfg = config or project.config  # a post's own view (lrihar.lines.Layout.config_for)
        tm = template_matcher(project.store, cfg)
        self.encoder, self.matcher, self.classes = tm.encoder, tm.matcher, list(tm.classes)
        self.name = f"templates: {self.encoder.name}"

    def label(self, crops: Sequence[Crop]) -> tuple[list[str], np.ndarray]:
        if not crops:
            return [], np.zeros(0, np.float32)
        a = self.matcher.assign(self.encoder.embed(list(crops)))
        names = [self.classes[k] if k >= 0 else NG for k in a.label]
        return names, np.clip(a.score, 0, 1).astype(np.float32)


@register_labeller("onnx")
def _onnx(project=None, model: str | None = None, **options) -> CropLabeller:
    if model is None:
        raise BadInputError("labeller onnx: give the model (an exported .onnx file)")
    return OnnxLabeller(model, **options)


@register_labeller("templates")
def _templates(project=None, config=None, **options) -> CropLabeller:
    if project is None:
        raise BadInputError("labeller templates: needs a project (its templates and encoder)")
    return TemplateLabeller(project, config)


def resolve_labeller(project, spec: str = "auto", config=None, line: str | None = None,
                     **options) -> CropLabeller:
    """The labeller ``spec`` names: ``auto``, ``templates``, ``student`` / ``teacher`` / a run name /
    an ``.onnx`` path (see ``lrihar classify --classifier``), or any registered labeller name.
    ``config``: a post's own view of the project file, for its templates, classes and λ;
    ``line``: whose packed models ``auto`` may use (default: the project's only line)."""
    if spec == "auto":
        for kind in ("student", "teacher"):
            try:
                return OnnxLabeller(str(resolve_classifier(project, kind)), **options)
            except BadInputError:
                continue
        line = line or project_layout(project.config).line_of(None)
        packed = packed_line_model(line, "classifier")  # `lrihar models pack -p`
        if packed is not None:
            return OnnxLabeller(str(packed), **options)
        return TemplateLabeller(project, config)
    if spec in LABELLERS.names():
        return create_labeller(spec, project=project, config=config, **options)
    return OnnxLabeller(str(resolve_classifier(project, spec)), **options)
