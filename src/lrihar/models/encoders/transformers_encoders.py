"""Image encoders from transformers: BLIP-2 (the paper's), CLIP, SigLIP and DINOv2.

Each loads its model and image processor with ``from_pretrained`` (hub id or local directory)
and resolves preprocessing from the checkpoint's own processor config.

BLIP-2 pooling: the Q-Former turns an image into 32 query embeddings (projected to the
image-text space, 256-d for the ITM checkpoints). BLIP-2's image-text contrastive score takes the
best-matching query, which needs all 32 vectors per crop; for matching crops against crops we
need one vector, so we L2-normalise each query embedding and average them (then L2-normalise
again). The cosine of two such means is the average of all 32×32 query-pair similarities,
which is stable (no single query dominates) and is what the paper's eq. 1 computes on "Q1, Q2".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrihar.models.encoders import register_encoder
from lrihar.models.encoders.base import Crop, Encoder
from lrihar.models.hf import load_pretrained


class TransformersImageEncoder(Encoder):
    """``AutoImageProcessor`` + a vision model class; subclasses pick the output."""

    default_model: str = ""
    model_class: str = ""

    def __init__(self, model: str | None = None, device: str = "cpu", batch_size: int = 16) -> None:
        import torch
        import transformers

        self.model_id = model or self.default_model
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.processor = load_pretrained(transformers.AutoImageProcessor, self.model_id)
        self.model = load_pretrained(getattr(transformers, self.model_class), self.model_id)
        self.model.to(self.device).eval()
        self._dim = int(self._embed_batch([Crop(np.zeros((32, 32, 3), np.uint8))]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.name, "model": self.model_id}

    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        import torch

        inputs = self.processor(images=[c.image for c in crops], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self._pool(self.model(pixel_values=inputs["pixel_values"])).float().cpu().numpy()

    def _pool(self, outputs: Any):
        raise NotImplementedError


@register_encoder("blip2")
class Blip2Encoder(TransformersImageEncoder):
    """Frozen BLIP-2 ViT-g + Q-Former + projection; the 32 queries mean-pooled (see module doc)."""

    name = "blip2"
    default_model = "Salesforce/blip2-itm-vit-g"
    model_class = "Blip2VisionModelWithProjection"

    def _pool(self, outputs: Any):
        import torch

        queries = torch.nn.functional.normalize(outputs.image_embeds.float(), dim=-1)
        return queries.mean(dim=1)


class PooledOutputEncoder(TransformersImageEncoder):
    """An encoder whose embedding is one attribute of the model output."""

    output: str = "pooler_output"

    def _pool(self, outputs: Any):
        return getattr(outputs, self.output)


# name, default checkpoint, model class, output attribute (what the embedding is)
_POOLED = (
    ("clip", "openai/clip-vit-base-patch32", "CLIPVisionModelWithProjection", "image_embeds"),
    ("siglip", "google/siglip-base-patch16-224", "SiglipVisionModel", "pooler_output"),
    ("dinov2", "facebook/dinov2-small", "Dinov2Model", "pooler_output"),  # CLS after layer norm
)
for _name, _default, _cls, _output in _POOLED:
    register_encoder(_name)(type(f"{_cls}Encoder", (PooledOutputEncoder,), {
        "name": _name, "default_model": _default, "model_class": _cls, "output": _output,
        "__doc__": f"{_cls}.{_output} of ``{_default}`` (or a local checkpoint).",
    }))
