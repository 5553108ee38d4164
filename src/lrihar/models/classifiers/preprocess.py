"""Crop -> network input, the same in training (validation, teacher, parity) and in deployment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_pixels(crops: Sequence[np.ndarray], size: int, mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
    """RGB uint8 crops squashed to ``size``×``size`` (the whole hand kept, as the template matcher
    does), scaled to 0-1 and normalised by ``mean`` / ``std``: NCHW float32.

    Example:
        >>> to_pixels([np.zeros((40, 30, 3), np.uint8)], 32, (0.5,) * 3, (0.5,) * 3).shape
        (1, 3, 32, 32)
    """
    import cv2

    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    out = np.empty((len(crops), 3, size, size), dtype=np.float32)
    for i, crop in enumerate(crops):
        img = np.ascontiguousarray(crop)
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = ((img.astype(np.float32) / 255.0 - m) / s).transpose(2, 0, 1)
    return out
