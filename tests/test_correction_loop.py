"""The correction loop outside the detector: `lrihar suggest -o` picks frames, `export -f labelstudio|cvat
--frames` hands exactly those to the tool (also the ones with no box), the person draws the missed
hands (or says there is none), `import` brings it back onto any stored frame, and `export -f yolo`
carries it to the next `train-detector`. In the review page, `e` marks a frame as holding no hand.

Built on the real store of test_review_queue: A/a0 two detectors disagree, B/b0 busy but empty (no
stored box at all), A/a2 a weak box, A/a1 one confident box.
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from live_server import browser_page, free_port, serving
from lrihar.cli import main
from lrihar.crops import FrameRef, frame_stem
from lrihar.review import edits
from lrihar.store import SCHEMA_VERSION, Store
from test_review_queue import H, W, _client, _log, _manual_boxes, _suggestions, queue_project


@pytest.fixture
def root(tmp_path) -> Path:
    return queue_project(tmp_path)


def _b0(root: Path) -> tuple[str, str, int]:
    """Busy-but-empty B/b0: (its image name in the tool exports, source uri, source id)."""
    store = Store(root / "lrihar.db")
    try:
        uri, sid, name = store.db.execute("SELECT s.uri, s.id, f.name FROM frames f JOIN sources s"
                                          " ON s.id = f.source_id WHERE s.uri LIKE '%/B'").fetchone()
    finally:
        store.close()
    return f"{frame_stem(FrameRef(uri, 0, name))}.jpg", uri, sid


def _suggested(root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "suggested.json"
    assert main(["suggest", "-p", str(root), "-n", "10", "-o", str(path), "--no-progress"]) == 0
    return path


def _checked(root: Path) -> set[tuple[str, int]]:
    store = Store(root / "lrihar.db")
    try:
        return store.checked_frames()
    finally:
        store.close()


def _yolo_labels(root: Path, out: Path) -> dict[str, list[str]]:
    assert main(["export", str(out), "-p", str(root), "-f", "yolo", "--yolo-classes", "hand"]) == 0
    return {p.name.split("-")[0]: p.read_text().split() for p in out.glob("labels/*/*.txt")}


# A box a person draws on B/b0, running past its right edge (clipped to the frame on import).
DRAWN = (40.0, 30.0, 200.0, 90.0)
CLIPPED = [40.0, 30.0, float(W), 90.0]


def _labelstudio(root: Path, tmp_path: Path, boxes=(DRAWN,)) -> Path:
    """The real `export -f labelstudio --frames` file, with the person's annotation on B/b0."""
    out = tmp_path / "ls"
    assert main(["export", str(out), "-p", str(root), "-f", "labelstudio",
                 "--frames", str(_suggested(root, tmp_path))]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    name = _b0(root)[0]
    [task] = [t for t in tasks if t["data"]["image"].endswith(name)]
    task["annotations"] = [{"result": [
        {"type": "rectanglelabels", "original_width": W, "original_height": H,
         "value": {"x": 100 * x1 / W, "y": 100 * y1 / H, "width": 100 * (x2 - x1) / W,
                   "height": 100 * (y2 - y1) / H, "rectanglelabels": ["gloved_hand"]}}
        for x1, y1, x2, y2 in boxes]}]
    path = tmp_path / "ls-done.json"
    path.write_text(json.dumps(tasks))
    return path


def _cvat(root: Path, tmp_path: Path, boxes=(DRAWN,)) -> Path:
    """The real `export -f cvat --frames` file, with the person's boxes on B/b0."""
    out = tmp_path / "cvat"
    frames = _suggested(root, tmp_path)
    assert main(["export", str(out), "-p", str(root), "-f", "cvat", "--frames", str(frames)]) == 0
    tree = ET.parse(out / "annotations.xml")
    [image] = [i for i in tree.getroot().iter("image") if i.get("name") == _b0(root)[0]]
    for x1, y1, x2, y2 in boxes:
        ET.SubElement(image, "box", label="gloved_hand", xtl=str(x1), ytl=str(y1), xbr=str(x2), ybr=str(y2))
    path = tmp_path / "cvat-done.xml"
    tree.write(path)
    return path


def _coco(root: Path, tmp_path: Path, boxes=(DRAWN,)) -> Path:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": f"images/{_b0(root)[0]}", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "gloved_hand"}],
        "annotations": [{"id": 100 + k, "image_id": 7, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}
                        for k, (x1, y1, x2, y2) in enumerate(boxes)]}))
    return path


TOOLS = {"labelstudio": _labelstudio, "cvat": _cvat, "coco": _coco}


@pytest.mark.parametrize("fmt", ["labelstudio", "cvat"])
def test_the_tool_export_of_suggested_frames_holds_them_in_order_with_the_empty_one(root, tmp_path, fmt):
    frames = _suggested(root, tmp_path)
    out, every = tmp_path / "listed", tmp_path / "every"
    assert main(["export", str(out), "-p", str(root), "-f", fmt, "--frames", str(frames)]) == 0
    assert main(["export", str(every), "-p", str(root), "-f", fmt]) == 0

    def listed(folder: Path) -> list[tuple[str, int]]:
        if fmt == "labelstudio":
            tasks = json.loads((folder / "tasks.json").read_text())
            return [(t["data"]["image"].rsplit("/", 1)[-1].split("-")[0],
                     len(t["predictions"][0]["result"])) for t in tasks]
        root_ = ET.parse(folder / "annotations.xml").getroot()
        return [(i.get("name").split("-")[0], len(i.findall("box"))) for i in root_.iter("image")]

    # suggest's order, best first; B/b0 has no box and is there for the person to draw on
    assert listed(out) == [("a0", 2), ("b0", 0), ("a2", 1)]
    assert sorted(p.name.split("-")[0] for p in (out / "images").iterdir()) == ["a0", "a2", "b0"]
    assert listed(every) == [("a0", 2), ("a1", 1), ("a2", 1)]  # default: the frames holding boxes


@pytest.mark.parametrize("tool", TOOLS)
def test_a_box_drawn_in_the_tool_on_a_frame_with_no_stored_box_is_a_persons_and_undoable(root, tmp_path,
                                                                                         tool, capsys):
    path = TOOLS[tool](root, tmp_path)
    capsys.readouterr()
    assert main(["import", str(path), "-p", str(root), "--from", tool]) == 0
    assert "1 added" in capsys.readouterr().out
    [(det_id, uri, index, *xyxy, label, provenance)] = _manual_boxes(root)
    assert uri == _b0(root)[1] and index == 0
    assert xyxy == pytest.approx(CLIPPED) and (label, provenance) == ("gloved_hand", "corrected")
    assert (f"import:{tool}", "add", det_id, 0) in _log(root)

    cx, cy = (CLIPPED[0] + CLIPPED[2]) / 2 / W, (CLIPPED[1] + CLIPPED[3]) / 2 / H
    labels = _yolo_labels(root, tmp_path / "yolo")
    assert [float(v) for v in labels["b0"]] == pytest.approx(
        [0, cx, cy, (CLIPPED[2] - CLIPPED[0]) / W, (CLIPPED[3] - CLIPPED[1]) / H], abs=1e-3)

    store = Store(root / "lrihar.db")
    try:
        undone = edits.undo_last(store, f"import:{tool}")
    finally:
        store.close()
    assert {"id": det_id, "deleted": True} in undone
    assert _manual_boxes(root) == []
    assert "b0" not in _yolo_labels(root, tmp_path / "yolo-after-undo")


@pytest.mark.parametrize("tool", TOOLS)
def test_a_bad_box_on_a_frame_with_no_stored_box_still_stops_the_import(root, tmp_path, tool, capsys):
    path = TOOLS[tool](root, tmp_path, boxes=[DRAWN, (W + 10.0, 5.0, W + 40.0, 40.0)])  # 2nd: wholly outside
    before = _log(root)
    assert main(["import", str(path), "-p", str(root), "--from", tool]) == 2
    err = capsys.readouterr().err
    assert "nothing imported" in err and "at least 2 pixels" in err and _b0(root)[0] in err
    assert _manual_boxes(root) == [] and _log(root) == before


def test_a_bad_frame_list_is_refused_naming_the_item_and_writes_nothing(root, tmp_path, capsys):
    good = json.loads(_suggested(root, tmp_path).read_text())
    cases = {
        "not-a-list.json": ({"frames": good}, "expected a non-empty JSON list"),
        "no-index.json": ([good[0], {"source": good[1]["source"]}], "item 1: field 'frame_index' is missing"),
        "elsewhere.json": ([{"source": "/elsewhere/clip.mp4", "frame_index": 3}],
                           "item 0: frame 3 of '/elsewhere/clip.mp4' is not in this project's store"),
        "bool-index.json": ([{"source": good[0]["source"], "frame_index": True}], "is not a whole number"),
    }
    for name, (doc, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(doc))
        out = tmp_path / f"out-{name}"
        args = ["export", str(out), "-p", str(root), "-f", "cvat", "--frames", str(tmp_path / name)]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert name in err and message in err, (name, err)
        assert not out.exists()
    assert main(["export", str(tmp_path / "y"), "-p", str(root), "-f", "yolo",
                 "--frames", str(tmp_path / "no-index.json")]) == 2
    assert "--frames" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_a_submitted_empty_label_studio_task_marks_the_frame_as_holding_no_hand(root, tmp_path, capsys):
    path = _labelstudio(root, tmp_path, boxes=())
    assert main(["import", str(path), "-p", str(root), "--from", "labelstudio"]) == 0
    assert "1 marked as holding no hand" in capsys.readouterr().out
    _, uri, sid = _b0(root)
    assert _checked(root) == {(uri, 0)}
    [(reviewer, action, frame)] = _frame_log(root)
    assert (reviewer, action, frame) == ("import:labelstudio", "empty", (sid, 0))
    store = Store(root / "lrihar.db")
    try:
        edits.undo_last(store, "import:labelstudio")
    finally:
        store.close()
    assert _checked(root) == set()


def test_cvat_images_with_no_box_mark_frames_only_when_asked(root, tmp_path):
    path = _cvat(root, tmp_path, boxes=())
    assert main(["import", str(path), "-p", str(root), "--from", "cvat"]) == 0
    assert _checked(root) == set()  # a CVAT file lists every image of the task, looked at or not
    assert main(["import", str(path), "-p", str(root), "--from", "cvat", "--empty-checked"]) == 0
    assert _checked(root) == {(_b0(root)[1], 0)}
    # a later import that draws a hand there takes the mark back, in the same (undoable) action
    (tmp_path / "again").mkdir()
    assert main(["import", str(_cvat(root, tmp_path / "again")), "-p", str(root), "--from", "cvat"]) == 0
    assert _checked(root) == set() and len(_manual_boxes(root)) == 1
    store = Store(root / "lrihar.db")
    try:
        edits.undo_last(store, "import:cvat")
    finally:
        store.close()
    assert _checked(root) == {(_b0(root)[1], 0)} and _manual_boxes(root) == []


def _frame_log(root: Path) -> list[tuple]:
    store = Store(root / "lrihar.db")
    try:
        rows = store.db.execute("SELECT reviewer, action, source_id, frame_index FROM review_log"
                                " WHERE detection_id IS NULL AND undone = 0 ORDER BY id").fetchall()
    finally:
        store.close()
    return [(r, a, (s, f)) for r, a, s, f in rows]


def test_marking_a_frame_empty_through_the_api_is_stored_logged_undoable_and_cleared_by_a_hand(root):
    client = _client(root, _suggestions(root))
    _, uri, sid = _b0(root)
    who = {"reviewer": "ana"}
    r = client.post("/api/mark-empty", json={"source": sid, "frame_index": 0, **who})
    assert r.status_code == 200 and r.json()["verdict"] == "empty" and r.json()["changed"] is True
    assert _checked(root) == {(uri, 0)} and _frame_log(root) == [("ana", "empty", (sid, 0))]
    assert client.get(f"/api/sources/{sid}/frames/0/boxes").json()["check"]["verdict"] == "empty"
    [queued] = [it for it in client.get("/api/queue").json()["items"] if it["source_id"] == sid]
    assert queued["reviewed"] is True and queued["check"]["reviewer"] == "ana"

    assert client.post("/api/undo", json=who).status_code == 200
    assert _checked(root) == set() and _frame_log(root) == []

    # again, then a hand drawn there after all: the mark goes with the same action, and comes back
    client.post("/api/mark-empty", json={"source": sid, "frame_index": 0, **who})
    r = client.post("/api/add-to-frame", json={"source": sid, "frame_index": 0, "xyxy": [10, 10, 50, 50],
                                              "label": "bare_hand", **who})
    assert r.status_code == 200 and _checked(root) == set()
    client.post("/api/undo", json=who)
    assert _manual_boxes(root) == [] and _checked(root) == {(uri, 0)}
    r = client.post("/api/mark-empty", json={"source": sid, "frame_index": 0, "empty": False, **who})
    assert r.json()["verdict"] is None and _checked(root) == set()
    assert [a for _, a, _ in _frame_log(root)] == ["empty", "unmark"]


def test_marking_a_frame_that_still_holds_a_box_or_is_not_stored_is_refused(root):
    client = _client(root)
    store = Store(root / "lrihar.db")
    a_sid = store.db.execute("SELECT id FROM sources WHERE uri LIKE '%/A'").fetchone()[0]
    store.close()
    before = _log(root)
    r = client.post("/api/mark-empty", json={"source": a_sid, "frame_index": 1, "reviewer": "ana"})
    assert r.status_code == 400 and "still holds 1 box(es)" in r.json()["detail"]
    r = client.post("/api/mark-empty", json={"source": a_sid, "frame_index": 99, "reviewer": "ana"})
    assert r.status_code == 400 and "frame 99 of source" in r.json()["detail"]
    r = client.post("/api/mark-empty", json={"source": a_sid, "frame_index": 1, "empty": "yes",
                                             "reviewer": "ana"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    assert _log(root) == before and _checked(root) == set()


def test_a_schema_5_store_is_upgraded_keeping_its_review_log(root):
    path = root / "lrihar.db"
    store = Store(path)
    det_id = store.db.execute("SELECT MIN(id) FROM detections").fetchone()[0]
    edits.relabel(store, [det_id], "bare_hand", "ana")
    store.close()
    db = sqlite3.connect(path)  # back to schema 5: review_log as it was, no frame_reviews
    db.executescript("""
        DROP TABLE frame_reviews;
        CREATE TABLE old_log (id INTEGER PRIMARY KEY, action_id INTEGER NOT NULL, at TEXT NOT NULL,
            reviewer TEXT NOT NULL, session_id INTEGER REFERENCES review_sessions(id), action TEXT NOT NULL,
            detection_id INTEGER NOT NULL, before TEXT, after TEXT, undone INTEGER NOT NULL DEFAULT 0);
        INSERT INTO old_log SELECT id, action_id, at, reviewer, session_id, action, detection_id, before,
            after, undone FROM review_log;
        DROP TABLE review_log;
        ALTER TABLE old_log RENAME TO review_log;
        CREATE INDEX review_log_by_action ON review_log(action_id);
        UPDATE meta SET value = '5' WHERE key = 'schema_version';
    """)
    db.close()
    store = Store(path)
    try:
        assert int(store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]) \
            == SCHEMA_VERSION == 8
        assert store.db.execute("SELECT reviewer, action, detection_id FROM review_log").fetchall() == [
            ("ana", "relabel", det_id)]
        _, _, sid = _b0(root)
        assert edits.mark_frame_empty(store, (sid, 0), "ana")["changed"] is True
        assert edits.undo_last(store, "ana") == [{"source_id": sid, "frame_index": 0, "verdict": None}]
        assert edits.undo_last(store, "ana")[0]["label"] is None  # the relabel of before the upgrade
        assert store.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='review_log_by_action'"
                                ).fetchone()[0] == 1
    finally:
        store.close()


def test_browser_e_marks_a_suggested_empty_frame_as_holding_no_hand_and_u_takes_it_back(root):
    from playwright.sync_api import expect

    from lrihar.review.server import create_app

    port = free_port()
    with serving(create_app(root, port=port, suggestions=_suggestions(root)), port), browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".frame-card")
        page.fill("#reviewer", "browser-test")
        page.locator(".frame-card").nth(1).click()  # B/b0, busy but empty
        page.keyboard.press("f")
        page.wait_for_selector("#frame.open")
        page.keyboard.press("e")
        page.locator("#status", has_text="checked: no hand here").wait_for()
        page.locator("#frame-info", has_text="checked").wait_for()  # redrawn after the status line
        info = page.locator("#frame-info").inner_text()
        marked = _checked(root)
        page.keyboard.press("u")
        page.locator("#status", has_text="undone (1)").wait_for()
        expect(page.locator("#frame-info")).not_to_contain_text("checked")  # (wait_for_function: CSP eval)
        after_undo = _checked(root)
        page.keyboard.press("e")
        page.locator("#status", has_text="checked: no hand here").wait_for()
        page.keyboard.press("Escape")
        page.wait_for_selector(".frame-card.corrected")
        card = page.locator(".frame-card").nth(1).locator(".meta").inner_text()
        clean = list(errors)  # the refusal below is a 400, which the console reports
        page.locator(".frame-card").nth(0).click()  # A/a0 holds boxes: refused, with what to do
        page.keyboard.press("f")
        page.wait_for_selector("#frame.open")
        page.locator("#frame-info", has_text="a0.jpg").wait_for()
        page.keyboard.press("e")
        page.locator("#status", has_text="still holds").wait_for()
    uri = _b0(root)[1]
    assert clean == []
    assert "checked: no hand (browser-test)" in info and marked == {(uri, 0)}
    assert after_undo == set()
    assert "checked: no hand" in card and _checked(root) == {(uri, 0)}
