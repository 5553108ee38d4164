"""The `yolo` backend: ONNX Runtime, letterbox and NMS in numpy, sweepable offline, no torch."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_frames
from detector_fixtures import synthetic_yolo_onnx
from lrihar.cli import main
from lrihar.evaluate.sweep import ImagePredictions, keep
from lrihar.models.detectors import create_detector
from lrihar.sources import read_image


@pytest.fixture(scope="module")
def synthetic_onnx(tmp_path_factory) -> Path:
    return synthetic_yolo_onnx(tmp_path_factory.mktemp("syn") / "synthetic.onnx")


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [*synthetic_frames(2, 160, 120), *synthetic_frames(2, 96, 128, seed=1),
            rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)]


def _rows(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, float).reshape(-1, 4)
    return xyxy[np.lexsort(xyxy.T[::-1])]


def test_rethresholding_offline_equals_a_rerun(synthetic_onnx):
    frames = _frames()
    lowest = create_detector("yolo", model=str(synthetic_onnx), box_threshold=0.0, nms_iou=1.0)
    preds = [ImagePredictions.from_detections(d) for d in lowest.detect_batch(frames)]
    scores = np.concatenate([p.score for p in preds])
    assert len(scores) > 300  # many overlapping boxes: NMS has work to do
    confidences = np.round(np.quantile(scores, [0.1, 0.4, 0.7, 0.9]), 4)
    checked = 0
    for c, b in itertools.product(confidences, (0.2, 0.45, 0.7, 1.0)):
        rerun = create_detector("yolo", model=str(synthetic_onnx), box_threshold=float(c), nms_iou=b)
        for frame, pred in zip(frames, preds, strict=True):
            direct = rerun(frame)
            offline = pred.xyxy[keep(pred, "score-nms", float(c), b)]
            assert np.allclose(_rows(direct.xyxy), _rows(offline), atol=1e-4), (c, b)
            checked += len(direct)
    assert checked > 100


def test_letterbox_matches_ultralytics_pixel_for_pixel(tmp_path):
    pytest.importorskip("ultralytics")
    from lrihar.models.detectors.yolo import letterbox
    from lrihar.train.offline import ultralytics_offline

    with ultralytics_offline(tmp_path / "state", torch_weights=False):
        from ultralytics.data.augment import LetterBox

        rng = np.random.default_rng(0)
        for (h, w), size in itertools.product([(80, 96), (33, 47), (480, 640), (640, 360)], (64, 320)):
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            ours = letterbox(image, (size, size))[0]
            theirs = LetterBox((size, size), auto=False, stride=32)(image=image)
            assert ours.shape == theirs.shape == (size, size, 3)
            assert np.array_equal(ours, theirs), (h, w, size)


def test_boxes_map_back_to_the_frame(synthetic_onnx):
    det = create_detector("yolo", model=str(synthetic_onnx), box_threshold=0.5)
    frame = np.zeros((120, 160, 3), np.uint8)  # letterboxed 64 px: scale 0.4, 8 px grey top and bottom
    dets = det(frame)
    assert len(dets)
    from lrihar.models.detectors.yolo import letterbox

    _, r, left, top = letterbox(frame, (64, 64))
    assert (r, left, top) == (0.4, 0, 8)
    raw = det.session.run(None, {"images": (letterbox(frame, (64, 64))[0].transpose(2, 0, 1)[None]
                                            .astype(np.float32) / 255)})[0][0].T
    best = raw[raw[:, 4].argmax()]
    expected = np.array([best[0] - best[2] / 2, best[1] - best[3] / 2 - top,
                         best[0] + best[2] / 2, best[1] + best[3] / 2 - top]) / r
    expected = np.clip(expected, 0, [160, 120, 160, 120])
    assert np.allclose(dets.xyxy[0], expected, atol=1e-3)
    assert dets.confidence[0] == pytest.approx(best[4], abs=1e-6)


def test_never_imports_torch_or_ultralytics(synthetic_onnx):
    code = ("import sys, numpy as np; from lrihar.models.detectors import create_detector; "
            f"d = create_detector('yolo', model={str(synthetic_onnx)!r}); "
            "d(np.zeros((48, 64, 3), np.uint8)); "
            "bad = [m for m in ('torch', 'ultralytics') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dynamic_batch_model_runs_frames_together(tmp_path):
    path = synthetic_yolo_onnx(tmp_path / "dyn.onnx", dynamic=True)
    det = create_detector("yolo", model=str(path), box_threshold=0.3, batch_size=3)
    assert det.dynamic_batch
    frames = synthetic_frames(3, 160, 120)
    together = det.detect_batch(frames)
    for frame, dets in zip(frames, together, strict=True):
        alone = det(frame)
        assert np.allclose(_rows(alone.xyxy), _rows(dets.xyxy), atol=1e-4)


def test_unknown_option_and_thresholds_are_bad_input(synthetic_onnx):
    from lrihar.errors import BadInputError

    with pytest.raises(BadInputError, match="unexpected keyword argument 'tiles'"):
        create_detector("yolo", model=str(synthetic_onnx), tiles=2)
    with pytest.raises(BadInputError, match="nms_iou must lie in"):
        create_detector("yolo", model=str(synthetic_onnx), nms_iou=1.5)


def test_sweep_runs_the_trained_detector_once(tiny_yolo, tmp_path):
    from lrihar.evaluate.groundtruth import GroundTruth
    from lrihar.evaluate.run_sweep import DetectorSpec, run_sweep

    images = sorted(str(p) for p in tiny_yolo["frames"].glob("*.png"))
    boxes = {p: np.array(tiny_yolo["boxes"][Path(p).name], float) for p in images}
    gt = GroundTruth(images, boxes, {p: ["hand"] * len(b) for p, b in boxes.items()}, ["hand"],
                     dict.fromkeys(images, (96, 80)))
    result = run_sweep([DetectorSpec("yolo", str(tiny_yolo["onnx"]))], gt, tmp_path / "sweep",
                       grid_a=[0.0, 0.005, 0.5], grid_b=[0.5, 1.0])
    [rows] = result.rows.values()
    assert len(rows) == 3 * 2 * 2 and {"confidence", "nms_iou"} <= set(rows[0])
    assert (tmp_path / "sweep" / "sweep.csv").is_file()


def test_annotate_with_the_trained_detector(tiny_yolo, tmp_path):
    from lrihar.project import Project

    root = tmp_path / "p"
    root.mkdir()
    (root / "lrihar.yaml").write_text("{}")
    code = main(["annotate", str(tiny_yolo["frames"]), "-p", str(root), "--detector", "yolo",
                 "--model", str(tiny_yolo["onnx"]), "--box-threshold", "0.0", "--no-progress"])
    assert code == 0
    store = Project.open(root).store
    rows = list(store.detections())
    assert rows and {r.backend for r in rows} == {"yolo"} and {r.label for r in rows} == {"hand"}
    [run] = store.runs()
    assert json.loads(run["config"])["detector"]["sha256"] == tiny_yolo["export"].sha256
    assert read_image(Path(rows[0].frame_name)) is not None


def test_threads_spin_only_when_asked_and_only_during_a_call(synthetic_onnx):
    def entry(det, key):
        return det.session.get_session_options().get_session_config_entry(key)

    default = create_detector("yolo", model=str(synthetic_onnx))
    assert default.describe()["spin"] is False
    assert entry(default, "session.intra_op.allow_spinning") == "0"
    spinning = create_detector("yolo", model=str(synthetic_onnx), spin=True)
    assert entry(spinning, "session.intra_op.allow_spinning") == "1"
    assert entry(spinning, "session.force_spinning_stop") == "1"  # no CPU taken between frames
