"""Every registered detector honours the Detections contract; loading errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from conftest import load_gt, synthetic_frames
from lrihar.errors import BadInputError, ModelLoadError
from lrihar.evaluate.metrics import detection_scores
from lrihar.models.detectors import create_detector, list_detectors
from lrihar.sources import read_image


@pytest.fixture
def detector_factory(tiny_grounding_dino, tiny_owlv2, request):
    def build(name: str):
        if name == "yolo":  # trained once per session, only when asked for
            return create_detector(name, model=str(request.getfixturevalue("tiny_yolo")["onnx"]),
                                   box_threshold=0.0)
        if name == "grounding-dino":
            return create_detector(name, model=str(tiny_grounding_dino), box_threshold=0.05,
                                   text_threshold=0.0, batch_size=2)
        if name == "owlv2":
            return create_detector(name, model=str(tiny_owlv2), box_threshold=0.0, batch_size=2)
        return create_detector(name)

    return build


def test_registry_lists_the_builtin_backends():
    assert {"grounding-dino", "owlv2", "mediapipe-hands", "yolo"} <= set(list_detectors())


@pytest.mark.parametrize("name", list_detectors())
def test_detection_contract(name, detector_factory):
    detector = detector_factory(name)
    frames = [synthetic_frames(2, 160, 120)[0], synthetic_frames(2, 96, 128, seed=1)[1]]
    results = detector.detect_batch(frames)
    assert len(results) == len(frames)
    for frame, dets in zip(frames, results, strict=True):
        assert isinstance(dets, sv.Detections)
        h, w = frame.shape[:2]
        assert dets.xyxy.shape == (len(dets), 4)
        assert dets.confidence is not None and dets.confidence.shape == (len(dets),)
        assert np.all((dets.confidence >= 0) & (dets.confidence <= 1))
        assert np.all(dets.class_id == 0)
        assert len(dets.data["class_name"]) == len(dets)
        if len(dets):
            assert np.all(dets.xyxy[:, :2] >= 0) and np.all(dets.xyxy[:, 2] <= w)
            assert np.all(dets.xyxy[:, 3] <= h) and np.all(dets.xyxy[:, 2:] >= dets.xyxy[:, :2])
    # a single-image call equals the batched call (same-size frames, as in a video)
    same_size = synthetic_frames(2, 160, 120)
    batched = detector.detect_batch(same_size)
    single = detector(same_size[1])
    assert len(single) == len(batched[1])
    assert np.allclose(single.xyxy, batched[1].xyxy, atol=1e-2)
    assert isinstance(detector.describe(), dict) and detector.describe()["backend"] == name


def test_transformer_detectors_find_boxes_at_low_threshold(detector_factory):
    frame = synthetic_frames(1)[0]
    for name in ("grounding-dino", "owlv2"):
        dets = detector_factory(name)(frame)
        assert len(dets) > 0, name  # random weights, threshold ~0: every query passes
        assert set(dets.data["class_name"]) <= {"hand", "hand ."} | {str(x) for x in dets.data["class_name"]}


def test_grounding_dino_thresholds_filter(tiny_grounding_dino):
    frame = synthetic_frames(1)[0]
    loose = create_detector("grounding-dino", model=str(tiny_grounding_dino), box_threshold=0.0,
                            text_threshold=0.0)(frame)
    strict = create_detector("grounding-dino", model=str(tiny_grounding_dino),
                             box_threshold=float(np.median(loose.confidence)), text_threshold=0.0)(frame)
    assert 0 < len(strict) < len(loose)
    assert strict.confidence.min() > np.median(loose.confidence) - 1e-6


def test_unknown_backend_lists_the_choices():
    with pytest.raises(BadInputError, match="unknown detector 'yolo-world'; choose one of: grounding-dino"):
        create_detector("yolo-world")


def test_unknown_option_is_bad_input():
    with pytest.raises(BadInputError, match="unexpected keyword argument 'tile_count'"):
        create_detector("mediapipe-hands", tile_count=3)


def test_missing_model_directory_gives_an_actionable_message(tmp_path):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelLoadError, match="Pass a local directory saved with save_pretrained"):
        create_detector("grounding-dino", model=str(tmp_path / "empty-model"))


def test_hub_id_offline_gives_an_actionable_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="IDEA-Research/grounding-dino-tiny"):
        create_detector("grounding-dino")


def test_mediapipe_keeps_landmarks_and_handedness(hands_dev):
    images = load_gt(hands_dev / "mmpose_hands")
    detector = create_detector("mediapipe-hands")
    found = 0
    for im in images[:8]:
        dets = detector(read_image(hands_dev / "mmpose_hands" / im["file"]))
        assert dets.data["landmarks"].shape == (len(dets), 21, 3)
        assert dets.data["world_landmarks"].shape == (len(dets), 21, 3)
        assert set(dets.data["handedness"]) <= {"Left", "Right"}
        for box, lm in zip(dets.xyxy, dets.data["landmarks"], strict=True):
            # landmarks lie inside their (padded) box
            assert np.all(lm[:, 0] >= box[0] - 1) and np.all(lm[:, 0] <= box[2] + 1)
            assert np.all(lm[:, 1] >= box[1] - 1) and np.all(lm[:, 1] <= box[3] + 1)
        found += len(dets)
    assert found >= 6


@pytest.mark.parametrize(
    # Floors measured on these sets (docs/benchmarks.md) minus a margin for library drift.
    ("dataset", "min_recall", "min_accuracy"),
    [("mmpose_hands", 0.45, 0.90), ("gloves_roboflow", 0.50, 0.93)],
)
def test_mediapipe_recall_floor_on_real_hands(hands_dev, dataset, min_recall, min_accuracy):
    images = load_gt(hands_dev / dataset)
    detector = create_detector("mediapipe-hands")
    preds = [detector(read_image(hands_dev / dataset / im["file"])).xyxy for im in images]
    scores = detection_scores(preds, [np.array(im["hands"]) for im in images], 0.3)
    assert scores.recall >= min_recall
    assert scores.accuracy >= min_accuracy


def test_grounding_dino_bf16_and_smaller_resize(tiny_grounding_dino):
    frames = synthetic_frames(2, 160, 120)
    kw = {"model": str(tiny_grounding_dino), "box_threshold": 0.3, "text_threshold": 0.1}
    fp32 = create_detector("grounding-dino", **kw).detect_batch(frames)
    bf16 = create_detector("grounding-dino", precision="bf16", **kw).detect_batch(frames)
    for a, b in zip(fp32, bf16, strict=True):  # bf16 keeps ~3 significant digits
        assert abs(len(a) - len(b)) <= 2 and a.confidence.dtype == np.float32
    small = create_detector("grounding-dino", short_side=48, **kw)
    assert small.describe()["short_side"] == 48 and len(small.detect_batch(frames)) == 2
    with pytest.raises(BadInputError, match="precision"):
        create_detector("grounding-dino", precision="int4", **kw)
