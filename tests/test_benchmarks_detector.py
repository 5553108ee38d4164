"""benchmarks/detector_bootstrap.py's cross-validated operating point, on synthetic predictions whose
chosen confidence is known for every split (no model, no photos)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bootstrap.scoring import _cross_validated, _targets
from lrihar.evaluate.sweep import ImagePredictions

HAND = [10.0, 10.0, 50.0, 50.0]
ELSEWHERE = [200.0, 200.0, 240.0, 240.0]  # overlaps no hand
DUPLICATE = [11.0, 11.0, 51.0, 51.0]  # IoU 0.905 with HAND: NMS 0.7 drops it


def _set(n: int, extra: dict[int, list[tuple[list[float], float]]]):
    """n images with one hand each, found at score 0.9; ``extra`` adds (box, score) to some images."""
    preds, gts, classes = [], [], []
    for i in range(n):
        boxes = [(HAND, 0.9), *extra.get(i, [])]
        preds.append(ImagePredictions(np.array([b for b, _ in boxes]), np.array([s for _, s in boxes])))
        gts.append(np.array([HAND]))
        classes.append(["gloved_hand" if i % 2 else "bare_hand"])
    return preds, gts, classes


def test_confidence_is_chosen_on_the_other_half():
    # One false box in 20 images. The half holding it needs confidence 0.85 to stay at 100 %
    # accuracy; the other half takes the lowest confidence, 0.05, and when scored on the half
    # with the false box gets 10 / 11. Every split has one fold of each kind, whatever the draw.
    preds, gts, classes = _set(20, {7: [(ELSEWHERE, 0.85)]})
    cv = _cross_validated(preds, gts, classes, repeats=5, seed=3)
    assert (cv["nms_iou"], cv["folds"]) == (0.7, 10)
    for t in ("0.3", "0.4"):
        c = cv[t]
        assert (c["confidence_min"], c["confidence_max"]) == (0.05, 0.85)
        assert c["confidence_mean"] == pytest.approx(0.45)
        assert c["recall"] == c["recall_gloved_hand"] == c["recall_bare_hand"] == 1.0
        assert c["accuracy"] == pytest.approx((1 + 10 / 11) / 2, abs=1e-4)
        assert c["accuracy_min"] == pytest.approx(10 / 11, abs=1e-4)
        assert (c["folds_below_floor"], c["folds_at_default_confidence"]) == (0, 0)


def test_no_point_reaches_the_floor_falls_back_to_the_default_with_nms_on():
    # A false box above the hand's score on every image: no confidence reaches 90 % accuracy, so
    # the default 0.25 is kept; NMS 0.7 removes the duplicate box (without NMS it would count as
    # a hit under eq. 4 and raise the accuracy from 1/2 to 2/3).
    preds, gts, classes = _set(12, {i: [(ELSEWHERE, 0.95), (DUPLICATE, 0.8)] for i in range(12)})
    c = _cross_validated(preds, gts, classes, repeats=2)["0.3"]
    assert c["folds_at_default_confidence"] == 4 and c["confidence_mean"] == 0.25
    assert (c["recall"], c["accuracy"], c["folds_below_floor"]) == (1.0, 0.5, 4)


def test_targets_are_judged_at_the_cross_validated_point():
    def arm(recall: float, accuracy: float) -> dict:
        p = {"recall": recall, "accuracy": accuracy, "recall_gloved_hand": recall}
        return {"default": {"0.3": p, "0.4": p}, "best_at_90": {"0.3": p, "0.4": p},
                "cross_validated": {"0.3": p, "0.4": p}}

    arms = {"suggest-20": arm(0.9, 0.95), "random-20": arm(0.8, 0.95)}
    arms["suggest-20"]["cross_validated"]["0.3"] = {"recall": 0.9, "accuracy": 0.85,
                                                    "recall_gloved_hand": 0.9}
    res = _targets({"arms": arms})
    assert res["judged_at"].startswith("cross_validated")
    assert res["cross_validated@0.3"] is False and res["best_at_90@0.3"] is True
    assert res["cross_validated@0.4"] is True
    assert res["suggest-20 beats random-20 @0.3 (cross-validated)"] is True


def test_the_cli_loop_splits_by_source_photo_and_writes_what_a_person_would_draw(tmp_path):
    from detector_loop_cli import coco, source_photo, split_by_photo

    assert source_photo("images/IMG_12_jpg.rf.0a1b.jpg") == source_photo("x/IMG_12_jpg.rf.ff.jpg") == "IMG_12"
    entries = [{"file": f"images/p{p}_jpg.rf.{k}{p}.jpg", "width": 64, "height": 64,
                "hands": [[1, 1, 30, 30], [5, 5, 6, 40]], "hand_classes": ["gloved_hand", "bare_hand"]}
               for p in range(10) for k in range(3)]
    train, test = split_by_photo(entries, seed=0)
    photos = [{source_photo(e["file"]) for e in part} for part in (train, test)]
    assert not photos[0] & photos[1] and len(train) + len(test) == 30 and len(photos[0]) == 6
    person = coco(train[:1], tmp_path, None)  # one category, the 1 px wide box left out
    assert person["categories"] == [{"id": 1, "name": "hand"}] and len(person["annotations"]) == 1
    truth = coco(train[:1], tmp_path, ("gloved_hand", "bare_hand"))  # the ground truth keeps every box
    assert [a["category_id"] for a in truth["annotations"]] == [1, 2]
    assert person["images"][0]["file_name"] == str(tmp_path / Path(train[0]["file"]).name)
