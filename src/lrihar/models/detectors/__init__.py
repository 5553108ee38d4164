"""Zero-shot hand-action detectors behind a registry.

Example:
    >>> from lrihar.models.detectors import create_detector, list_detectors
    >>> list_detectors()
    ['grounding-dino', 'mediapipe-hands', 'owlv2', 'yolo']
    >>> det = create_detector("mediapipe-hands")  # doctest: +SKIP
    >>> detections = det(rgb_image)  # doctest: +SKIP  -> supervision.Detections
"""

from __future__ import annotations

from lrihar.models.detectors.base import Detector
from lrihar.registry import Registry

# Backend modules register themselves on import; their heavy libraries load only when built.
DETECTORS: Registry[Detector] = Registry("detector", [
    f"lrihar.models.detectors.{m}" for m in ("grounding_dino", "owlv2", "mediapipe_hands", "yolo")])
register_detector = DETECTORS.register
list_detectors = DETECTORS.names
create_detector = DETECTORS.create

__all__ = ["DETECTORS", "Detector", "create_detector", "list_detectors", "register_detector"]
