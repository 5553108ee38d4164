"""Eq. 3 (recall) and eq. 4 (accuracy) on hand-worked cases, exact at the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from lrihar.boxes import box_iou
from lrihar.evaluate.metrics import detection_scores

A = [0, 0, 10, 10]


def boxes(*rows):
    return np.array(rows, dtype=float).reshape(-1, 4)


@pytest.mark.parametrize(
    ("pred", "gt", "iou"),
    [
        (A, A, 1.0),
        (A, [5, 0, 15, 10], 50 / 150),  # half overlap: 50 / (100 + 100 - 50)
        (A, [0, 0, 10, 4], 0.4),  # contained: 40 / 100
        (A, [20, 20, 30, 30], 0.0),
        (A, [10, 0, 20, 10], 0.0),  # touching edges
    ],
)
def test_box_iou_hand_computed(pred, gt, iou):
    assert box_iou(boxes(pred), boxes(gt))[0, 0] == pytest.approx(iou)


@pytest.mark.parametrize(
    ("threshold", "hit"),
    [(0.39, True), (0.4, True), (0.41, False)],  # IoU exactly 0.4: a hit at T_IoU = 0.4
)
def test_threshold_edge_is_inclusive(threshold, hit):
    r = detection_scores([boxes(A)], [boxes([0, 0, 10, 4])], threshold)
    assert r.recall == (1.0 if hit else 0.0)
    assert r.accuracy == (1.0 if hit else 0.0)


def test_iou_a_quarter_exactly_at_and_above_threshold():
    # pred [0,0,10,10] vs gt [0,0,10,2.5]... IoU = 25/100 = 0.25
    pred, gt = [boxes(A)], [boxes([0, 0, 10, 2.5])]
    assert detection_scores(pred, gt, 0.25).recall == 1.0
    assert detection_scores(pred, gt, 0.26).recall == 0.0


def test_recall_over_gt_accuracy_over_predictions():
    # image 1: two GT, one matched; one extra false prediction
    # image 2: one GT matched by two duplicate predictions
    preds = [boxes(A, [50, 50, 60, 60]), boxes([100, 100, 120, 120], [101, 100, 121, 120])]
    gts = [boxes(A, [30, 0, 40, 10]), boxes([100, 100, 120, 120])]
    r = detection_scores(preds, gts, 0.3)
    assert (r.gt_hit, r.gt_total) == (2, 3)
    assert (r.pred_hit, r.pred_total) == (3, 4)  # duplicates both count as accurate (eq. 4)
    assert r.recall == pytest.approx(2 / 3)
    assert r.accuracy == pytest.approx(3 / 4)


def test_boxes_only_match_within_their_own_image():
    r = detection_scores([boxes(A), boxes()], [boxes(), boxes(A)], 0.3)
    assert (r.recall, r.accuracy) == (0.0, 0.0)


def test_no_predictions_and_no_ground_truth():
    none = detection_scores([boxes()], [boxes(A)], 0.3)
    assert (none.recall, none.pred_total, none.accuracy) == (0.0, 0, 1.0)
    no_gt = detection_scores([boxes(A)], [boxes()], 0.3)
    assert (no_gt.accuracy, no_gt.gt_total, no_gt.recall) == (0.0, 0, 1.0)


def test_mismatched_image_lists_are_refused():
    with pytest.raises(ValueError, match="2 prediction lists but 1"):
        detection_scores([boxes(), boxes()], [boxes()], 0.3)
