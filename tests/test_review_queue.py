"""`lrihar review --queue uncertain`: the frames `lrihar suggest` ranks highest, in that order, with
their reasons; boxes drawn on a suggested frame that holds no box yet, undone, then exported.

The project is built straight into a real store (image frames, boxes of two backends), so the
suggest ranking is known: A/f0 two detectors disagree (1.0), B/b0 busy but empty (0.8), A/f2 a
weak box (0.36), A/f1 one confident box (not suggested).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_project
from live_server import browser_page, free_port, serving
from lrihar.cli import main

W, H = 160, 120
DISAGREE = "disagree: mediapipe-hands 1 boxes, yolo 1 boxes, 0 matched"
BUSY = "busy but empty: the motion gate passed it, no box"
WEAK = "low confidence: weakest box 0.20"


@pytest.fixture
def root(tmp_path) -> Path:
    return queue_project(tmp_path)


def queue_project(tmp_path: Path) -> Path:
    """The project described in the module docstring, under ``tmp_path / "p"``."""
    import supervision as sv

    from lrihar.store import FrameRecord, Store

    root = make_project(tmp_path / "p", classes=[{"name": "gloved_hand"}, {"name": "bare_hand"}])
    store = Store(root / "lrihar.db")

    def frame(folder: str, i: int, status: str, boxes: list, score: float = 0.9):
        path = tmp_path / folder / f"{folder.lower()}{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 40 + 50 * i, np.uint8)).save(path)
        n = len(boxes)
        dets = sv.Detections(xyxy=np.array(boxes, float).reshape(-1, 4), confidence=np.full(n, score),
                             class_id=np.zeros(n, int), data={"class_name": np.array(["hand"] * n)})
        return FrameRecord(i, float(i), W, H, status, str(path)), dets

    plain = store.start_run("annotate", {"project": {"gate": {"motion": False}}}, {})
    a = store.source_id(str(tmp_path / "A"), "folder")
    store.write_frames(plain, a, [frame("A", 0, "action", [[10, 10, 60, 70]]),
                                  frame("A", 1, "action", [[20, 20, 70, 80]]),
                                  frame("A", 2, "action", [[30, 30, 80, 90]], score=0.2)], "mediapipe-hands")
    with store.transaction() as db:  # a second detector's box on A/f0, far from the first one
        db.execute("INSERT INTO detections (source_id, frame_index, x1, y1, x2, y2, score, label, backend,"
                   " run_id) VALUES (?, 0, 90, 20, 150, 100, 0.9, 'hand', 'yolo', ?)", (a, plain))
    gated = store.start_run("annotate", {"project": {"gate": {"motion": True}}}, {})
    b = store.source_id(str(tmp_path / "B"), "folder")
    store.write_frames(gated, b, [frame("B", 0, "empty", [])], "mediapipe-hands")
    store.close()
    return root


def _suggestions(root: Path):
    from lrihar.project import Project
    from lrihar.review.suggest import suggest_frames

    return suggest_frames(Project.open(root), k=10)


def _client(root: Path, suggestions=None):
    from fastapi.testclient import TestClient

    from lrihar.review.server import create_app

    return TestClient(create_app(root, suggestions=suggestions), base_url="http://127.0.0.1:8765")


def _manual_boxes(root: Path) -> list[tuple]:
    from lrihar.store import Store

    store = Store(root / "lrihar.db")
    try:
        return store.db.execute("SELECT d.id, s.uri, d.frame_index, d.x1, d.y1, d.x2, d.y2, l.label,"
                                " l.provenance FROM detections d JOIN sources s ON s.id = d.source_id"
                                " LEFT JOIN labels l ON l.detection_id = d.id"
                                " WHERE d.backend = 'manual'").fetchall()
    finally:
        store.close()


def _log(root: Path) -> list[tuple]:
    from lrihar.store import Store

    store = Store(root / "lrihar.db")
    try:
        return store.db.execute("SELECT reviewer, action, detection_id, undone FROM review_log ORDER BY id"
                                ).fetchall()
    finally:
        store.close()


def test_uncertain_queue_lists_the_suggested_frames_first_with_their_reasons(root):
    client = _client(root, _suggestions(root))
    assert client.get("/api/meta").json()["queue"] == "uncertain"
    data = client.get("/api/queue").json()
    assert data["total"] == 3
    got = [(it["rank"], it["name"], it["reasons"], len(it["boxes"]), it["status"]) for it in data["items"]]
    assert got == [(1, "a0.jpg", [DISAGREE], 2, "action"), (2, "b0.jpg", [BUSY], 0, "empty"),
                   (3, "a2.jpg", [WEAK], 1, "action")]
    assert [it["score"] for it in data["items"]] == pytest.approx([1.0, 0.8, 0.36])
    assert not any(it["reviewed"] for it in data["items"])
    assert {b["backend"] for b in data["items"][0]["boxes"]} == {"mediapipe-hands", "yolo"}
    page = client.get("/api/queue", params={"offset": 1, "limit": 1}).json()
    assert page["total"] == 3 and [it["name"] for it in page["items"]] == ["b0.jpg"]
    # the default page (--queue all) is today's crop list and has no queue
    plain = _client(root)
    assert plain.get("/api/meta").json()["queue"] == "all"
    assert plain.get("/api/queue").status_code == 404
    assert len(plain.get("/api/crops").json()["items"]) == 4


def test_a_box_drawn_on_a_frame_with_no_box_is_a_persons_clipped_logged_and_undoable(root):
    client = _client(root, _suggestions(root))
    busy = client.get("/api/queue").json()["items"][1]
    ref = {"source": busy["source_id"], "frame_index": busy["frame_index"]}
    assert client.get(f"/api/sources/{ref['source']}/frames/0/boxes").json() == \
        {"width": W, "height": H, "items": [], "check": {"verdict": None}}
    r = client.post("/api/add-to-frame", json={**ref, "xyxy": [100, -20, 400, 60], "label": "gloved_hand",
                                               "reviewer": "ana"})
    assert r.status_code == 200, r.text
    assert r.json()["xyxy"] == [100, 0, W, 60] and r.json()["provenance"] == "corrected"  # clipped
    [box] = _manual_boxes(root)
    assert box[1].endswith("/B") and box[2:] == (0, 100, 0, W, 60, "gloved_hand", "corrected")
    assert _log(root) == [("ana", "add", box[0], 0)]
    done = client.get("/api/queue").json()["items"][1]
    assert done["reviewed"] and [b["id"] for b in done["boxes"]] == [box[0]]  # stays in the queue, done
    undone = client.post("/api/undo", json={"reviewer": "ana"}).json()["items"]
    assert undone == [{"id": box[0], "deleted": True}]
    assert _manual_boxes(root) == [] and _log(root) == [("ana", "add", box[0], 1)]
    assert not client.get("/api/queue").json()["items"][1]["reviewed"]


@pytest.mark.parametrize("body,status,message", [
    ({"frame_index": 7}, 400, "frame 7 of source"),  # no such frame
    ({"source": 99}, 400, "not in the store"),
    ({"label": "cat"}, 400, "not a class of the project"),
    ({"xyxy": [500, 500, 600, 600]}, 400, "at least 2 pixels"),  # wholly outside the frame
    ({"frame_index": -1}, 422, "frame_index"),
    ({"frame_index": True}, 422, "integer"),
    ({"source": "1"}, 422, "integer"),
    ({"xyxy": [1, 2, 3]}, 422, "xyxy"),
    ({"surprise": 1}, 422, "surprise"),
])
def test_a_bad_frame_box_is_refused_and_nothing_is_stored(root, body, status, message):
    client = _client(root)
    before = _log(root), _manual_boxes(root)
    good = {"source": 2, "frame_index": 0, "xyxy": [10, 10, 50, 50], "label": "NG", "reviewer": "ana"}
    r = client.post("/api/add-to-frame", json=good | body)
    assert r.status_code == status and message in r.json()["detail"]
    assert (_log(root), _manual_boxes(root)) == before


def test_stored_frames_are_served_by_source_id_and_index(root):
    client = _client(root)
    full = client.get("/api/sources/2/frames/0.jpg")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert Image.open(__import__("io").BytesIO(full.content)).size == (W, H)
    small = client.get("/api/sources/2/frames/0.jpg", params={"max_side": 40})
    assert Image.open(__import__("io").BytesIO(small.content)).size == (40, 30)
    assert client.get("/api/sources/2/frames/5.jpg").status_code == 404
    assert client.get("/api/sources/2/frames/5/boxes").status_code == 404
    for path in ("/api/sources/0/frames/0.jpg", "/api/sources/1/frames/-1.jpg", "/api/sources/x/frames/0.jpg",
                 "/api/sources/1/frames/0.jpg?max_side=0", "/api/sources/1/frames/%2Fetc%2Fpasswd.jpg"):
        r = client.get(path)
        assert 400 <= r.status_code < 500 and b"root:" not in r.content


def test_review_command_refuses_a_bad_queue(root, capsys):
    assert main(["review", "-p", str(root), "--queue", "hardest"]) == 2
    assert "--queue: use all or uncertain" in capsys.readouterr().err
    assert main(["review", "-p", str(root), "--compare", "yolo"]) == 2
    assert "--queue uncertain" in capsys.readouterr().err


def test_lrihar_review_queue_uncertain_serves_the_ranked_frames(root):
    port = free_port()
    command = [sys.executable, "-m", "lrihar.cli", "review", "-p", str(root), "--port", str(port),
               "--queue", "uncertain", "-n", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queue", timeout=2) as r:
                    data = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    shown = [(it["name"], it["reasons"]) for it in data["items"]]
    assert shown == [("a0.jpg", [DISAGREE]), ("b0.jpg", [BUSY])]
    assert "uncertain queue: 2 frames" in out


def test_browser_draws_a_missed_hand_on_an_empty_suggested_frame_undo_then_export(root, tmp_path):
    from playwright.sync_api import expect

    from lrihar.review.server import create_app

    port = free_port()
    with serving(create_app(root, port=port, suggestions=_suggestions(root)), port), browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".frame-card")
        cards = page.locator(".frame-card")
        assert cards.count() == 3 and page.locator("#crop-filters").is_hidden()
        shown = [(c.locator(".lab").inner_text(), c.locator(".reasons li").all_inner_texts())
                 for c in cards.all()]
        page.fill("#reviewer", "browser-test")
        busy = cards.nth(1)
        assert busy.locator(".thumb rect").count() == 0  # no box on it yet
        busy.click()
        page.keyboard.press("f")
        page.wait_for_selector("#frame.open")
        # a locator assertion, not wait_for_function: that evaluates a string, which the page's CSP
        # refuses (unsafe-eval) whenever the condition is not already true
        expect(page.locator("#frame-img")).to_have_js_property("naturalWidth", W)

        def draw() -> None:
            r = page.locator("#frame-svg").bounding_box()
            page.mouse.move(r["x"] + 0.25 * r["width"], r["y"] + 0.25 * r["height"])
            page.mouse.down()
            page.mouse.move(r["x"] + 0.75 * r["width"], r["y"] + 0.6 * r["height"], steps=5)
            page.mouse.up()

        draw()
        page.locator("#status", has_text="box saved").wait_for()
        page.wait_for_selector("#frame-svg rect")
        drawn = _manual_boxes(root)
        log_after_draw = _log(root)
        page.keyboard.press("u")
        page.locator("#status", has_text="undone (1)").wait_for()
        page.wait_for_selector("#frame-svg rect", state="detached")
        after_undo = _manual_boxes(root), _log(root)
        page.keyboard.press("1")  # draw as the first class
        draw()
        page.locator("#status", has_text="box saved").wait_for()
        page.keyboard.press("Escape")
        page.wait_for_selector(".frame-card.corrected")  # the queue reloads: this frame is done
        marked = page.locator(".frame-card").nth(1).locator(".thumb rect").count()
    assert errors == []
    assert shown == [("#1 · 1.00", [DISAGREE]), ("#2 · 0.80", [BUSY]), ("#3 · 0.36", [WEAK])]
    [(det_id, uri, index, *xyxy, label, provenance)] = drawn
    assert uri.endswith("/B") and index == 0 and (label, provenance) == ("NG", "corrected")
    assert xyxy == pytest.approx([0.25 * W, 0.25 * H, 0.75 * W, 0.6 * H], abs=2)
    assert log_after_draw == [("browser-test", "add", det_id, 0)]
    assert after_undo == ([], [("browser-test", "add", det_id, 1)])
    [(_, _, _, *xyxy, label, _)] = _manual_boxes(root)
    assert label == "gloved_hand" and marked == 1

    out = tmp_path / "yolo"
    assert main(["export", str(out), "-p", str(root), "-f", "yolo", "--yolo-classes", "hand"]) == 0
    labels = {p.name: p.read_text().split() for p in out.glob("labels/*/*.txt")}
    [busy_label] = [v for k, v in labels.items() if k.startswith("b0-")]
    cx, cy, w, h = ((xyxy[0] + xyxy[2]) / 2 / W, (xyxy[1] + xyxy[3]) / 2 / H, (xyxy[2] - xyxy[0]) / W,
                    (xyxy[3] - xyxy[1]) / H)
    assert busy_label[0] == "0"
    assert [float(v) for v in busy_label[1:]] == pytest.approx([cx, cy, w, h], abs=1e-3)
