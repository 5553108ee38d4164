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
        import torch

        text = normalise_prompt(self.prompt)
        inputs = self.processor(images=images, text=[text] * len(images), return_tensors="pt",
                                padding=True, **self._size()).to(self.device)
        outputs = self._forward(inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(im.height, im.width) for im in images],
        )
        probs = torch.sigmoid(outputs.logits)
        out = []
        for r, im, p in zip(results, images, probs, strict=True):
            # The processor keeps a query when its best token prob > box threshold, and names it
            # from the tokens (bar the first and last position) whose prob > text threshold. A
            # box whose name comes out empty matched no prompt phrase: it is dropped, so a box
            # is kept iff score > box threshold and text_score > text threshold (what sweeps
            # re-threshold offline).
            kept = p[p.max(dim=-1).values > self.box_threshold]
            text_scores = kept[:, 1:-1].max(dim=-1).values
            dets = to_detections(r["boxes"], r["scores"], r["text_labels"], im.width, im.height)
            dets.data["text_score"] = text_scores.float().cpu().numpy()
            out.append(dets[dets.data["text_score"] > self.text_threshold])
        return out
