"""Grounding DINO (the paper's auto-annotator), prompted with text such as ``"hand."``."""

from __future__ import annotations

from lrihar.models.detectors import register_detector
from lrihar.models.detectors.hf import TransformersZeroShotDetector, to_detections


def normalise_prompt(prompt: str) -> str:
    """Grounding DINO expects lower-case phrases each ending with a period."""
    phrases = [p.strip().lower() for p in prompt.split(".") if p.strip()]
    if not phrases:
        from lrihar.errors import BadInputError

        raise BadInputError("detector.prompt: empty prompt; give a phrase such as 'hand.'")
    return " . ".join(phrases) + " ."


@register_detector("grounding-dino")
class GroundingDinoDetector(TransformersZeroShotDetector):
    """``GroundingDinoForObjectDetection`` with box and text thresholds (paper eq. settings)."""

    name = "grounding-dino"
    default_model = "IDEA-Research/grounding-dino-tiny"
    model_class = "GroundingDinoForObjectDetection"

    def _detect_chunk(self, images: list) -> list:
        text = normalise_prompt(self.prompt)
        inputs = self.processor(images=images, text=[text] * len(images),
                                return_tensors="pt", padding=True).to(self.device)
        outputs = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(im.height, im.width) for im in images],
        )
        return [
            to_detections(r["boxes"], r["scores"], r["text_labels"],
                          im.width, im.height)
            for r, im in zip(results, images, strict=True)
        ]
