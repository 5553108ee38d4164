"""The project's template matcher, assembled in one place: the class folders, the encoder
(``classify.encoder``, or the one ``auto`` chooses), the template bank and the matcher with each
class's λ. ``classify``, ``calibrate-lambda``, the live labeller and Table 4 all build it here.

Example:
    >>> tm = template_matcher(project.store, project.config)  # doctest: +SKIP
    >>> tm.matcher.assign(tm.encoder.embed(crops)).label  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.classify.auto import EncoderChoice, resolve_encoder
from lrihar.classify.match import Matcher
from lrihar.classify.templates import TemplateBank, build_bank
from lrihar.config import ProjectConfig
from lrihar.lines import class_folders
from lrihar.models.encoders import Encoder
from lrihar.store import Store


@dataclass
class TemplateMatcher:
    """A ready template matcher: ``encoder`` embeds crops (stored under ``key``), ``matcher``
    scores them against ``bank``; ``choice`` says what ``auto`` measured (None when named);
    ``bank_s`` is how long embedding the templates took."""

    encoder: Encoder
    key: str
    bank: TemplateBank
    matcher: Matcher
    choice: EncoderChoice | None
    bank_s: float

    @property
    def classes(self) -> list[str]:
        return self.bank.classes


def template_matcher(store: Store, cfg: ProjectConfig, templates: Path | None = None,
                     encoder: Encoder | None = None) -> TemplateMatcher:
    """The matcher ``cfg`` (a project's, or a post's own view) describes; ``templates`` overrides
    the templates root, ``encoder`` the encoder.

    Raises:
        BadInputError: no classes or template folders, or a template folder is missing or empty.
    """
    folders = class_folders(cfg, templates)
    choice = None
    if encoder is None:
        encoder, choice = resolve_encoder(store, cfg, folders)
    key = store.register_encoder(encoder.describe())
    start = time.perf_counter()
    bank = build_bank(store, encoder, key, folders)
    bank_s = time.perf_counter() - start
    return TemplateMatcher(encoder, key, bank, matcher_for(bank, encoder, cfg), choice, bank_s)


def class_lambdas(cfg: ProjectConfig, classes: list[str]) -> np.ndarray:
    """λ per class: ``classes[].lambda`` where given, else ``classify.lambda``."""
    per_class = {c.name: c.lambda_ for c in cfg.classes if c.lambda_ is not None}
    return np.array([per_class.get(name, cfg.classify.lambda_) for name in classes], dtype=np.float32)


def matcher_for(bank: TemplateBank, encoder: Encoder, cfg: ProjectConfig) -> Matcher:
    return Matcher(bank.vectors, bank.template_class, len(bank.classes),
                   class_lambdas(cfg, bank.classes), cfg.classify.reduce, cfg.classify.k,
                   encoder.parts)
