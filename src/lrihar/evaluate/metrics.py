"""The paper's detection metrics at an IoU threshold T_IoU (shared/PAPER.md, eq. 3 and eq. 4).

recall   = (1/N_t) Σ_j [max_i IoU(P_i, GT_j) ≥ T_IoU]   over ground-truth boxes GT_j
accuracy = (1/N_p) Σ_i [max_j IoU(P_i, GT_j) ≥ T_IoU]   over predicted boxes P_i

Both are taken over all boxes of all images pooled (a box is only compared with boxes of its
own image). A box exactly at T_IoU counts as a hit. With no ground truth recall is 1.0 when
nothing was missed by definition (N_t = 0), and with no predictions accuracy is 1.0: the
counts (hits and totals) are returned too, so callers can tell these cases apart.

Example:
    >>> import numpy as np
    >>> p = [np.array([[0, 0, 10, 10]])]; g = [np.array([[0, 0, 10, 10], [50, 50, 60, 60]])]
    >>> r = detection_scores(p, g, 0.3)
    >>> (r.recall, r.accuracy)
    (0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrihar.boxes import box_iou


@dataclass(frozen=True)
class DetectionScores:
    """Eq. 3 recall and eq. 4 accuracy with the counts behind them."""

    iou_threshold: float
    recall: float
    accuracy: float
    gt_hit: int
    gt_total: int
    pred_hit: int
    pred_total: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def best_ious(preds: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction its best IoU with any ground truth, and per ground truth its best IoU."""
    iou = box_iou(preds, gts)
    per_pred = iou.max(axis=1) if iou.shape[1] else np.zeros(iou.shape[0])
    per_gt = iou.max(axis=0) if iou.shape[0] else np.zeros(iou.shape[1])
    return per_pred, per_gt


def detection_scores(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                     iou_threshold: float) -> DetectionScores:
    """Eq. 3 / eq. 4 over images: ``preds[k]`` and ``gts[k]`` are the ``xyxy`` boxes of image k."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction lists but {len(gts)} ground-truth lists")
    gt_hit = gt_total = pred_hit = pred_total = 0
    # A tiny tolerance so IoUs that equal T_IoU on paper are not lost to float rounding.
    eps = 1e-9
    for p, g in zip(preds, gts, strict=True):
        per_pred, per_gt = best_ious(p, g)
        pred_hit += int((per_pred >= iou_threshold - eps).sum())
        gt_hit += int((per_gt >= iou_threshold - eps).sum())
        pred_total += len(per_pred)
        gt_total += len(per_gt)
    return DetectionScores(
        iou_threshold=iou_threshold,
        recall=gt_hit / gt_total if gt_total else 1.0,
        accuracy=pred_hit / pred_total if pred_total else 1.0,
        gt_hit=gt_hit, gt_total=gt_total, pred_hit=pred_hit, pred_total=pred_total,
    )


def standard_metrics(preds: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                     gts: Sequence[np.ndarray]) -> dict[str, float]:
    """Class-agnostic precision / recall / F1 at IoU 0.5 and AP50, mAP50-95 (supervision).

    ``preds[k]`` are boxes of image k with confidences ``scores[k]``; ``gts[k]`` its truth.
    """
    import supervision as sv
    from supervision.metrics import F1Score, MeanAveragePrecision, Precision, Recall

    def dets(xyxy, conf=None):
        xyxy = np.asarray(xyxy, dtype=float).reshape(-1, 4)
        return sv.Detections(xyxy=xyxy, class_id=np.zeros(len(xyxy), dtype=int),
                             confidence=None if conf is None else np.asarray(conf, dtype=float))

    p = [dets(b, s) for b, s in zip(preds, scores, strict=True)]
    g = [dets(b) for b in gts]
    out: dict[str, float] = {}
    m = MeanAveragePrecision(class_agnostic=True).update(p, g).compute()
    out["ap50"], out["map50_95"] = float(m.map50), float(m.map50_95)
    out["precision@0.5"] = float(Precision().update(p, g).compute().precision_at_50)
    out["recall@0.5"] = float(Recall().update(p, g).compute().recall_at_50)
    out["f1@0.5"] = float(F1Score().update(p, g).compute().f1_50)
    return out
