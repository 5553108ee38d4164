"""Box geometry shared by every stage: IoU of ``xyxy`` boxes and padded crop boxes."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of ``xyxy`` boxes (supervision's ``box_iou_batch``).

    Example:
        >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]]).round(3).tolist()
        [[0.333]]
    """
    import supervision as sv

    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return sv.box_iou_batch(a, b)


def padded_box(xyxy: tuple[float, float, float, float], padding: float, width: int,
               height: int) -> tuple[int, int, int, int]:
    """``xyxy`` grown by ``padding`` × its size on each side, rounded and clipped to the image."""
    x1, y1, x2, y2 = xyxy
    dx, dy = (x2 - x1) * padding, (y2 - y1) * padding
    return (max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy))),
            min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy))))


def crop(image: np.ndarray, xyxy, padding: float = 0.0) -> np.ndarray:
    """The part of ``image`` inside the box ``xyxy`` grown by ``padding`` (:func:`padded_box`);
    empty (size 0) when the box has no area inside the image."""
    x1, y1, x2, y2 = padded_box(tuple(xyxy), padding, image.shape[1], image.shape[0])
    return image[y1:y2, x1:x2]
