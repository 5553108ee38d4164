"""Zero-shot hand-action detectors behind a registry.

Example:
    >>> from lrihar.models.detectors import create_detector, list_detectors
    >>> list_detectors()
    ['grounding-dino', 'mediapipe-hands', 'owlv2']
    >>> det = create_detector("mediapipe-hands")  # doctest: +SKIP
    >>> detections = det(rgb_image)  # doctest: +SKIP  -> supervision.Detections
"""

from __future__ import annotations

import importlib

from lrihar.models.detectors.base import Detector
from lrihar.registry import Registry

DETECTORS: Registry[Detector] = Registry("detector")
register_detector = DETECTORS.register

# Backend modules register themselves on import; their heavy libraries load only when built.
_BUILTIN = ("grounding_dino", "owlv2", "mediapipe_hands")


def _load_builtins() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"lrihar.models.detectors.{module}")


def list_detectors() -> list[str]:
    """Names of every registered detector backend."""
    _load_builtins()
    return DETECTORS.names()


def create_detector(name: str, **config) -> Detector:
    """Build detector backend ``name`` with backend keyword ``config``."""
    _load_builtins()
    return DETECTORS.create(name, **config)


__all__ = ["DETECTORS", "Detector", "create_detector", "list_detectors", "register_detector"]
