"""Shared loading and batching for transformers zero-shot detectors (Grounding DINO, OWLv2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lrihar.models.detectors.base import Detector
from lrihar.models.hf import load_pretrained


class TransformersZeroShotDetector(Detector):
    """Loads a processor + model pair, runs batches under ``inference_mode`` on ``device``."""

    default_model: str = ""
    model_class: str = ""

    def __init__(self, model: str | None = None, prompt: str = "hand.",
                 box_threshold: float = 0.35, text_threshold: float = 0.25,
                 device: str = "cpu", batch_size: int = 4) -> None:
        import torch
        import transformers

        self.model_id = model or self.default_model
        self.prompt = prompt
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.processor = load_pretrained(transformers.AutoProcessor, self.model_id)
        self.model = load_pretrained(getattr(transformers, self.model_class), self.model_id)
        self.model.to(self.device).eval()

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        return (self.box_threshold, self.text_threshold)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "prompt": self.prompt,
                "box_threshold": self.box_threshold, "text_threshold": self.text_threshold}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list:
        import torch
        from PIL import Image

        out: list = []
        for start in range(0, len(images), self.batch_size):
            chunk = [Image.fromarray(np.asarray(img)) for img in images[start:start + self.batch_size]]
            with torch.inference_mode():
                out.extend(self._detect_chunk(chunk))
        return out

    def _detect_chunk(self, images: list) -> list:
        raise NotImplementedError


def to_detections(boxes: Any, scores: Any, labels: Sequence[str], width: int, height: int):
    """Convert post-processed tensors into ``sv.Detections`` clipped to the image."""
    import supervision as sv

    xyxy = boxes.detach().cpu().float().numpy().reshape(-1, 4)
    xyxy = sv.clip_boxes(xyxy, (width, height))
    return sv.Detections(
        xyxy=xyxy.astype(np.float32),
        confidence=scores.detach().cpu().float().numpy().astype(np.float32),
        class_id=np.zeros(len(xyxy), dtype=int),
        data={"class_name": np.array([str(x) for x in labels], dtype=str)},
    )
