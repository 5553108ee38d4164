"""Review actions and the review page: every action via the API, concurrency, undo, traversal,
and a real browser relabelling with the keyboard (number keys, and the type-ahead class picker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import CLASSES, make_project
from live_server import browser_page, free_port, serving
from lrihar.errors import BadInputError
from lrihar.review import edits


@pytest.fixture
def client(gloves_project):
    from fastapi.testclient import TestClient

    from lrihar.classify.pipeline import classify
    from lrihar.review.server import create_app

    classify(gloves_project)
    return TestClient(create_app(gloves_project.root), base_url="http://127.0.0.1:8765")


def _first(client, **query):
    return client.get("/api/crops", params={"limit": 5, **query}).json()["items"][0]


def test_crops_are_listed_lowest_score_first_with_filters(client):
    data = client.get("/api/crops", params={"limit": 500}).json()
    scores = [it["score"] for it in data["items"]]
    assert scores == sorted(scores) and data["total"] == len(scores) > 10
    bare = client.get("/api/crops", params={"label": "bare_hand", "limit": 500}).json()
    assert bare["items"] and all(it["label"] == "bare_hand" for it in bare["items"])
    some = client.get("/api/crops", params={"min_score": 0.7, "max_score": 0.8, "limit": 500}).json()
    assert all(0.7 <= it["score"] <= 0.8 for it in some["items"])
    assert client.get("/api/crops", params={"status": "bogus"}).status_code == 400


def test_relabel_is_saved_logged_and_undoable(client, gloves_project):
    it = _first(client)
    new = "gloved_hand" if it["label"] != "gloved_hand" else "bare_hand"
    r = client.post("/api/relabel", json={"ids": [it["id"]], "label": new, "reviewer": "ana",
                                          "seen": {str(it["id"]): it["version"]}})
    assert r.status_code == 200 and r.json()["items"][0]["label"] == new
    row = gloves_project.store.labels()[it["id"]]
    assert (row["label"], row["provenance"]) == (new, "corrected")
    log = gloves_project.store.db.execute("SELECT reviewer, action, before, after FROM review_log").fetchall()
    assert log[-1][:2] == ("ana", "relabel") and it["label"] in log[-1][2] and new in log[-1][3]
    assert client.post("/api/undo", json={"reviewer": "ana"}).status_code == 200
    row = gloves_project.store.labels()[it["id"]]
    assert (row["label"], row["provenance"]) == (it["label"], "auto")
    assert client.post("/api/undo", json={"reviewer": "ana"}).status_code == 400  # nothing left


def test_two_reviewers_never_lose_an_update(client):
    it = _first(client)
    seen = {str(it["id"]): it["version"]}
    first = client.post("/api/relabel", json={"ids": [it["id"]], "label": "NG", "reviewer": "ana",
                                              "seen": seen})
    second = client.post("/api/relabel", json={"ids": [it["id"]], "label": CLASSES[0], "reviewer": "bo",
                                               "seen": seen})
    assert first.status_code == 200 and second.status_code == 409
    assert "changed by someone else" in second.json()["detail"]
    assert _first(client, label="NG", status="reviewed")["id"] == it["id"]


def test_concurrent_clients_from_threads_all_land(client, gloves_project):
    items = client.get("/api/crops", params={"limit": 12}).json()["items"]
    errors = []

    def work(chunk, who):
        for it in chunk:
            r = client.post("/api/relabel", json={"ids": [it["id"]], "label": "NG", "reviewer": who,
                                                  "seen": {str(it["id"]): it["version"]}})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=(items[i::2], f"r{i}")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    labels = gloves_project.store.labels()
    assert all(labels[it["id"]]["label"] == "NG" for it in items)


def test_accept_wrong_box_add_and_promote(client, gloves_project):
    items = client.get("/api/crops", params={"limit": 4}).json()["items"]
    ids = [it["id"] for it in items if it["label"] != "NG"][:2]
    r = client.post("/api/accept", json={"ids": ids, "reviewer": "ana"})
    assert all(x["provenance"] == "corrected" for x in r.json()["items"])
    victim = items[-1]
    assert client.post("/api/wrong", json={"ids": [victim["id"]], "reviewer": "ana"}).status_code == 200
    wrong = client.get("/api/crops", params={"status": "wrong"}).json()["items"]
    assert victim["id"] in {it["id"] for it in wrong}
    assert victim["id"] not in {r.id for r in gloves_project.store.detections()}  # left out downstream
    moved = client.post("/api/box", json={"id": ids[0], "xyxy": [10, 10, 60, 80], "reviewer": "ana"}).json()
    assert moved["xyxy"] == [10, 10, 60, 80]
    bad = client.post("/api/box", json={"id": ids[0], "xyxy": [10, 10, 10, 11], "reviewer": "ana"})
    assert bad.status_code == 400 and "at least 2 pixels" in bad.json()["detail"]
    added = client.post("/api/add", json={"like": ids[0], "xyxy": [100, 100, 200, 220], "label": CLASSES[1],
                                          "reviewer": "ana"}).json()
    boxes = client.get(f"/api/frames/{ids[0]}/boxes").json()["items"]
    assert added["id"] in {b["id"] for b in boxes}
    template = client.post("/api/promote", json={"id": ids[1], "reviewer": "ana"}).json()["template"]
    assert template.endswith(f"review-{ids[1]}.jpg") and (gloves_project.root / "templates").exists()
    assert client.post("/api/undo", json={"reviewer": "ana"}).status_code == 200  # removes the template
    assert not Path(template).exists()
    unknown = client.post("/api/relabel", json={"ids": [ids[0]], "label": "cat", "reviewer": "ana"})
    assert unknown.status_code == 400


def test_actions_need_a_reviewer_and_valid_ids(client):
    for body, field in (({"ids": [1], "label": "NG"}, "reviewer"),
                        ({"ids": [], "label": "NG", "reviewer": "a"}, "ids")):
        r = client.post("/api/relabel", json=body)  # refused by the body's model
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}:")
    missing = {"ids": [999999], "label": "NG", "reviewer": "a"}
    assert client.post("/api/relabel", json=missing).status_code == 400


@pytest.mark.parametrize("path", [
    "/api/crops/..%2F..%2Fetc%2Fpasswd.jpg", "/api/crops/../../etc/passwd", "/api/frames/%2Fetc%2Fpasswd.jpg",
    "/static/../../lrihar.db", "/..%2Flrihar.db", "/api/frames/1.jpg/../../../etc/passwd"])
def test_image_routes_refuse_path_traversal(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422)
    assert b"root:" not in r.content and b"SQLite" not in r.content


def test_images_are_served_by_id(client):
    it = _first(client)
    r = client.get(f"/api/crops/{it['id']}.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert client.get(f"/api/frames/{it['id']}.jpg").status_code == 200
    assert client.get("/api/crops/999999.jpg").status_code == 404


def test_session_time_and_touched_items_are_logged(client, gloves_project):
    session = client.post("/api/session", json={"reviewer": "ana"}).json()["session"]
    items = client.get("/api/crops", params={"limit": 3}).json()["items"]
    for it in items:
        client.post("/api/relabel", json={"ids": [it["id"]], "label": "NG", "reviewer": "ana",
                                          "session": session})
        time.sleep(0.05)
    stats = client.get("/api/stats").json()["sessions"]
    assert stats[-1]["touched"] == 3 and stats[-1]["seconds"] > 0.05
    assert edits.session_stats(gloves_project.store)[-1]["reviewer"] == "ana"
    with pytest.raises(BadInputError, match="give a name"):
        edits.start_session(gloves_project.store, " ")


def test_browser_relabel_with_the_keyboard_survives_a_reload(client, gloves_project):
    from lrihar.review.server import create_app

    port = free_port()
    with serving(create_app(gloves_project.root, port=port), port), browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".card")
        page.fill("#reviewer", "browser-test")
        first = page.locator(".card").first
        det_id = int(first.get_attribute("data-id"))
        target = CLASSES[1]
        first.click()
        page.keyboard.press("2")  # class 2 = bare_hand
        page.locator("#status", has_text="saved").wait_for()  # the page's CSP forbids eval()
        page.reload()
        page.wait_for_selector(".card")
        page.select_option("#f-status", "reviewed")
        page.wait_for_selector(f'.card[data-id="{det_id}"]')
        shown = page.locator(f'.card[data-id="{det_id}"] .lab').inner_text()
    assert shown == target and errors == []
    row = gloves_project.store.labels()[det_id]
    assert (row["label"], row["provenance"]) == (target, "corrected")


def test_lrihar_review_command_serves_the_page(gloves_project):
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lrihar.cli", "review", "-p", str(gloves_project.root),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert "lrihar review" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=5) as r:
            assert b"gloved_hand" in r.read()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in out


# NATO spelling alphabet: 26 classes like the ASL letters set, with shared letters so that prefix
# matches (typed "o": oscar) must come before substring matches (bravo, echo, ...).
NATO = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
        "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
        "uniform", "victor", "whiskey", "xray", "yankee", "zulu")


@pytest.fixture
def letters_project(tmp_path) -> Path:
    """A 26-class project built straight into a real store: two frames, four boxes; detections
    1-3 labelled alpha, alpha, bravo by the matcher (scores rising with the id), 4 unlabelled."""
    import numpy as np
    import supervision as sv
    from PIL import Image

    from lrihar.store import FrameRecord, Store

    root = make_project(tmp_path / "p", classes=[{"name": c} for c in NATO])
    frames = tmp_path / "frames"
    frames.mkdir()
    store = Store(root / "lrihar.db")
    run = store.start_run("test", {}, {})
    src = store.source_id(str(frames), "folder")
    batch = []
    for i in range(2):
        boxes = sv.Detections(xyxy=np.array([[10, 10, 60, 70], [80, 20, 150, 100]], float),
                              confidence=np.array([0.5, 0.6]) + i / 5, class_id=np.array([0, 0]),
                              data={"class_name": np.array(["hand", "hand"])})
        path = frames / f"f{i}.jpg"
        Image.fromarray(np.full((120, 160, 3), 60 + 90 * i, np.uint8)).save(path)
        batch.append((FrameRecord(i, float(i), 160, 120, "action", str(path)), boxes))
    store.write_frames(run, src, batch, "test")
    store.write_auto_labels(run, [(i, label, i / 10, None, None, "k", 0.0)
                                  for i, label in ((1, "alpha"), (2, "alpha"), (3, "bravo"))])
    store.close()
    return root


def _expected_matches(typed: str) -> list[str]:
    q = typed.lower()
    return [n for n in (*NATO, "NG") if n.lower().startswith(q)] + \
        [n for n in (*NATO, "NG") if q in n.lower() and not n.lower().startswith(q)]


def test_browser_class_picker_reaches_all_26_classes_and_the_filter_counts(letters_project):
    from lrihar.review.server import create_app
    from lrihar.store import Store

    port = free_port()
    with serving(create_app(letters_project, port=port), port), browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('.card[data-id="4"]')
        options = page.locator("#f-label option").all_inner_texts()
        assert options[:3] == ["all (4)", "alpha (2)", "bravo (1)"] and len(options) == 1 + 26 + 1 + 1
        assert "quebec (0)" in options and options[-2:] == ["NG (0)", "(unlabelled) (1)"]
        page.fill("#reviewer", "picker-test")
        cards = [int(c.get_attribute("data-id")) for c in page.locator(".card").all()]
        assert cards == [1, 2, 3, 4]  # lowest score first
        picker, names = page.locator("#picker"), page.locator("#picker-list li .name")
        page.locator('.card[data-id="1"]').click()

        page.keyboard.press("/")  # opens, Esc closes with nothing stored
        page.keyboard.type("x")
        assert picker.is_visible() and names.all_inner_texts() == ["xray", "foxtrot"]
        page.keyboard.press("Escape")
        assert not picker.is_visible()

        page.keyboard.press("l")  # a class beyond the ninth, case-insensitive: "Qu" -> quebec
        assert page.locator("#picker-list li").count() == 27 and names.nth(16).inner_text() == "quebec"
        page.keyboard.type("Qu")
        assert names.all_inner_texts() == ["quebec"]
        page.keyboard.press("Enter")
        page.locator("#status", has_text="quebec: saved").wait_for()
        assert not picker.is_visible()

        page.keyboard.press("l")  # the next card: prefix matches first, then substrings; ↓ moves
        page.keyboard.type("o")
        shown = names.all_inner_texts()
        assert shown == _expected_matches("o") and shown[:2] == ["oscar", "bravo"]
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.locator("#status", has_text="bravo: saved").wait_for()

        page.keyboard.press("Shift+ArrowRight")  # cards 3 and 4 at once
        page.keyboard.press("l")
        assert page.locator("#picker-title").inner_text() == "relabel 2 crops"
        page.keyboard.type("zu")
        page.keyboard.press("Enter")
        page.locator("#status", has_text="zulu: saved (2)").wait_for()
        page.locator("#f-label option", has_text="zulu (2)").wait_for(state="attached")
        options = page.locator("#f-label option").all_inner_texts()

        page.reload()
        page.wait_for_selector('.card[data-id="4"]')
        shown_labels = {i: page.locator(f'.card[data-id="{i}"] .lab').inner_text() for i in (1, 2, 3, 4)}
    assert errors == []
    assert {"quebec (1)", "bravo (1)", "alpha (0)", "zulu (2)", "(unlabelled) (0)", "all (4)"} <= set(options)
    expected = {1: "quebec", 2: "bravo", 3: "zulu", 4: "zulu"}
    assert shown_labels == expected
    store = Store(letters_project / "lrihar.db")
    labels = store.labels()
    assert {i: (labels[i]["label"], labels[i]["provenance"]) for i in expected} == \
        {i: (lab, "corrected") for i, lab in expected.items()}
    log = store.db.execute("SELECT action, detection_id FROM review_log ORDER BY id").fetchall()
    assert log == [("relabel", 1), ("relabel", 2), ("relabel", 3), ("relabel", 4)]  # Esc stored nothing
    store.close()
