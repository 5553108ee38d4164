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
from detector_fixtures import synthetic_yolo_onnx
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
