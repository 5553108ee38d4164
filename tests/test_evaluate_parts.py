"""`lrihar evaluate` / `report` per ground-truth class and per source (eq. 3 / eq. 4 with their n).

The scene is drawn, not mocked: red rectangles on grey PNGs in two folders (two image sources),
boxed by the colour detector through the real `annotate` into a real SQLite store, then judged
against a hand-made COCO (or YOLO) ground truth with two classes. At T_IoU 0.3:

    a/a0.png  GT gloved G1 [0,0,40,40], bare B1 [150,0,190,40]; boxes P1 = G1, P2 = B1,
              P3 [60,150,90,190] (false)
    a/a1.png  GT gloved G2 [100,100,140,140]; box P4 [120,100,160,140] (IoU 1/3: a hit at 0.3,
              a miss at 0.4)
    b/b0.png  GT gloved G3 [10,10,50,50] (missed); box P5 [100,100,120,120] (false)
    b/b1.png  no GT box; box P6 [0,0,10,10] (false)

gloved: 2 of 3 boxes found; accuracy over a0, a1, b0: 3 of 5 boxes (P1, P2, P4)
bare:   1 of 1; accuracy over a0: 2 of 3
source a: 3 of 3 found, 3 of 4 boxes right; source b: 0 of 1, 0 of 2
overall:  3 of 4 found (the classes' hits add up), 3 of 6 boxes right
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import write_video
from detector_fixtures import RED, ColourBoxDetector
from lrihar.annotate.pipeline import annotate
from lrihar.cli import main
from lrihar.evaluate.groundtruth import load_ground_truth
from lrihar.evaluate.project_eval import evaluate_project
from lrihar.project import Project

SIZE = 200
PRED = {"a/a0.png": [[0, 0, 40, 40], [150, 0, 190, 40], [60, 150, 90, 190]],
        "a/a1.png": [[120, 100, 160, 140]],
        "b/b0.png": [[100, 100, 120, 120]],
        "b/b1.png": [[0, 0, 10, 10]]}
GT = {"a0.png": [([0, 0, 40, 40], "gloved_hand"), ([150, 0, 190, 40], "bare_hand")],
      "a1.png": [([100, 100, 140, 140], "gloved_hand")],
      "b0.png": [([10, 10, 50, 50], "gloved_hand")],
      "b1.png": []}
CATEGORIES = ["gloved_hand", "bare_hand"]


def _draw(path, boxes):
    image = np.full((SIZE, SIZE, 3), 70, np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = RED
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _coco(path, names=GT):
    images, anns = [], []
    for name, boxes in names.items():
        images.append({"id": len(images) + 1, "file_name": name, "width": SIZE, "height": SIZE})
        for (x1, y1, x2, y2), cls in boxes:
            anns.append({"id": len(anns) + 1, "image_id": len(images),
                         "category_id": CATEGORIES.index(cls) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CATEGORIES)]}))
    return path


@pytest.fixture
def scene(tmp_path):
    for rel, boxes in PRED.items():
        _draw(tmp_path / "footage" / rel, boxes)
    root = tmp_path / "p"
    root.mkdir()
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "hand"}]}))
    project = Project.open(root)
    footage = tmp_path / "footage"
    summary = annotate(project, [str(footage / "a"), str(footage / "b")], detector=ColourBoxDetector())
    assert summary.boxes == 6 and project.store.counts()["sources"] == 2
    (tmp_path / "gt").mkdir()
    return project, footage, _coco(tmp_path / "gt" / "coco.json")


def _rates(scores):
    return (scores["gt_hit"], scores["gt_total"], scores["pred_hit"], scores["pred_total"])


def test_recall_and_accuracy_per_class_and_per_source_in_the_json(scene, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # each table row on one line
    project, footage, gt = scene
    out = tmp_path / "eval.json"
    assert main(["evaluate", "-p", str(project.root), "--gt", str(gt), "--json", str(out)]) == 0
    det = json.loads(out.read_text())["detection"]
    assert _rates(det["paper"]["0.3"]) == (3, 4, 3, 6)
    by_class = det["by_class"]
    assert list(by_class) == CATEGORIES  # in the ground truth's order
    gloved, bare = by_class["gloved_hand"], by_class["bare_hand"]
    assert (gloved["boxes"], gloved["images"], bare["boxes"], bare["images"]) == (3, 3, 1, 1)
    assert gloved["paper"]["0.3"]["recall"] == pytest.approx(2 / 3)
    assert _rates(gloved["paper"]["0.3"]) == (2, 3, 3, 5)
    assert gloved["paper"]["0.3"]["accuracy"] == pytest.approx(3 / 5)
    assert _rates(gloved["paper"]["0.4"]) == (1, 3, 2, 5)  # P4's IoU 1/3 is a miss at 0.4
    assert bare["paper"]["0.3"]["recall"] == 1.0 and _rates(bare["paper"]["0.3"]) == (1, 1, 2, 3)
    for t in ("0.3", "0.4"):  # each ground-truth box is in exactly one class: the hits add up
        assert sum(c["paper"][t]["gt_hit"] for c in by_class.values()) == det["paper"][t]["gt_hit"]
    assert det["no_ground_truth_box"] == {"images": 1, "predictions": 1}

    a, b = str((footage / "a").resolve()), str((footage / "b").resolve())
    assert list(det["by_source"]) == [a, b]
    sa, sb = det["by_source"][a], det["by_source"][b]
    assert (sa["kind"], sa["images"], sa["ground_truth_boxes"], sa["predictions"]) == ("images", 2, 3, 4)
    assert _rates(sa["paper"]["0.3"]) == (3, 3, 3, 4) and _rates(sa["paper"]["0.4"]) == (2, 3, 2, 4)
    assert _rates(sb["paper"]["0.3"]) == (0, 1, 0, 2) and sb["paper"]["0.3"]["recall"] == 0.0

    printed = capsys.readouterr().out
    assert "detection per ground-truth class" in printed and "detection per source" in printed
    gloved_row = next(line for line in printed.splitlines() if "gloved_hand" in line)
    assert [c.strip() for c in gloved_row.split("│")[1:8]] == [
        "gloved_hand", "3", "3", "66.7% (2/3)", "60.0% (3/5)", "33.3% (1/3)", "40.0% (2/5)"]
    assert f"(sources under {footage.resolve()})" in printed
    assert any(line.startswith("│ b ") and "0.0% (0/1)" in line for line in printed.splitlines())


def test_yolo_ground_truth_gives_the_same_figures_per_class(scene, tmp_path):
    project, footage, coco = scene
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    for rel in PRED:
        name = rel.split("/")[1]
        (yolo / "images").mkdir(exist_ok=True)
        shutil.copy(footage / rel, yolo / "images" / name)
        rows = [f"{CATEGORIES.index(c)} {(x1 + x2) / 2 / SIZE} {(y1 + y2) / 2 / SIZE} {(x2 - x1) / SIZE} "
                f"{(y2 - y1) / SIZE}" for (x1, y1, x2, y2), c in GT[name]]
        (yolo / "labels" / name.replace(".png", ".txt")).write_text("\n".join(rows) + "\n")
    (yolo / "data.yaml").write_text("names: [gloved_hand, bare_hand]\n")
    from_yolo = evaluate_project(project, load_ground_truth(yolo))["detection"]["by_class"]
    from_coco = evaluate_project(project, load_ground_truth(coco))["detection"]["by_class"]
    assert list(from_yolo) == CATEGORIES
    for cls in CATEGORIES:
        for t in ("0.3", "0.4"):
            assert _rates(from_yolo[cls]["paper"][t]) == _rates(from_coco[cls]["paper"][t])


def test_report_holds_the_per_class_and_per_source_tables(scene, tmp_path):
    project, _footage, gt = scene
    html = tmp_path / "r.html"
    assert main(["report", "-p", str(project.root), "-o", str(html), "--gt", str(gt), "--no-timing"]) == 0
    text = html.read_text()
    assert "Per ground-truth class" in text and "Per source" in text
    assert "<td>gloved_hand</td>" in text and "66.67 % (2 / 3)" in text and "60.00 % (3 / 5)" in text
    md = html.with_suffix(".md").read_text()
    assert "| class | GT boxes | images | recall @ T_IoU 0.3 | accuracy @ T_IoU 0.3 |" in md
    assert "| gloved_hand | 3 | 3 | 66.67 % (2 / 3) | 60.00 % (3 / 5) | 33.33 % (1 / 3) |" in md
    assert "| bare_hand | 1 | 1 | 100.00 % (1 / 1) | 66.67 % (2 / 3) |" in md


def test_video_frames_match_ground_truth_named_video_hash_frame(tmp_path):
    frames = []
    for i in range(4):
        image = np.full((96, 128, 3), 70, np.uint8)
        image[20:60, 30 + 5 * i:70 + 5 * i] = RED
        frames.append(image)
    video = write_video(tmp_path / "clip.mp4", frames)
    root = tmp_path / "p"
    root.mkdir()
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "hand"}]}))
    project = Project.open(root)
    annotate(project, [str(video)], detector=ColourBoxDetector())
    names = {f"clip.mp4#frame={i}": [([30 + 5 * i, 20, 70 + 5 * i, 60], "gloved_hand")] for i in range(4)}
    det = evaluate_project(project, load_ground_truth(_coco(tmp_path / "gt.json", names)))["detection"]
    assert det["matched_images"] == 4
    (uri, row), = det["by_source"].items()
    assert uri == str(video.resolve()) and row["kind"] == "video" and row["images"] == 4
    assert row["paper"]["0.3"]["gt_total"] == 4 and row["paper"]["0.3"]["recall"] > 0.5
    assert det["worst_frames"] == []  # a video frame is not drawn
