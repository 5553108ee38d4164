"""The one place that turns the project file into backends: the detector and the encoder.

Every command (annotate, classify, calibrate, evaluate, run, the Ray actors) builds its models
here, so a setting means the same thing everywhere. The project's template matcher is assembled
from the encoder built here in :func:`lrihar.classify.matcher.template_matcher`.

Example:
    >>> detector = build_detector(project.config, project.root)  # doctest: +SKIP
    >>> encoder = build_encoder(project.config, "mobilenet-v2")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrihar.config import ProjectConfig
from lrihar.models.detectors import Detector, create_detector
from lrihar.models.encoders import Encoder, create_encoder


def build_detector(cfg: ProjectConfig, project_root: Path | None = None) -> Detector:
    """The detector the project file's ``detector`` section describes.

    The ``yolo`` backend without a ``model`` runs the newest detector exported in
    ``project_root`` (the project being annotated), not in the current folder.
    """
    d = cfg.detector
    kwargs: dict[str, Any] = dict(box_threshold=d.box_threshold, batch_size=d.batch_size)
    if d.backend != "mediapipe-hands":
        model = d.model
        if model is None and d.backend == "yolo" and project_root is not None:
            model = str(project_root)
        kwargs.update(model=model, prompt=d.prompt, text_threshold=d.text_threshold,
                      device=d.device)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # None = backend default
    return create_detector(d.backend, **kwargs | d.options)


def build_encoder(cfg: ProjectConfig, name: str | None = None, options: dict | None = None) -> Encoder:
    """The encoder the project file's ``classify`` section describes.

    ``name`` and ``options`` stand in for ``classify.encoder`` and ``classify.options`` (how
    ``auto`` builds its candidates); ``auto`` itself is resolved by ``classify.auto``.
    """
    c = cfg.classify
    name = name or c.encoder
    if name == "auto":
        raise ValueError("encoder 'auto' is chosen per project: use lrihar.classify.auto.resolve_encoder")
    kwargs: dict[str, Any] = {"batch_size": c.batch_size}
    if name != "hand-pose":  # landmark geometry has no weights and no device
        kwargs["device"] = c.device
        if c.model is not None:
            kwargs["model"] = c.model
    encoder = create_encoder(name, **kwargs | (c.options if options is None else options))
    # How it was built, so that another process (a Ray actor) can build the same one.
    encoder.built_with = (name, options)
    return encoder
