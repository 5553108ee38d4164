"""Getting results out: COCO / CSV / JSONL dumps and crops cut on demand."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_project, tiny_gd_project
from lrihar.annotate.pipeline import annotate
from lrihar.boxes import padded_box
from lrihar.cli import main
from lrihar.crops import iter_crops
from lrihar.dump import dump_detections
from lrihar.project import Project


@pytest.fixture
def annotated(tmp_path, clip, tiny_grounding_dino):
    project = Project.open(tiny_gd_project(tmp_path / "p", tiny_grounding_dino))
    annotate(project, [str(clip)])
    return project


def test_coco_document_loads_in_pycocotools_and_resolves_frames(annotated, tmp_path, clip):
    from pycocotools.coco import COCO

    out = tmp_path / "dets.json"
    assert main(["detections", "-p", str(annotated.root), "--format", "coco", "-o", str(out)]) == 0
    coco = COCO(str(out))
    n = annotated.store.counts()["detections"]
    assert len(coco.getAnnIds()) == n and len(coco.getImgIds()) == 30
    ann = coco.loadAnns(coco.getAnnIds())[0]
    image = coco.loadImgs(ann["image_id"])[0]
    assert image["file_name"] == f"{clip.resolve()}#frame={image['frame_index']}"
    row = next(r for r in annotated.store.detections() if r.id == ann["id"])
    x1, y1, x2, y2 = row.xyxy
    assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    assert ann["score"] == pytest.approx(row.score, abs=1e-5)


def test_csv_and_jsonl_carry_every_detection(annotated):
    buf = io.StringIO()
    n = dump_detections(annotated.store, "csv", buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(rows) == n == annotated.store.counts()["detections"]
    assert rows[0]["backend"] == "grounding-dino" and float(rows[0]["x2"]) > float(rows[0]["x1"])
    buf = io.StringIO()
    dump_detections(annotated.store, "jsonl", buf)
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(records) == n and {"timestamp", "score", "source", "landmarks"} <= set(records[0])


def test_detections_to_stdout_and_bad_format(annotated, capsys):
    assert main(["detections", "-p", str(annotated.root), "-f", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == annotated.store.counts()["detections"]
    assert main(["detections", "-p", str(annotated.root), "-f", "xml"]) == 2
    assert "unknown format 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("box", "padding", "expected"),
    [((10, 10, 20, 30), 0.0, (10, 10, 20, 30)),
     ((10, 10, 20, 30), 0.1, (9, 8, 21, 32)),
     ((0.5, 0, 60, 48), 0.5, (0, 0, 64, 48))],  # clipped to the 64×48 image
)
def test_padded_box(box, padding, expected):
    assert padded_box(box, padding, 64, 48) == expected


def test_crops_are_cut_from_the_original_frames(annotated, tmp_path):
    crops = list(iter_crops(annotated.store, padding=0.0))
    assert len(crops) == annotated.store.counts()["detections"]
    for row, crop in crops[:20]:
        x1, y1, x2, y2 = padded_box(row.xyxy, 0.0, row.width, row.height)
        assert crop.shape == (y2 - y1, x2 - x1, 3)
    out = tmp_path / "crops"
    assert main(["crops", str(out), "-p", str(annotated.root), "--padding", "0.1"]) == 0
    files = sorted(out.rglob("*.jpg"))
    assert len(files) == len(crops)
    assert np.asarray(Image.open(files[0])).ndim == 3


def test_crops_from_image_folders_and_a_moved_file_is_reported(tmp_path, hands_dev):
    import shutil

    images = tmp_path / "imgs"
    shutil.copytree(hands_dev / "mmpose_hands" / "images", images)
    project = Project.open(make_project(tmp_path / "p"))
    annotate(project, [str(images)])
    n = project.store.counts()["detections"]
    victim = next(project.store.detections()).frame_name
    lost = sum(1 for r in project.store.detections() if r.frame_name == victim)
    (images / victim.rsplit("/", 1)[-1]).unlink()
    errors: list = []
    assert len(list(iter_crops(project.store, errors=errors))) == n - lost
    assert len(errors) == 1 and "unreadable image" in errors[0].message
