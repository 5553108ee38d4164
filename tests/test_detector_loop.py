"""The detector loop around training: sweeps of the trained detector equal reruns, and the
frames `lrihar suggest` picks, once corrected and imported, are what the next training learns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_frames
from detector_fixtures import ColourBoxDetector, MisplacesTheRightHand, synthetic_yolo_onnx
from lrihar.cli import main
from lrihar.evaluate.metrics import detection_scores
from lrihar.models.detectors import create_detector
from lrihar.sources import read_image

# -- sweeps: every grid point equals a rerun there ---------------------------------------------


def _coco(path: Path, files: list[Path], boxes: list[np.ndarray]) -> Path:
    """A COCO ground truth for ``files`` with ``boxes`` (xyxy) each."""
    images, annotations = [], []
    for i, (f, b) in enumerate(zip(files, boxes, strict=True), 1):
        h, w = read_image(f).shape[:2]
        images.append({"id": i, "file_name": f.name, "width": w, "height": h})
        for x1, y1, x2, y2 in np.asarray(b, float).reshape(-1, 4):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "hand"}]}))
    return path


def _grid_rows(out: Path) -> list[dict]:
    with (out / "sweep.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_of_the_yolo_backend_equals_reruns_at_every_grid_point(tmp_path):
    """`lrihar sweep --detector yolo=model.onnx`: the model runs once (no NMS), yet each of the
    100 (confidence, NMS IoU) points scores what the backend returns when run there."""
    onnx = synthetic_yolo_onnx(tmp_path / "syn.onnx")
    files = []
    for i, frame in enumerate([*synthetic_frames(3, 160, 120), *synthetic_frames(2, 96, 128, seed=1)]):
        files.append(tmp_path / f"f{i}.png")
        Image.fromarray(frame).save(files[-1])
    # ground truth: some of the model's own confident boxes, shifted, so scores vary over the grid
    probe = create_detector("yolo", model=str(onnx), box_threshold=0.5, nms_iou=0.5)
    gts = [np.asarray(probe(read_image(f)).xyxy[::2], float) + 3.0 for f in files]
    gt = _coco(tmp_path / "gt.json", files, gts)
    out = tmp_path / "sweep"
    code = main(["sweep", "--gt", str(gt), "--detector", f"yolo={onnx}", "-o", str(out), "--no-progress"])
    assert code == 0
    rows = _grid_rows(out)
    assert len(rows) == 10 * 10 * 2 and {r["threshold_2_name"] for r in rows} == {"nms_iou"}
    frames = [read_image(f) for f in files]
    reruns: dict[tuple[str, str], list[np.ndarray]] = {}
    differs = 0
    for r in rows:
        pair = (r["threshold_1"], r["threshold_2"])
        if pair not in reruns:
            det = create_detector("yolo", model=str(onnx), box_threshold=float(pair[0]),
                                  nms_iou=float(pair[1]))
            reruns[pair] = [det(frame).xyxy for frame in frames]
        s = detection_scores(reruns[pair], gts, float(r["iou"]))
        assert int(r["predictions"]) == s.pred_total, r
        assert float(r["recall"]) == pytest.approx(s.recall, abs=1e-5), r
        assert float(r["accuracy"]) == pytest.approx(s.accuracy, abs=1e-5), r
        differs += float(r["threshold_2"]) > 0.7  # the backend's default NMS IoU
    assert differs  # points past the default NMS IoU are checked too (they fail with NMS baked in)
    counts = {int(r["predictions"]) for r in rows if r["threshold_1"] == rows[0]["threshold_1"]}
    assert len(counts) > 3  # NMS IoU changes what is kept: the grid is not flat


def test_sweep_of_mediapipe_merges_views_offline(tmp_path, hands_dev):
    """mediapipe-hands merges the boxes of its views (full frame, zoomed out) at its own NMS IoU;
    the sweep runs it with none, so at its lowest confidence each NMS IoU equals a rerun."""
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.run_sweep import DetectorSpec, run_sweep

    truth = load_ground_truth(hands_dev / "mmpose_hands" / "coco.json")
    keep = truth.images[:8]
    truth.images[:] = keep
    grid_b = [0.3, 0.5, 0.7, 1.0]
    result = run_sweep([DetectorSpec("mediapipe-hands")], truth, tmp_path / "s", grid_a=[0.05], grid_b=grid_b)
    rows = result.rows["mediapipe-hands"]
    frames = [read_image(Path(p)) for p in keep]
    gts = [truth.boxes[p] for p in keep]
    totals = []
    for b in grid_b:
        det = create_detector("mediapipe-hands", box_threshold=0.05, nms_iou=b)
        boxes = [det(frame).xyxy for frame in frames]
        det.reset()
        for t in (0.3, 0.4):
            [row] = [r for r in rows if r["nms_iou"] == b and r["iou"] == t]
            s = detection_scores(boxes, gts, t)
            assert (row["predictions"], row["recall"], row["accuracy"]) == (s.pred_total, s.recall,
                                                                            s.accuracy)
        totals.append(sum(len(x) for x in boxes))
    assert totals[-1] > totals[0]  # both views found some hand: merging them matters


# -- the correction loop: suggest -> a person's corrections -> import -> train-detector ---------


FlawedDetector = MisplacesTheRightHand  # the cheap detector's typical mistake (detector_fixtures)


def _label_boxes(label_file: Path, width: int, height: int) -> np.ndarray:
    """xyxy pixels of a YOLO label file."""
    lines = label_file.read_text().splitlines()
    rows = [[float(v) for v in line.split()[1:]] for line in lines if line.strip()]
    cxcywh = np.array(rows, float).reshape(-1, 4) * [width, height, width, height]
    return np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)


def _same_boxes(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = (np.asarray(x, float).reshape(-1, 4) for x in (a, b))
    key = lambda x: x[np.lexsort(x.T[::-1])]  # noqa: E731
    return a.shape == b.shape and np.allclose(key(a), key(b), atol=0.6)


def test_corrections_of_the_suggested_frames_are_what_the_next_training_learns(tmp_path):
    """`lrihar suggest` picks the frames with the weak, misplaced boxes; a person's COCO file for
    them goes in through `lrihar import`; the next `train-detector` set holds the drawn boxes and
    not the ones the import marked wrong, on those frames only."""
    pytest.importorskip("ultralytics")
    from detector_fixtures import annotated_project, draw_frames

    truth = draw_frames(tmp_path / "frames", 8)  # odd frames hold a second hand, in the right half
    project = annotated_project(tmp_path / "p", tmp_path / "frames", detector=FlawedDetector())
    root = str(project.root)
    picks_file = tmp_path / "picks.json"
    assert main(["suggest", "-p", root, "-n", "2", "-o", str(picks_file), "--no-progress"]) == 0
    picks = json.loads(picks_file.read_text())
    picked = {Path(p["name"]).name: p["file"] for p in picks}
    assert len(picked) == 2 and all(int(n[5:7]) % 2 for n in picked)  # frames with a misplaced box
    assert all(p["reasons"] == ["low confidence: weakest box 0.20"] for p in picks)

    # the person draws every hand of the picked frames in a COCO tool, on the files suggest named
    files = [tmp_path / "frames" / name for name in picked]
    coco = _coco(tmp_path / "corrections.json", files, [np.array(truth[f.name]) for f in files])
    doc = json.loads(coco.read_text())
    for image in doc["images"]:
        image["file_name"] = picked[image["file_name"]]
    coco.write_text(json.dumps(doc))
    assert main(["import", str(coco), "-p", root, "--from", "coco"]) == 0
    counts = project.store.counts()
    assert counts["detections_rejected"] == 2 and counts["detections"] == 12 + 2  # 2 drawn, 2 wrong

    code = main(["train-detector", "-p", root, "--arch", "yolo11n", "--epochs", "1", "--imgsz", "64",
                 "--batch", "4", "--workers", "0", "--no-plots", "--name", "corrected"])
    assert code == 0
    labels = {f.stem: f for f in (project.root / "models/detector/corrected/data/labels").rglob("*.txt")}
    stored = {Path(r.frame_name).name: r for r in project.store.detections(include_rejected=True)}
    assert len(labels) == 8
    for name, boxes in truth.items():
        from lrihar.crops import frame_stem

        got = _label_boxes(labels[frame_stem(stored[name])], 96, 80)
        if name in picked:  # corrected: exactly the hands the person drew
            assert _same_boxes(got, boxes), name
        else:  # untouched: what the detector stored, the misplaced box included
            detected = [r.xyxy for r in project.store.detections() if Path(r.frame_name).name == name]
            assert _same_boxes(got, detected), name
            assert _same_boxes(got, boxes) == (len(boxes) == 1), name


def test_a_hand_drawn_on_a_frame_the_detector_found_empty_is_imported(tmp_path):
    from detector_fixtures import annotated_project, draw_frames

    truth = draw_frames(tmp_path / "frames", 3)
    project = annotated_project(tmp_path / "p", tmp_path / "frames", detector=MissesOneFrame(nothing_on=0))
    picks_file = tmp_path / "picks.json"
    assert main(["suggest", "-p", str(project.root), "-n", "1", "-o", str(picks_file), "--no-progress"]) == 0
    [pick] = json.loads(picks_file.read_text())
    assert pick["reasons"] == ["no box found"]
    image = tmp_path / "frames" / Path(pick["name"]).name
    coco = _coco(tmp_path / "c.json", [image], [np.array(truth[image.name])])
    doc = json.loads(coco.read_text())
    doc["images"][0]["file_name"] = pick["file"]
    coco.write_text(json.dumps(doc))
    assert main(["import", str(coco), "-p", str(project.root), "--from", "coco"]) == 0
    drawn = [r for r in project.store.detections() if r.backend == "manual"]
    assert _same_boxes([r.xyxy for r in drawn], truth[image.name])


class MissesOneFrame(ColourBoxDetector):
    """Finds nothing at all on frame ``nothing_on`` (as mediapipe misses a gloved hand)."""

    def __init__(self, nothing_on: int) -> None:
        super().__init__()
        self.nothing_on, self.calls = nothing_on, 0

    def detect_batch(self, images):
        out = super().detect_batch(images)
        for i in range(len(out)):
            if self.calls == self.nothing_on:
                out[i] = out[i][np.zeros(len(out[i]), bool)]
            self.calls += 1
        return out
