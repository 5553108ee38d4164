"""Hostile names and boxes: exports and templates stay in their folder, imports refuse bad boxes.

One small project (two short videos, tiny Grounding DINO) is annotated once per module and
copied for each test, so every case runs on a fresh, real store in well under a second.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CLASSES, synthetic_frames, tiny_gd_project, write_video
from lrihar.annotate.pipeline import annotate
from lrihar.classify.pipeline import write_contact_sheets
from lrihar.cli import main
from lrihar.config import ActionClass
from lrihar.crops import frame_stem
from lrihar.errors import BadInputError
from lrihar.naming import safe_file_name
from lrihar.project import Project
from lrihar.review import edits
from lrihar.review.interchange import export_cvat, export_labelstudio

LONG = "a" * 300


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, tiny_grounding_dino) -> Path:
    """A project folder with detections (every one labelled ``CLASSES[0]``), store closed."""
    tmp = tmp_path_factory.mktemp("annotated")
    root = tiny_gd_project(tmp / "p", tiny_grounding_dino, box_threshold=0.35)
    cfg = json.loads((root / "lrihar.yaml").read_text())
    cfg["classes"] = [{"name": c} for c in CLASSES]
    (root / "lrihar.yaml").write_text(json.dumps(cfg))
    videos = [str(write_video(tmp / f"v{i}.mp4", synthetic_frames(4, seed=i))) for i in range(2)]
    project = Project.open(root)
    annotate(project, videos)
    ids = [r.id for r in project.store.detections()]
    assert len(ids) >= 4, "the tiny detector should box something in every clip"
    project.store.write_auto_labels(1, [(i, CLASSES[0], 0.9, None, None, "k", 0.5) for i in ids])
    project.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    project.store.close()
    return root


@pytest.fixture
def project_dir(annotated, tmp_path) -> Path:
    """A fresh copy of the annotated project for one test."""
    return Path(shutil.copytree(annotated, tmp_path / "project"))


def _relabel(root: Path, names: list[str]) -> None:
    """Give the stored detections these labels in turn (as labels from an older project file
    would be: exports take every stored label, not only the project's classes)."""
    project = Project.open(root)
    ids = [r.id for r in project.store.detections()]
    project.store.write_auto_labels(1, [(i, names[k % len(names)], 0.9, None, None, "k", 0.5)
                                        for k, i in enumerate(ids)])
    project.store.close()


def _files(root: Path, *leave_out: Path) -> set[str]:
    """Files under ``root``, except those under ``leave_out`` (the project: its WAL comes and goes)."""
    return {str(p) for p in root.rglob("*")
            if p.is_file() and not any(p.is_relative_to(d) for d in leave_out)}


def _dump(root: Path) -> dict[str, list]:
    """Every row of every table of the project's store, read through a fresh connection."""
    db = sqlite3.connect(root / "lrihar.db")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    dump = {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    db.close()
    return dump


# -- 4. exports and templates stay inside their folder ------------------------------------------
def _hostile(name: str, tmp_path: Path) -> str:
    # An absolute class name points into this test's own folder, so a failure writes nothing outside it.
    return str(tmp_path / "abs-target" / "x") if name == "ABS" else name


@pytest.mark.parametrize("name", ["../../x", "ABS", LONG, "../.."],
                         ids=["up-x", "absolute", "300-chars", "up-up"])
def test_hostile_class_names_cannot_make_an_export_write_outside_out(project_dir, tmp_path, name, capsys):
    name = _hostile(name, tmp_path)
    _relabel(project_dir, [name, CLASSES[1]])
    out, yolo = tmp_path / "deep" / "er" / "out", tmp_path / "deep" / "er" / "yolo"
    before = _files(tmp_path, project_dir)
    code = main(["export", str(out), "-p", str(project_dir), "-f", "imagefolder"])
    assert code == 0, capsys.readouterr().err
    assert main(["export", str(yolo), "-p", str(project_dir), "--yolo-classes", "actions"]) == 0
    assert _files(tmp_path, project_dir, out, yolo) == before  # nothing written anywhere else
    assert not (tmp_path / "abs-target").exists()
    folder = safe_file_name(name)
    assert len(folder) <= 80 and "/" not in folder and not folder.startswith(".")
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted([*CLASSES, folder])
    crops = list(out.glob(f"*/{folder}/*.jpg"))
    assert crops and all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert name in manifest["classes"] and manifest["folders"][name] == folder  # names stay data
    assert name in yaml.safe_load((yolo / "data.yaml").read_text())["names"].values()


def test_two_classes_sharing_a_folder_name_are_refused(project_dir, tmp_path, capsys):
    _relabel(project_dir, ["door open", "door_open"])
    assert main(["export", str(tmp_path / "out"), "-p", str(project_dir), "-f", "imagefolder"]) == 2
    assert "would share the folder 'door_open'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["yolo", "imagefolder", "coco", "labelstudio", "cvat"])
def test_export_into_a_file_is_bad_input(project_dir, tmp_path, fmt, capsys):
    target = tmp_path / "dataset.zip"
    target.write_bytes(b"keep me")
    assert main(["export", str(target), "-p", str(project_dir), "-f", fmt]) == 2
    assert f"{target}: is a file, not a folder" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"
    nested = target / "sub"  # a folder whose parent is a file cannot be made either
    assert main(["export", str(nested), "-p", str(project_dir), "-f", fmt]) == 2
    assert "cannot create the export folder" in capsys.readouterr().err


def _promote(root: Path, label: str, templates_root: Path) -> Path:
    """Promote the first detection, labelled ``label``, under a templates root. The project file
    cannot carry such a name, so the config is built here the way a lax loader would."""
    project = Project.open(root)
    try:
        det_id = next(project.store.detections()).id
        with project.store.transaction() as db:
            edits.set_label(db, det_id, label)
        cfg = project.config.model_copy(update={
            "classes": [ActionClass.model_construct(name=label, templates=None)],
            "classify": project.config.classify.model_copy(update={"templates": templates_root})})
        frame = np.full((120, 160, 3), 128, np.uint8)
        return edits.promote_template(project.store, cfg, det_id, frame, (10, 10, 60, 70), "ana")
    finally:
        project.store.close()


@pytest.mark.parametrize("name", ["../../x", "ABS", LONG, ".."], ids=["up-x", "absolute", "300-chars", "up"])
def test_hostile_class_names_cannot_make_template_promotion_write_outside(project_dir, tmp_path, name):
    name = _hostile(name, tmp_path)
    templates = tmp_path / "a" / "b" / "templates"  # so ../../x would still land in tmp_path
    templates.mkdir(parents=True)
    before = _files(tmp_path, project_dir)
    log_before = _dump(project_dir)["review_log"]
    with pytest.raises(BadInputError, match=r"class name|outside"):
        _promote(project_dir, name, templates)
    assert _files(tmp_path, project_dir) == before and not (tmp_path / "abs-target").exists()
    assert _dump(project_dir)["review_log"] == log_before


def test_promotion_under_a_templates_root_lands_in_the_class_folder(project_dir, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    path = _promote(project_dir, CLASSES[0], templates)
    assert path.parent == templates / CLASSES[0] and path.is_file()


def test_a_300_character_label_gets_a_contact_sheet(project_dir, tmp_path):
    _relabel(project_dir, [LONG, CLASSES[0]])
    project = Project.open(project_dir)
    paths = write_contact_sheets(project.store, tmp_path / "sheets")
    project.store.close()
    assert sorted(p.name for p in paths) == sorted([f"{safe_file_name(LONG)}.png", f"{CLASSES[0]}.png"])
    assert all(p.is_file() and p.parent == tmp_path / "sheets" for p in paths)


# -- 5. importers refuse bad boxes -----------------------------------------------------------
@pytest.mark.parametrize("value", [True, "12", None, [1], math.nan, math.inf, -math.inf, 10 ** 400],
                         ids=["bool", "text", "None", "list", "nan", "inf", "-inf", "huge-int"])
def test_box_numbers_must_be_finite_reals(value):
    with pytest.raises(BadInputError, match=r"record 7: .* not a (finite )?number"):
        edits.clip_box([value, 1, 50, 50], 100, 100, "record 7")


def _first_task(tasks: list) -> tuple[dict, dict]:
    """Turn the first task's predictions into a person's annotation; return it and its first box."""
    task = tasks[0]
    result = [dict(r, value=dict(r["value"])) for r in task["predictions"][0]["result"]]
    task["annotations"] = [{"result": result}]
    return task, task["annotations"][0]["result"][0]


def _labelstudio(root: Path, tmp: Path, edit) -> Path:
    project = Project.open(root)
    path = export_labelstudio(project, tmp / "ls")
    project.store.close()
    tasks = json.loads(path.read_text())
    _, box = _first_task(tasks)
    edit(box["value"])
    path.write_text(json.dumps(tasks))  # json writes NaN / Infinity literals, as a sloppy tool would
    return path


def _cvat(root: Path, tmp: Path, edit) -> Path:
    project = Project.open(root)
    path = export_cvat(project, tmp / "cvat")
    project.store.close()
    tree = ET.parse(path)
    edit(next(tree.getroot().iter("box")).attrib)
    tree.write(path)
    return path


def _coco(root: Path, tmp: Path, edit) -> Path:
    """A COCO file of the stored boxes (file names as exported), first bbox edited."""
    project = Project.open(root)
    rows = list(project.store.detections())
    project.store.close()
    names = sorted({f"{frame_stem(r)}.jpg" for r in rows})
    doc = {"categories": [{"id": 1, "name": CLASSES[0]}],
           "images": [{"id": i, "file_name": n, "width": 160, "height": 120} for i, n in enumerate(names)],
           "annotations": [{"id": 100 + k, "image_id": names.index(f"{frame_stem(r)}.jpg"), "category_id": 1,
                            "bbox": [r.xyxy[0], r.xyxy[1], r.xyxy[2] - r.xyxy[0], r.xyxy[3] - r.xyxy[1]]}
                           for k, r in enumerate(rows)]}
    edit(doc["annotations"][0])
    path = tmp / "coco.json"
    path.write_text(json.dumps(doc))
    return path


def _set(**values):
    return lambda record: record.update(values)


def _bbox(*values):
    return lambda a: a.update(bbox=list(values))


BAD_IMPORTS = [
    # tool, file maker, edit, the record and reason the message must name
    ("labelstudio", _labelstudio, _set(x=math.inf), r"task 0 .*result 0 id 'd\d+'.*Infinity is not a number"),
    ("labelstudio", _labelstudio, _set(y=-math.inf), r"task 0 .*-Infinity is not a number"),
    ("labelstudio", _labelstudio, _set(width=math.nan), r"task 0 .*NaN is not a number"),
    ("labelstudio", _labelstudio, _set(x="12"), r"task 0 .*'12' is not a number"),
    ("labelstudio", _labelstudio, _set(x=True), r"task 0 .*True is not a number"),
    ("labelstudio", _labelstudio, _set(x=10 ** 400), r"task 0 .*is not a finite number"),
    ("labelstudio", _labelstudio, _set(width=-10), r"task 0 .*inverted or empty"),
    ("labelstudio", _labelstudio, _set(x=500, width=20), r"task 0 .*at least 2 pixels .* inside the 160x120"),
    ("labelstudio", _labelstudio, _set(x=-60, width=20), r"task 0 .*at least 2 pixels"),
    ("labelstudio", _labelstudio, _set(rectanglelabels=["a/../x"]), r"task 0 .*contains a path separator"),
    ("cvat", _cvat, _set(xtl="Infinity"), r"image '.*\.jpg' box 0: xtl: inf is not a finite number"),
    ("cvat", _cvat, _set(ytl="nan"), r"image '.*' box 0: ytl: nan is not a finite number"),
    ("cvat", _cvat, _set(xbr="12px"), r"image '.*' box 0: xbr '12px' is not a number"),
    ("cvat", _cvat, _set(xtl="90", xbr="30"), r"image '.*' box 0: the box is inverted"),
    ("cvat", _cvat, _set(xtl="1000", xbr="1100"), r"image '.*' box 0: .*at least 2 pixels"),
    ("cvat", _cvat, _set(ytl="-90", ybr="-40"), r"image '.*' box 0: .*at least 2 pixels"),
    ("cvat", _cvat, _set(label="x\u202eevil"), r"image '.*' box 0: class name .*U\+202E"),
    ("coco", _coco, _bbox(math.inf, 1, 10, 10), r"annotation 0 id 100 \('.*'\): Infinity is not a number"),
    ("coco", _coco, _bbox(1, 1, math.nan, 10), r"annotation 0 id 100 .*NaN is not a number"),
    ("coco", _coco, _bbox("10", "20", "30", "40"), r"annotation 0 id 100 .*'10' is not a number"),
    ("coco", _coco, _bbox(1, 1, None, 10), r"annotation 0 id 100 .*None is not a number"),
    ("coco", _coco, _bbox(1, 1, 10), r"annotation 0 id 100 .*a box is four numbers"),
    ("coco", _coco, _bbox(50, 50, -20, 10), r"annotation 0 id 100 .*inverted or empty"),
    ("coco", _coco, _bbox(5000, 10, 30, 30), r"annotation 0 id 100 .*at least 2 pixels"),
    ("coco", _coco, _bbox(-100, -100, 50, 50), r"annotation 0 id 100 .*at least 2 pixels"),
    ("coco", _coco, _set(image_id=99), r"annotation 0 id 100: image_id 99 is not among the images"),
]


@pytest.mark.parametrize(("tool", "make", "edit", "message"), BAD_IMPORTS,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(BAD_IMPORTS)])
def test_bad_boxes_exit_2_naming_the_record_and_change_nothing(project_dir, tmp_path, capsys, tool, make,
                                                               edit, message):
    path = make(project_dir, tmp_path, edit)
    before = _dump(project_dir)
    for extra in ([], ["--allow-unknown"]):  # skipping unknowns never lets a bad box through
        assert main(["import", str(path), "-p", str(project_dir), "--from", tool, *extra]) == 2
        err = capsys.readouterr().err
        assert f"{path}: nothing imported" in err and "bad record" in err, err
        assert re.search(message, err), err
        assert _dump(project_dir) == before


@pytest.mark.parametrize("tool", ["labelstudio", "coco"])
def test_deeply_nested_json_is_bad_input(project_dir, tmp_path, capsys, tool):
    path = tmp_path / "nested.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    before = _dump(project_dir)
    assert main(["import", str(path), "-p", str(project_dir), "--from", tool]) == 2
    assert f"{path}: not a" in capsys.readouterr().err
    assert _dump(project_dir) == before


def test_string_coco_boxes_never_reach_a_yolo_export(project_dir, tmp_path, capsys):
    path = _coco(project_dir, tmp_path, lambda a: a.update(bbox=[str(v) for v in a["bbox"]]))
    assert main(["import", str(path), "-p", str(project_dir), "--from", "coco"]) == 2
    assert main(["export", str(tmp_path / "yolo"), "-p", str(project_dir)]) == 0
    values = [float(v) for f in (tmp_path / "yolo" / "labels").rglob("*.txt")
              for line in f.read_text().splitlines() for v in line.split()[1:]]
    assert values and all(0 <= v <= 1 for v in values)


@pytest.mark.parametrize(("tool", "make", "edit"), ids=["labelstudio", "cvat", "coco"], argvalues=[
    ("labelstudio", _labelstudio, _set(x=90.0, width=30.0)),  # right edge at 120 % of the width
    ("cvat", _cvat, _set(xbr="400.5")),
    ("coco", _coco, lambda a: a.update(bbox=[a["bbox"][0], -15, a["bbox"][2], a["bbox"][3] + 15])),
])
def test_a_box_partly_outside_the_frame_is_clipped_not_refused(project_dir, tmp_path, capsys, tool, make,
                                                               edit):
    path = make(project_dir, tmp_path, edit)
    assert main(["import", str(path), "-p", str(project_dir), "--from", tool]) == 0, capsys.readouterr().err
    project = Project.open(project_dir)
    boxes = [(r.xyxy, r.width, r.height) for r in project.store.detections(include_rejected=True)]
    project.store.close()
    assert all(0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h for (x1, y1, x2, y2), w, h in boxes)
    assert any(x2 == w or y1 == 0 for (x1, y1, x2, y2), w, h in boxes)
