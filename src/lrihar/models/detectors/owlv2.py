"""OWLv2 open-vocabulary detector; each ``.``-separated phrase of the prompt is one query."""

from __future__ import annotations

from lrihar.models.detectors import register_detector
from lrihar.models.detectors.hf import TransformersZeroShotDetector, to_detections


@register_detector("owlv2")
class Owlv2Detector(TransformersZeroShotDetector):
    """``Owlv2ForObjectDetection``; ``box_threshold`` is its score threshold."""

    name = "owlv2"
    default_model = "google/owlv2-base-patch16-ensemble"
    model_class = "Owlv2ForObjectDetection"

    def __init__(self, model: str | None = None, prompt: str = "hand.",
                 box_threshold: float = 0.1, device: str = "cpu", batch_size: int = 4,
                 text_threshold: float | None = None, precision: str = "fp32") -> None:
        # text_threshold is accepted for a uniform config but OWLv2 has no such knob.
        super().__init__(model, prompt, box_threshold, 0.0, device, batch_size, precision)

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        return (self.box_threshold, None)

    def _detect_chunk(self, images: list) -> list:
        queries = [p.strip() for p in self.prompt.split(".") if p.strip()] or ["hand"]
        inputs = self.processor(text=[queries] * len(images), images=images,
                                return_tensors="pt").to(self.device)
        outputs = self._forward(inputs)
        # OWLv2 pads every image to a square before resizing: boxes are relative to that square.
        sides = [max(im.width, im.height) for im in images]
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.box_threshold, target_sizes=[(s, s) for s in sides],
            text_labels=[queries] * len(images),
        )
        return [
            to_detections(r["boxes"], r["scores"], r["text_labels"], im.width, im.height)
            for r, im in zip(results, images, strict=True)
        ]
