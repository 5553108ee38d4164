"""Review actions and the review page: every action via the API, concurrency, undo, traversal,
and a real browser relabelling with the keyboard."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import CLASSES
from lrihar.errors import BadInputError
from lrihar.review import actions


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
    assert actions.session_stats(gloves_project.store)[-1]["reviewer"] == "ana"
    with pytest.raises(BadInputError, match="give a name"):
        actions.start_session(gloves_project.store, " ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_browser_relabel_with_the_keyboard_survives_a_reload(client, gloves_project):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium on this machine (scripts/install.sh installs it): browser test not run")
    import uvicorn
    from playwright.sync_api import sync_playwright

    from lrihar.review.server import create_app

    port = _free_port()
    app = create_app(gloves_project.root, port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
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
            browser.close()
        assert shown == target and errors == []
        row = gloves_project.store.labels()[det_id]
        assert (row["label"], row["provenance"]) == (target, "corrected")
    finally:
        server.should_exit = True
        thread.join(10)


def test_lrihar_review_command_serves_the_page(gloves_project):
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
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
