"""`lrihar import` of a tool's file made on the ORIGINAL images (not lrihar's exports): an image is
found by its path (whole or its last folders), by its file name where only one stored frame has it,
a video frame as ``video#frame=N``; a file name two frames share is refused, naming both. In a project
with no action classes the tools (and the review page) offer, and the import accepts, ``hand``.

Built on the real store: two image folders holding files of the same names and a video, annotated
by the colour detector of detector_fixtures, in a project that declares no class.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import make_project, synthetic_frames, write_video
from detector_fixtures import ColourBoxDetector, draw_frames
from lrihar.annotate.pipeline import annotate
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.review.interchange import export_cvat, export_labelstudio, import_corrections

# Boxes a person draws, away from the colour detector's (so each is added, on exactly one frame).
DRAWN = [(2.0, 2.0, 12.0, 14.0), (70.0, 60.0, 90.0, 78.0)]


@pytest.fixture
def line(tmp_path) -> dict:
    """line/a/frame00-02.png, line/b/frame00-01.png (the same names, other pictures) and clip.mp4,
    annotated in a project with no classes."""
    folder = tmp_path / "data" / "line"
    draw_frames(folder / "a", 3, seed=0)
    draw_frames(folder / "b", 2, seed=1)
    clip = write_video(folder / "clip.mp4", synthetic_frames(6, width=96, height=80))
    project = Project.open(make_project(tmp_path / "p"))
    assert project.classes == []
    annotate(project, [str(folder / "a"), str(folder / "b"), str(clip)], detector=ColourBoxDetector())
    frames = {(uri, rec.index): rec for uri, _, rec in project.store.frames()}
    assert len(frames) == 3 + 2 + 6  # every frame stored, those with no box too
    return {"project": project, "root": project.root, "folder": folder.resolve(), "clip": str(clip.resolve()),
            "a": str((folder / "a").resolve()), "b": str((folder / "b").resolve())}


def _drawn(project: Project) -> dict[tuple[str, int], list[tuple[float, ...]]]:
    """The boxes a person drew, by (source, frame index)."""
    out: dict[tuple[str, int], list] = {}
    for r in project.store.detections():
        if r.backend == "manual":
            out.setdefault((r.source_uri, r.frame_index), []).append(tuple(round(v, 2) for v in r.xyxy))
    return {k: sorted(v) for k, v in out.items()}


def _coco(path: Path, names: list[str], label: str = "hand") -> Path:
    """A COCO file with one drawn box per image (``DRAWN[k % 2]`` on image k)."""
    path.write_text(json.dumps({
        "images": [{"id": k + 1, "file_name": n, "width": 96, "height": 80} for k, n in enumerate(names)],
        "categories": [{"id": 1, "name": label}],
        "annotations": [{"id": k + 1, "image_id": k + 1, "category_id": 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]}
                        for k, (x1, y1, x2, y2) in ((k, DRAWN[k % 2]) for k in range(len(names)))]}))
    return path


def _store_state(project: Project) -> list:
    db = project.store.db
    return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("detections", "labels", "frame_reviews", "review_log")]


def test_a_coco_file_of_the_original_images_and_video_frames_lands_on_the_right_frames(line, tmp_path):
    a, b, clip = line["a"], line["b"], line["clip"]
    names = [f"{a}/frame00.png",           # the whole path, as stored
             "b/frame01.png",              # its last folder and file name (frame01.png is in a too)
             "images/frame02.png",         # no such folder here, but only a/ has a frame02.png
             "line/clip.mp4#frame=2",      # a video frame, as `lrihar detections` names it
             "clip.mp4#frame=0004"]        # its file name alone, the index written with zeros
    s = import_corrections(line["project"], _coco(tmp_path / "c.json", names), "coco")
    assert (s.images, s.added, s.unknown_images) == (5, 5, [])
    assert _drawn(line["project"]) == {(a, 0): [DRAWN[0]], (b, 1): [DRAWN[1]], (a, 2): [DRAWN[0]],
                                       (clip, 2): [DRAWN[1]], (clip, 4): [DRAWN[0]]}


def test_a_relative_path_with_dots_and_a_windows_path_are_found_too(line, tmp_path):
    a, b = line["a"], line["b"]
    names = ["../line/b/frame00.png", "C:\\Users\\ana\\data\\line\\a\\frame01.png"]
    s = import_corrections(line["project"], _coco(tmp_path / "c.json", names), "coco")
    assert s.added == 2
    # the Windows path is not this machine's: its file name is shared by a/ and b/, but its last
    # folders (line\a\frame01.png) fit a/ alone
    assert _drawn(line["project"]) == {(b, 0): [DRAWN[0]], (a, 1): [DRAWN[1]]}


def _labelstudio(path: Path, names: list[str]) -> Path:
    def result(box):
        x1, y1, x2, y2 = box
        return {"type": "rectanglelabels", "original_width": 96, "original_height": 80,
                "value": {"x": 100 * x1 / 96, "y": 100 * y1 / 80, "width": 100 * (x2 - x1) / 96,
                          "height": 100 * (y2 - y1) / 80, "rectanglelabels": ["hand"]}}

    path.write_text(json.dumps([{"data": {"image": n}, "annotations": [{"result": [result(DRAWN[k % 2])]}]}
                                for k, n in enumerate(names)]))
    return path


def _cvat(path: Path, names: list[str]) -> Path:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    for k, n in enumerate(names):
        image = ET.SubElement(root, "image", id=str(k), name=n, width="96", height="80")
        x1, y1, x2, y2 = DRAWN[k % 2]
        ET.SubElement(image, "box", label="hand", xtl=str(x1), ytl=str(y1), xbr=str(x2), ybr=str(y2))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


@pytest.mark.parametrize(("tool", "names"), [
    ("labelstudio", ["/data/local-files/?d=line/b/frame00.png", "/data/local-files/?d=line%2Fa%2Fframe02.png",
                     "http://ls.example:8080/data/clip.mp4#frame=5"]),
    ("cvat", ["line/b/frame00.png", "frame02.png", "clip.mp4#frame=5"]),
])
def test_label_studio_and_cvat_files_of_the_original_images_land_on_the_right_frames(line, tmp_path, tool,
                                                                                     names, capsys):
    path = (_labelstudio if tool == "labelstudio" else _cvat)(tmp_path / f"{tool}.file", names)
    assert main(["import", str(path), "-p", str(line["root"]), "--from", tool]) == 0, capsys.readouterr().err
    assert "3 added" in capsys.readouterr().out
    assert _drawn(line["project"]) == {(line["b"], 0): [DRAWN[0]], (line["a"], 2): [DRAWN[1]],
                                       (line["clip"], 5): [DRAWN[0]]}


def test_a_file_name_two_stored_frames_share_is_refused_naming_both_and_nothing_changes(line, tmp_path,
                                                                                        capsys):
    before = _store_state(line["project"])
    path = _coco(tmp_path / "c.json", ["frame02.png", "frame00.png", "other/frame01.png"])
    for extra in ([], ["--allow-unknown"]):  # an ambiguous name is no unknown one to skip
        assert main(["import", str(path), "-p", str(line["root"]), "--from", "coco", *extra]) == 2
        err = capsys.readouterr().err
        assert "nothing imported" in err and "Traceback" not in err
        for name in ("frame00.png", "other/frame01.png"):
            assert f"'{name}' could be any of" in err
        for folder in ("a", "b"):
            assert f"{line[folder]}/frame00.png" in err and f"{line[folder]}/frame01.png" in err
        assert "'frame02.png'" not in err  # only a/ has it: not ambiguous
        assert "full path" in err and "export name" in err
    assert _store_state(line["project"]) == before


def test_two_images_of_the_file_that_are_one_frame_are_refused(line, tmp_path):
    before = _store_state(line["project"])
    path = _coco(tmp_path / "c.json", [f"{line['a']}/frame02.png", "a/frame02.png"])
    with pytest.raises(BadInputError, match=r"'/.*/a/frame02\.png', 'a/frame02\.png' are the same frame /"):
        import_corrections(line["project"], path, "coco")
    assert _store_state(line["project"]) == before


def test_an_unknown_original_name_is_reported_with_how_images_are_matched(line, tmp_path):
    with pytest.raises(BadInputError, match=r"Images not in the project \(matched by .*#frame=N\): "
                                            r"line/c/frame09\.png"):
        import_corrections(line["project"], _coco(tmp_path / "c.json", ["line/c/frame09.png"]), "coco")


# -- a project with no action classes: the detector's class "hand" --------------------------------

def test_tool_exports_of_a_project_without_classes_offer_hand_and_its_boxes_come_back(line, tmp_path):
    project = line["project"]
    boxes = len(list(project.store.detections()))
    ls = export_labelstudio(project, tmp_path / "ls")
    config = (tmp_path / "ls" / "labeling-config.xml").read_text()
    assert '<Label value="hand"/>' in config and '<Label value="NG"/>' in config
    tasks = json.loads(ls.read_text())
    predicted = [r["value"]["rectanglelabels"] for t in tasks for r in t["predictions"][0]["result"]]
    assert len(predicted) == boxes and all(p == ["hand"] for p in predicted)
    cvat = export_cvat(project, tmp_path / "cvat")
    tree = ET.parse(cvat).getroot()
    assert [n.text for n in tree.iter("name")] == ["hand", "NG"]
    assert {b.get("label") for b in tree.iter("box")} == {"hand"}

    # the person confirms the detector's boxes as they are and draws one more hand
    first = tasks[0]
    first["annotations"] = [{"result": [*first["predictions"][0]["result"], {
        "type": "rectanglelabels", "original_width": 96, "original_height": 80,
        "value": {"x": 1, "y": 1, "width": 10, "height": 10, "rectanglelabels": ["hand"]}}]}]
    ls.write_text(json.dumps(tasks))
    predicted = len(first["predictions"][0]["result"])
    s = import_corrections(project, ls, "labelstudio")
    assert (s.added, s.confirmed, s.relabelled, s.rejected, s.unknown_labels) == (1, predicted, 0, 0, [])
    uri, index = first["data"]["lrihar_frame"].rsplit("#", 1)
    on_frame = [r for r in project.store.detections() if (r.source_uri, r.frame_index) == (uri, int(index))]
    assert len(on_frame) == predicted + 1
    assert all((r.action, r.label_provenance) == ("hand", "corrected") for r in on_frame)
    assert len(list(project.store.detections())) == boxes + 1
    # "hand" labels make no action class of it: the next export still offers the rest as hand
    assert Project.open(line["root"]).classes == []
    again = json.loads(export_labelstudio(Project.open(line["root"]), tmp_path / "again").read_text())
    assert {r["value"]["rectanglelabels"][0] for t in again
            for r in t["predictions"][0]["result"]} == {"hand"}

    # a COCO set of the project is still a hand set with every box (a "hand" label is no action)
    out = tmp_path / "coco-set"
    assert main(["export", str(out), "-p", str(line["root"]), "-f", "coco"]) == 0
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json") if p.name != "manifest.json"]
    assert {c["name"] for d in docs for c in d["categories"]} == {"hand"}
    assert sum(len(d["annotations"]) for d in docs) == boxes + 1

    # CVAT: the export's boxes, all "hand" (the one drawn in Label Studio is not there: marked wrong)
    s = import_corrections(project, cvat, "cvat")
    assert (s.unknown_labels, s.confirmed, s.rejected) == ([], boxes, 1)


def test_a_project_without_classes_refuses_other_labels_naming_hand_and_ng(line, tmp_path):
    with pytest.raises(BadInputError, match=r"Labels not in the project \(hand, NG\): screwdriver"):
        import_corrections(line["project"], _coco(tmp_path / "c.json", ["a/frame00.png"], "screwdriver"),
                           "coco")


def test_the_review_page_of_a_project_without_classes_offers_and_takes_hand(line):
    from fastapi.testclient import TestClient

    from lrihar.review.server import create_app

    client = TestClient(create_app(line["root"]), base_url="http://127.0.0.1:8765")
    meta = client.get("/api/meta").json()
    assert (meta["classes"], meta["new_box_label"]) == (["hand"], "hand")
    item = client.get("/api/crops", params={"limit": 1}).json()["items"][0]
    r = client.post("/api/relabel", json={"ids": [item["id"]], "label": "hand", "reviewer": "ana",
                                          "seen": {str(item["id"]): item["version"]}})
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["label"] == "hand"
    drawn = client.post("/api/add", json={"like": item["id"], "xyxy": [1, 1, 11, 11], "label": "hand",
                                          "reviewer": "ana"})
    assert drawn.status_code == 200, drawn.text
    meta = client.get("/api/meta").json()  # a "hand" label stored makes no class of it
    assert (meta["classes"], meta["new_box_label"]) == (["hand"], "hand")
    refused = client.post("/api/relabel", json={"ids": [item["id"]], "label": "cat", "reviewer": "ana"})
    assert refused.status_code == 400 and "(hand, NG)" in refused.json()["detail"]
