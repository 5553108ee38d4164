"""Dataset export (YOLO / ImageFolder / COCO, split by source) and tool round trips."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CLASSES, HANDS_DEV, make_project, synthetic_frames, tiny_gd_project, write_video
from lrihar.annotate.pipeline import annotate
from lrihar.cli import main
from lrihar.crops import frame_stem
from lrihar.dataset.export import export_dataset
from lrihar.dataset.split import split_groups
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.review import edits
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
    data = _ultralytics_check(out, tmp_path, monkeypatch)
    assert data["nc"] == 1 and Path(data["train"]).is_dir() and Path(data["val"]).is_dir()


def _ultralytics_check(out: Path, tmp_path: Path, monkeypatch) -> dict:
    """``out/data.yaml`` through ultralytics' dataset checker, offline (no download, no install,
    its font taken from matplotlib); returns the checked data dict."""
    config_dir = tmp_path / "ultralytics-config"
    (config_dir / "Ultralytics").mkdir(parents=True, exist_ok=True)
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"
    (config_dir / "Ultralytics" / "Arial.ttf").write_bytes(font.read_bytes())
    for key, value in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False",
                       "YOLO_CONFIG_DIR": str(config_dir)}.items():
        monkeypatch.setenv(key, value)
    from ultralytics.data.utils import check_det_dataset

    return check_det_dataset(str(out / "data.yaml"), autodownload=False)


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
    export_dataset(video_project, tmp_path / "coco", "coco")  # labelled project: action classes by default
    doc = json.loads((tmp_path / "coco" / "train.json").read_text())
    assert {c["name"] for c in doc["categories"]} == set(CLASSES)
    assert "licenses" not in doc and all("date_captured" not in im for im in doc["images"])
    assert all((tmp_path / "coco" / im["file_name"]).is_file() for im in doc["images"])


def test_export_refuses_a_non_empty_folder_and_unlabelled_class_sets(video_project, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not empty"):
        export_dataset(video_project, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    video_project.store.db.execute("DELETE FROM labels")
    for fmt in ("imagefolder", "yolo --yolo-classes actions"):
        assert main(["export", str(tmp_path / "x"), "-p", str(video_project.root), "-f", *fmt.split()]) == 2
        err = capsys.readouterr().err
        assert "no labelled detections" in err and "lrihar classify" in err and "--yolo-classes hand" in err
        assert not (tmp_path / "x").exists()


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


# -- a hand detector set from a project nobody classified ----------------------------------------

@pytest.fixture(scope="module")
def unclassified(tmp_path_factory):
    """Real photos (mmpose_hands), two blank frames and a real clip, annotated by the offline
    default detector and never classified; then reviewed: one box marked wrong, one moved, one
    drawn (labelled NG, the only label a project without classes offers)."""
    if not (HANDS_DEV / "mmpose_hands").is_dir():
        pytest.skip(f"real dev images not found at {HANDS_DEV} (only present in the lrihar workspace)")
    tmp = tmp_path_factory.mktemp("unclassified")
    images = tmp / "images"
    shutil.copytree(HANDS_DEV / "mmpose_hands" / "images", images)
    for k in range(2):
        Image.fromarray(np.full((120, 160, 3), 60 + 80 * k, np.uint8)).save(images / f"blank{k}.jpg")
    project = Project.open(make_project(tmp / "p"))
    annotate(project, [str(images), str(HANDS_DEV / "videos/mixkit_42467_baker_kneading_dough.mp4")])
    rows = list(project.store.detections())
    wrong, moved, host = rows[0], rows[1], rows[2]
    edits.mark_wrong(project.store, [wrong.id], "tester")
    x1, y1, x2, y2 = moved.xyxy
    dx, dy = (x2 - x1) / 5, (y2 - y1) / 5
    moved_to = edits.move_box(project.store, moved.id, (x1 + dx, y1 + dy, x2 - dx, y2 - dy),
                                "tester")["xyxy"]
    drawn = edits.add_box(project.store, host.id, (3, 4, 40, 52), "NG", "tester", classes=[])
    return project, {"wrong": (wrong, wrong.xyxy), "old": (moved, moved.xyxy), "moved": (moved, moved_to),
                     "drawn": (host, drawn["xyxy"])}


def _yolo_row(row, xyxy) -> np.ndarray:
    x1, y1, x2, y2 = xyxy
    return np.array([0, (x1 + x2) / 2 / row.width, (y1 + y2) / 2 / row.height,
                     (x2 - x1) / row.width, (y2 - y1) / row.height])


def _labels_of_frame(out: Path, row) -> list[np.ndarray]:
    files = list((out / "labels").glob(f"*/{frame_stem(row)}.txt"))
    return [np.array(line.split(), dtype=float) for f in files for line in f.read_text().splitlines()]


def _holds(lines: list[np.ndarray], box: np.ndarray) -> bool:
    return any(np.allclose(line, box, atol=2e-5) for line in lines)  # labels carry 5 decimals


def _verify_labels(out: Path) -> Counter:
    """Each exported image and its label file as ultralytics' loader checks them: found, missing,
    empty and corrupt counts, and the boxes read."""
    from ultralytics.data.utils import img2label_paths, verify_image_label

    images = sorted(str(p) for p in (out / "images").rglob("*.jpg"))
    totals = Counter()
    for im, lb in zip(images, img2label_paths(images), strict=True):
        _, boxes, _, _, _, nm, nf, ne, nc, _ = verify_image_label((im, lb, "", False, 1, 0, 0, False))
        totals.update(missing=nm, found=nf, empty=ne, corrupt=nc, boxes=0 if boxes is None else len(boxes))
    return totals


def test_unclassified_project_exports_a_hand_set_with_the_reviews_applied(unclassified, tmp_path,
                                                                          monkeypatch):
    project, edits = unclassified
    assert not project.store.labels(provenance="auto")  # never classified
    out = tmp_path / "ds"
    assert main(["export", str(out), "-p", str(project.root), "-f", "yolo", "--yolo-classes", "hand"]) == 0
    data = _ultralytics_check(out, tmp_path, monkeypatch)
    assert data["names"] == {0: "hand"} and data["nc"] == 1
    kept = list(project.store.detections())
    totals = _verify_labels(out)
    assert (totals["missing"], totals["corrupt"], totals["empty"]) == (0, 0, 0)
    assert totals["boxes"] == len(kept)  # every box nobody marked wrong, the drawn one included
    for name in ("wrong", "old"):
        row, xyxy = edits[name]
        assert not _holds(_labels_of_frame(out, row), _yolo_row(row, xyxy)), name
    for name in ("moved", "drawn"):
        row, xyxy = edits[name]
        assert _holds(_labels_of_frame(out, row), _yolo_row(row, xyxy)), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["hand"] and manifest["skipped_unlabelled"] == 0
    assert sum(c.get("hand", 0) for c in manifest["counts"].values()) == len(kept)


def test_negatives_add_seeded_empty_frames_with_empty_labels_split_by_source(unclassified, tmp_path):
    project, _ = unclassified
    boxed = {(r.source_uri, r.frame_index) for r in project.store.detections()}
    empty = [(uri, rec) for uri, _, rec in project.store.frames()
             if rec.status == "empty" and (uri, rec.index) not in boxed]
    assert len(empty) >= 10  # the two blanks, photos the detector missed, clip frames
    none = export_dataset(project, tmp_path / "none", "yolo")  # default: no frame without a box
    assert sum(none.negatives.values()) == 0 and _verify_labels(tmp_path / "none")["empty"] == 0
    for run in ("a", "b"):
        summary = export_dataset(project, tmp_path / run, "yolo", negatives=0.5, seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    half = (len(empty) + 1) // 2  # a half rounds up
    assert sum(summary.negatives.values()) == half and _verify_labels(tmp_path / "a")["empty"] == half
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["negatives"] == {"fraction": 0.5, "images": summary.negatives}
    everything = export_dataset(project, tmp_path / "all", "yolo", negatives=1.0, seed=3)
    assert sum(everything.negatives.values()) == len(empty)
    clip = str(HANDS_DEV / "videos/mixkit_42467_baker_kneading_dough.mp4")
    splits = [s for s in ("train", "val", "test")
              if any(p.name.startswith("mixkit") for p in (tmp_path / "all" / "images" / s).glob("*"))]
    assert len(splits) == 1 and clip in everything.sources[splits[0]]  # the clip's frames stay together


def test_coco_of_an_unclassified_project_is_a_hand_set(unclassified, tmp_path, capsys):
    project, _ = unclassified
    out = tmp_path / "coco"
    assert main(["export", str(out), "-p", str(project.root), "-f", "coco", "--negatives", "1"]) == 0
    assert "one class 'hand'" in capsys.readouterr().err
    docs = [json.loads((out / f"{s}.json").read_text()) for s in ("train", "val", "test")]
    assert all([c["name"] for c in d["categories"]] == ["hand"] for d in docs)
    assert sum(len(d["annotations"]) for d in docs) == len(list(project.store.detections()))
    annotated = {a["image_id"] for d in docs for a in d["annotations"]}
    assert sum(len(d["images"]) for d in docs) > len(annotated)  # background images are listed too


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "imagefolder"], "label boxes in `lrihar review`); for a hand detector set"),
    (["-f", "yolo", "--classes", "actions"], "--yolo-classes hand"),
    (["-f", "imagefolder", "--classes", "hand"], "ImageFolder set is cut into action classes"),
    (["-f", "yolo", "--classes", "hands"], "use 'hand'"),
    (["-f", "yolo", "--negatives", "1.5"], "from 0 to 1"),
    (["-f", "imagefolder", "--negatives", "0.2"], "only go into detector sets"),
])
def test_class_sets_of_an_unclassified_project_are_refused_clearly(unclassified, tmp_path, capsys, args,
                                                                   message):
    project, _ = unclassified
    assert main(["export", str(tmp_path / "x"), "-p", str(project.root), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
