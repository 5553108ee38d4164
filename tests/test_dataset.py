"""Dataset export (YOLO / ImageFolder / COCO, split by source) and tool round trips."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import CLASSES, synthetic_frames, tiny_gd_project, write_video
from lrihar.annotate.pipeline import annotate
from lrihar.cli import main
from lrihar.dataset.export import export_dataset
from lrihar.dataset.split import split_groups
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.review.interchange import export_cvat, export_labelstudio, import_corrections


def test_split_keeps_groups_whole_and_follows_the_shares():
    groups = {f"video{i}": Counter({"a": 10 + i, "b": 5}) for i in range(20)}
    out = split_groups(groups, (0.6, 0.2, 0.2), seed=3)
    assert set(out) == set(groups)
    sizes = Counter()
    for g, split in out.items():
        sizes[split] += sum(groups[g].values())
    total = sum(sizes.values())
    assert abs(sizes["train"] / total - 0.6) < 0.08 and abs(sizes["test"] / total - 0.2) < 0.08
    assert out == split_groups(groups, (0.6, 0.2, 0.2), seed=3)  # deterministic


def test_split_stratifies_a_rare_class():
    groups = {f"v{i}": Counter({"common": 20}) for i in range(12)}
    groups |= {f"r{i}": Counter({"rare": 3}) for i in range(5)}
    out = split_groups(groups, (0.6, 0.2, 0.2))
    rare = Counter(out[g] for g in groups if g.startswith("r"))
    assert rare["train"] >= 2 and (rare["val"] + rare["test"]) >= 1  # rare class is in several splits


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_bad_split_shares(shares):
    with pytest.raises(BadInputError, match="add up to 1"):
        split_groups({"a": Counter({"x": 1})}, shares)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def video_project(tmp_path, tiny_grounding_dino):
    """Five short videos annotated by the tiny detector and labelled by hand (two classes)."""
    root = tiny_gd_project(tmp_path / "p", tiny_grounding_dino, box_threshold=0.35)
    cfg = json.loads((root / "lrihar.yaml").read_text())
    cfg["classes"] = [{"name": c} for c in CLASSES]
    (root / "lrihar.yaml").write_text(json.dumps(cfg))
    videos = [str(write_video(tmp_path / f"v{i}.mp4", synthetic_frames(6, seed=i))) for i in range(5)]
    project = Project.open(root)
    annotate(project, videos)
    ids = [r.id for r in project.store.detections()]
    project.store.write_auto_labels(1, [(i, CLASSES[i % 2], 0.9, None, None, "k", 0.5) for i in ids])
    return project


def test_yolo_export_splits_by_source_and_passes_ultralytics_checker(video_project, tmp_path, monkeypatch):
    out = tmp_path / "yolo"
    summary = export_dataset(video_project, out, "yolo", (0.6, 0.2, 0.2), seed=1)
    sources = [set(summary.sources[s]) for s in ("train", "val", "test")]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert sum(len(s) for s in sources) == 5
    labels = list((out / "labels").rglob("*.txt"))
    images = list((out / "images").rglob("*.jpg"))
    assert len(labels) == len(images) == sum(summary.images.values()) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["hand"] and manifest["seed"] == 1

    config_dir = tmp_path / "ultralytics-config"
    (config_dir / "Ultralytics").mkdir(parents=True)
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"
    (config_dir / "Ultralytics" / "Arial.ttf").write_bytes(font.read_bytes())
    for key, value in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False",
                       "YOLO_CONFIG_DIR": str(config_dir)}.items():
        monkeypatch.setenv(key, value)
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["nc"] == 1 and Path(data["train"]).is_dir() and Path(data["val"]).is_dir()


def test_exports_are_byte_identical_on_a_second_run(video_project, tmp_path):
    for fmt in ("yolo", "imagefolder", "coco"):
        export_dataset(video_project, tmp_path / f"{fmt}-1", fmt)
        export_dataset(video_project, tmp_path / f"{fmt}-2", fmt)
        first, second = _digest(tmp_path / f"{fmt}-1"), _digest(tmp_path / f"{fmt}-2")
        assert first == second and len(first) > 3, fmt


def test_imagefolder_and_coco_layouts(video_project, tmp_path):
    export_dataset(video_project, tmp_path / "if", "imagefolder", include_ng=True)
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (tmp_path / "if" / split).iterdir()) == sorted([*CLASSES, "NG"])
    export_dataset(video_project, tmp_path / "coco", "coco", yolo_classes="hand")
    doc = json.loads((tmp_path / "coco" / "train.json").read_text())
    assert {c["name"] for c in doc["categories"]} == set(CLASSES)
    assert "licenses" not in doc and all("date_captured" not in im for im in doc["images"])
    assert all((tmp_path / "coco" / im["file_name"]).is_file() for im in doc["images"])


def test_export_refuses_a_non_empty_folder_and_unlabelled_projects(video_project, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not empty"):
        export_dataset(video_project, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    video_project.store.db.execute("DELETE FROM labels")
    assert main(["export", str(tmp_path / "x"), "-p", str(video_project.root)]) == 2
    assert "no labelled detections" in capsys.readouterr().err


def _edit_labelstudio(tasks_path: Path) -> tuple[int, int, int]:
    """Simulate a person in Label Studio: relabel one box, delete one, draw one; return ids."""
    tasks = json.loads(tasks_path.read_text())
    task = next(t for t in tasks if len(t["predictions"][0]["result"]) >= 2)
    result = [dict(r) for r in task["predictions"][0]["result"]]
    relabelled, deleted = int(result[0]["id"][1:]), int(result[1]["id"][1:])
    result[0]["value"] = dict(result[0]["value"], rectanglelabels=["NG"])
    drawn = dict(result[0], id="new", value={"x": 1, "y": 1, "width": 10, "height": 10, "rotation": 0,
                                             "rectanglelabels": [CLASSES[0]]})
    task["annotations"] = [{"result": [result[0], *result[2:], drawn]}]
    tasks_path.write_text(json.dumps(tasks))
    return relabelled, deleted, len(tasks)


def test_labelstudio_round_trip(video_project, tmp_path):
    path = export_labelstudio(video_project, tmp_path / "ls")
    assert (tmp_path / "ls" / "labeling-config.xml").read_text().count("<Label ") == 3
    relabelled, deleted, _ = _edit_labelstudio(path)
    before = video_project.store.counts()["detections"]
    s = import_corrections(video_project, path, "labelstudio")
    assert (s.relabelled, s.rejected, s.added) == (1, 1, 1)
    labels = video_project.store.labels()
    assert (labels[relabelled]["label"], labels[relabelled]["provenance"]) == ("NG", "corrected")
    assert deleted not in {r.id for r in video_project.store.detections()}
    assert video_project.store.counts()["detections"] == before + 1
    log = video_project.store.db.execute("SELECT DISTINCT reviewer FROM review_log").fetchall()
    assert log == [("import:labelstudio",)]


def test_cvat_round_trip_moves_a_box(video_project, tmp_path):
    import xml.etree.ElementTree as ET

    path = export_cvat(video_project, tmp_path / "cvat")
    tree = ET.parse(path)
    box = next(tree.getroot().iter("box"))
    box.set("xbr", str(float(box.get("xbr")) - 3))  # IoU stays > 0.5 but the box moved
    box.set("label", CLASSES[1])
    tree.write(path)
    s = import_corrections(video_project, path, "cvat")
    assert s.moved == 1 and s.added == 0 and s.rejected == 0


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not a Label Studio JSON export"),
    (json.dumps([{"data": {"image": "/x/unknown.jpg"}, "annotations": [{"result": []}]}]),
     "Images not in the project"),
])
def test_malformed_imports_change_nothing(video_project, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    before = video_project.store.db.execute("SELECT * FROM labels ORDER BY detection_id").fetchall()
    with pytest.raises(BadInputError, match=message):
        import_corrections(video_project, path, "labelstudio")
    assert video_project.store.db.execute("SELECT * FROM labels ORDER BY detection_id").fetchall() == before


def test_unknown_labels_are_reported_not_dropped(video_project, tmp_path, capsys):
    path = export_labelstudio(video_project, tmp_path / "ls")
    tasks = json.loads(path.read_text())
    result = tasks[0]["predictions"][0]["result"]
    result[0]["value"]["rectanglelabels"] = ["screwdriver"]
    tasks[0]["annotations"] = [{"result": result}]
    path.write_text(json.dumps(tasks))
    assert main(["import", str(path), "-p", str(video_project.root), "--from", "labelstudio"]) == 2
    assert "screwdriver" in capsys.readouterr().err
    assert main(["import", str(path), "-p", str(video_project.root), "--from", "labelstudio",
                 "--allow-unknown"]) == 0
    assert "unknown labels ['screwdriver']" in capsys.readouterr().err


def test_cvat_xml_bombs_are_refused(video_project, tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx">'
                    '<!ENTITY y "&x;&x;&x;&x;&x;">]><annotations>&y;</annotations>')
    with pytest.raises(BadInputError, match=r"not a CVAT for images 1\.1 XML.*EntitiesForbidden"):
        import_corrections(video_project, bomb, "cvat")


def test_export_cli_writes_the_manifest(video_project, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["export", str(out), "-p", str(video_project.root), "-f", "imagefolder",
                 "--split", "0.6", "0.2", "0.2", "--seed", "5"]) == 0
    assert "train" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == {"train": 0.6, "val": 0.2, "test": 0.2} and manifest["seed"] == 5
    assert os.path.isdir(out / "train")
