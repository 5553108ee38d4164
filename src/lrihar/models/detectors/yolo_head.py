"""Decoding a YOLO head's raw outputs in numpy, for the few anchors that pass the threshold.

An exported ultralytics detector ends in its box decoding: a softmax over 16 distance bins
(DFL) for each side of every anchor, then the distances turned into boxes, for all 2100 anchors
of a 320 px input. ``export-runtime --detector`` cuts the graph before that
(:mod:`lrihar.deploy.onnx_head`): the model returns the bins and the class scores, and the
``yolo`` backend decodes only the anchors whose score passes the threshold, usually a handful.
On 2 CPU cores that saves ~1-2 ms of 16 per frame (docs/benchmarks.md#detector_latencypy).
Arithmetic as ultralytics' ``make_anchors``, ``DFL`` and ``dist2bbox``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEAD_KEY = "lrihar.head"  # ONNX metadata: "dfl" for a graph cut before decoding
STRIDES_KEY = "lrihar.strides"
REG_MAX_KEY = "lrihar.reg_max"
OUTPUT_NAMES = ("box_bins", "scores")  # the cut graph's outputs, in this order


def anchor_grid(imgsz: tuple[int, int], strides: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres (2, A) in grid units and each anchor's stride (A,), level after level."""
    points, per_anchor = [], []
    for s in strides:
        h, w = int(imgsz[0] // s), int(imgsz[1] // s)
        y, x = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                           indexing="ij")
        points.append(np.stack([x.ravel(), y.ravel()]))
        per_anchor.append(np.full(h * w, s, np.float32))
    return np.concatenate(points, axis=1), np.concatenate(per_anchor)


def decode_bins(bins: np.ndarray, points: np.ndarray, strides: np.ndarray, reg_max: int) -> np.ndarray:
    """Boxes (k, 4) xyxy in input pixels from the bins (4 * reg_max, k) of k anchors."""
    d = bins.reshape(4, reg_max, -1).astype(np.float32)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    ltrb = (e * np.arange(reg_max, dtype=np.float32)[None, :, None]).sum(axis=1) / e.sum(axis=1)
    return (np.concatenate([points - ltrb[:2], points + ltrb[2:]]) * strides).T
