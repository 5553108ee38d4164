"""Ground truth read from the annotation files alone: COCO JSON, YOLO labels; clear errors."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.evaluate.groundtruth import load_ground_truth


def _coco(path, images, annotations, categories=({"id": 1, "name": "hand"},)):
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": list(categories)}))
    return path


def test_coco_sizes_and_boxes_come_from_the_json_when_the_images_are_elsewhere(tmp_path):
    gt = _coco(tmp_path / "gt.json",
               [{"id": 1, "file_name": "sub/a.jpg", "width": 640, "height": 480},
                {"id": "b", "file_name": "b.jpg", "width": 320, "height": 240}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}])
    truth = load_ground_truth(gt, tmp_path / "not-here")  # no image exists anywhere
    a, b = str(tmp_path / "not-here" / "sub" / "a.jpg"), str(tmp_path / "not-here" / "b.jpg")
    assert truth.images == [a, b]
    assert truth.sizes == {a: (640, 480), b: (320, 240)}
    assert truth.boxes[a].tolist() == [[10, 20, 40, 60]]  # xywh -> xyxy; the crowd region left out
    assert truth.boxes[b].shape == (0, 4) and truth.labels[a] == ["hand"]
    assert truth.by_name() == {"a.jpg": a, "b.jpg": b}
    with pytest.raises(BadInputError, match=r"2 of 2 ground-truth images not found .*--images"):
        truth.require_images()


def test_ten_thousand_image_coco_loads_in_seconds_without_opening_an_image(tmp_path):
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"frames/{i:05d}.jpg", "width": 1920, "height": 1080}
              for i in range(10_000)]
    anns = [{"id": k, "image_id": int(rng.integers(10_000)), "category_id": 1 + k % 2,
             "bbox": [float(v) for v in rng.uniform(0, 500, 4)], "area": 1.0, "iscrowd": 0}
            for k in range(25_000)]
    gt = _coco(tmp_path / "big.json", images, anns, [{"id": 1, "name": "left"}, {"id": 2, "name": "right"}])
    start = time.perf_counter()
    truth = load_ground_truth(gt, tmp_path / "images-are-on-another-machine")
    elapsed = time.perf_counter() - start
    assert len(truth.images) == 10_000 and sum(len(b) for b in truth.boxes.values()) == 25_000
    assert truth.classes == ["left", "right"]
    assert elapsed < 10, f"loading took {elapsed:.1f} s"


BAD = [
    ({"annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]},
     r"annotations\[0\] \(id 7\): 'bbox' must be 4 finite numbers"),
    ({"annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, math.nan, 4]}]},
     r"annotations\[0\] \(id 7\): 'bbox' must be 4 finite numbers"),
    ({"annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4]}]},
     r"negative width or height"),
    ({"annotations": [{"id": 7, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]}]},
     r"'image_id' 99 is not the id of any image"),
    ({"annotations": [{"id": 7, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}]},
     r"'category_id' 5 is not the id of any category"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "height": 10}]},
     r"images\[0\] \(id 1\): 'width' must be a positive number, got None"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                 {"id": 1, "file_name": "b.jpg", "width": 10, "height": 10}]},
     r"images\[1\] \(id 1\): the id is used twice"),
    ({"images": [{"id": 1, "width": 10, "height": 10}]}, r"'file_name' must be a non-empty string"),
    ({"images": 3}, r"'images' must be a list"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_coco_records_are_named(tmp_path, change, message):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "annotations": [],
           "categories": [{"id": 1, "name": "hand"}]} | change
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))  # json writes NaN as NaN, which Python's reader accepts
    with pytest.raises(BadInputError, match=message) as err:
        load_ground_truth(path)
    assert str(path) in str(err.value)


def test_many_bad_records_are_listed_then_counted(tmp_path):
    anns = [{"id": k, "image_id": 1, "category_id": 1, "bbox": "x"} for k in range(8)]
    gt = _coco(tmp_path / "gt.json", [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], anns)
    with pytest.raises(BadInputError, match=r"annotations\[4\] \(id 4\).* \(and 3 more\)"):
        load_ground_truth(gt)


def test_bad_ground_truth_exits_2_from_the_cli(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "lrihar.yaml").write_text("{}")
    gt = _coco(tmp_path / "gt.json", [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 9}], [])
    assert main(["evaluate", "-p", str(tmp_path / "p"), "--gt", str(gt)]) == 2
    assert "images[0] (id 1): 'width' must be a positive number" in capsys.readouterr().err


def test_yolo_labels_in_sub_folders_with_sizes_from_headers(tmp_path):
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(root / "images" / "train" / "a.jpg")
    Image.new("RGB", (50, 40)).save(root / "images" / "val" / "b.png")
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.3 0.1 0.3 0.3\n")
    (root / "data.yaml").write_text("names: {0: left, 1: right}\n")
    truth = load_ground_truth(root)
    a, b = str(root / "images" / "train" / "a.jpg"), str(root / "images" / "val" / "b.png")
    assert truth.images == [a, b] and truth.sizes == {a: (200, 100), b: (50, 40)}
    assert truth.boxes[a].tolist() == [pytest.approx([80, 30, 120, 70]), pytest.approx([20, 10, 60, 30])]
    assert truth.labels[a] == ["right", "left"] and truth.boxes[b].shape == (0, 4)  # polygon -> its box
    (root / "labels" / "val" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(BadInputError, match=r"b\.txt line 2: class 3 is not in data\.yaml's 2 names"):
        load_ground_truth(root)


def test_sweep_names_missing_images_before_loading_a_detector(tmp_path, capsys):
    gt = _coco(tmp_path / "gt.json", [{"id": 1, "file_name": "gone.jpg", "width": 64, "height": 64}],
               [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    code = main(["sweep", "--gt", str(gt), "--detector", "no-such-backend", "-o", str(tmp_path / "s"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "1 of 1 ground-truth images not found" in err and "gone.jpg" in err
