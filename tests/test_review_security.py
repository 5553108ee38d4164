"""The review page against a hostile world: markup in labels and class names, foreign Hosts and
Origins, a server beyond loopback without its token, and junk request bodies.

The project here is tiny and built straight into a real store (two image frames, four boxes),
so each test takes milliseconds; the browser tests drive real headless Chromium.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_project
from live_server import browser_page, free_port, serving

MARKUP_CLASS = "<img src=x onerror=window.__pwnedClass=1>"  # a legal class name: no slash, short
LINE = "<b onmouseover=window.__pwnedLine=1>line</b>"
FETCH_PAYLOAD = ("<img src=x onerror=\"window.__pwned=1;fetch('/api/wrong',{method:'POST',"
                 "headers:{'Content-Type':'application/json'},body:JSON.stringify({ids:[1],reviewer:'x'})})\">")
AUTO_PAYLOAD = "<img src=y onerror=window.__pwnedAuto=1>"
BASE = "http://127.0.0.1:8765"


@pytest.fixture
def project(tmp_path) -> Path:
    """A project with a class name made of markup; detection 1 is labelled with a script that would
    mark it wrong through the API, detection 2 with the markup class, detection 3 has a markup
    ``auto_label``."""
    import supervision as sv

    from lrihar.store import FrameRecord, Store

    root = make_project(tmp_path / "p", line=LINE, classes=[{"name": "gloved_hand"}, {"name": MARKUP_CLASS}])
    frames = tmp_path / "frames"
    frames.mkdir()
    store = Store(root / "lrihar.db")
    run = store.start_run("test", {}, {})
    src = store.source_id(str(frames), "folder")
    boxes = sv.Detections(xyxy=np.array([[10, 10, 60, 70], [80, 20, 150, 100]], float),
                          confidence=np.array([0.9, 0.8]), class_id=np.array([0, 0]),
                          data={"class_name": np.array(["hand", "hand"])})
    batch = []
    for i in range(2):
        path = frames / f"f{i}.jpg"
        Image.fromarray(np.full((120, 160, 3), 50 + 100 * i, np.uint8)).save(path)
        batch.append((FrameRecord(i, float(i), 160, 120, "action", str(path)), boxes))
    store.write_frames(run, src, batch, "test")
    ids = [r[0] for r in store.db.execute("SELECT id FROM detections ORDER BY id")]
    assert ids == [1, 2, 3, 4]
    store.write_auto_labels(run, [(i, "gloved_hand", 0.5 + i / 10, None, None, "k", 0.5) for i in ids])
    with store.transaction() as db:
        db.execute("UPDATE labels SET label=? WHERE detection_id=1", (FETCH_PAYLOAD,))
        db.execute("UPDATE labels SET label=? WHERE detection_id=2", (MARKUP_CLASS,))
        db.execute("UPDATE labels SET auto_label=? WHERE detection_id=3", (AUTO_PAYLOAD,))
    store.close()
    return root


def _client(root: Path, base: str = BASE, **kwargs):
    from fastapi.testclient import TestClient

    from lrihar.review.server import create_app

    port = int(base.rsplit(":", 1)[1])
    return TestClient(create_app(root, port=port, **kwargs), base_url=base, raise_server_exceptions=False)


@pytest.fixture
def client(project):
    return _client(project)


def _snapshot(root: Path) -> list:
    """Everything a review action could change."""
    from lrihar.store import Store

    store = Store(root / "lrihar.db")
    try:
        return [store.db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in ("labels", "detections", "review_log", "review_sessions", "frame_reviews")]
    finally:
        store.close()


# -- the page -----------------------------------------------------------------------------------

def test_markup_in_labels_and_class_names_runs_nothing_in_the_browser(project):
    from lrihar.review.server import create_app

    before = _snapshot(project)
    port = free_port()
    with serving(create_app(project, port=port), port), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('.card[data-id="3"]')
        page.wait_for_load_state("networkidle")  # the crops' images have failed or loaded
        page.locator('.card[data-id="1"]').click()
        page.keyboard.press("f")  # the frame view draws its boxes too
        page.wait_for_selector("#frame-svg rect")
        page.wait_for_load_state("networkidle")
        page.keyboard.press("Escape")
        page.keyboard.press("l")  # the class picker shows class names as text too
        page.keyboard.type("<IMG")
        picked = page.locator("#picker-list li .name").all_inner_texts()
        page.keyboard.press("Escape")
        flags = page.evaluate("[window.__pwned, window.__pwnedClass, window.__pwnedAuto, window.__pwnedLine]")
        shown = {i: page.locator(f'.card[data-id="{i}"] .lab').inner_text() for i in (1, 2)}
        meta3 = page.locator('.card[data-id="3"] .meta').inner_text()
        options = page.locator("#f-label option").all_inner_texts()
        title = page.locator("#title").inner_text()
        rects = page.locator("#frame-svg rect").count()
    assert flags == [None, None, None, None]  # no handler ran
    assert shown == {1: FETCH_PAYLOAD, 2: MARKUP_CLASS}  # the text is shown as it is
    assert meta3.endswith(f"was {AUTO_PAYLOAD}") and title.endswith(LINE)
    assert f"{MARKUP_CLASS} (1)" in options and f"{FETCH_PAYLOAD} (1)" in options  # counted, shown as text
    assert picked == [MARKUP_CLASS]
    assert rects == 2
    assert _snapshot(project) == before  # nothing was marked wrong behind the reviewer's back


def test_markup_in_suggested_frames_and_reasons_runs_nothing_in_the_browser(project, tmp_path):
    from lrihar.review.server import create_app
    from lrihar.review.suggest import Suggestion

    frames = str(tmp_path / "frames")  # the fixture's source
    pick = Suggestion(frames, 1, f"{frames}/{AUTO_PAYLOAD}.jpg", "f1.jpg", "action", 0.5,
                      reasons=[FETCH_PAYLOAD])
    before = _snapshot(project)
    port = free_port()
    with serving(create_app(project, port=port, suggestions=[pick]), port), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".frame-card")
        page.wait_for_load_state("networkidle")
        page.keyboard.press("f")  # the frame view lists the class names to draw as
        page.wait_for_selector("#frame-svg rect")
        draw_as = page.locator("#frame-class option").all_inner_texts()
        page.keyboard.press("Escape")
        flags = page.evaluate("[window.__pwned, window.__pwnedClass, window.__pwnedAuto, window.__pwnedLine]")
        reasons = page.locator(".frame-card .reasons li").all_inner_texts()
        meta = page.locator(".frame-card .meta").inner_text()
    assert flags == [None, None, None, None]
    assert reasons == [FETCH_PAYLOAD] and meta.startswith(f"{AUTO_PAYLOAD}.jpg · ")
    assert draw_as == ["gloved_hand", MARKUP_CLASS, "NG"]
    assert _snapshot(project) == before


def test_non_loopback_page_opens_with_its_token_link_and_keeps_working(project):
    from lrihar.review.server import create_app

    port, token = free_port(), "tok-" + "x" * 30
    app = create_app(project, host="0.0.0.0", port=port, token=token)
    with serving(app, port), browser_page() as page:
        refused = page.goto(f"http://127.0.0.1:{port}/")
        assert refused.status == 401 and "token" in refused.text()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        page.wait_for_selector('.card[data-id="4"]')
        assert "token" not in page.url  # taken out of the address bar once it is a cookie
        cookie = next(c for c in page.context.cookies() if c["name"] == f"lrihar_token_{port}")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        page.fill("#reviewer", "ana")
        page.locator('.card[data-id="4"]').click()
        page.keyboard.press("1")
        page.locator("#status", has_text="saved").wait_for()
    from lrihar.store import Store

    row = Store(project / "lrihar.db").labels()[4]
    assert (row["label"], row["provenance"]) == ("gloved_hand", "corrected")


# -- headers, Host, Origin, token -------------------------------------------------------------

def test_every_response_carries_the_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and "<script>" not in page.text and "<style>" not in page.text
    script = client.get("/static/review.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    responses = [page, script, client.get("/static/review.css"), client.get("/api/meta"),
                 client.get("/api/crops/1.jpg"), client.get("/api/crops/99.jpg"),
                 client.get("/static/nope.js"), client.post("/api/wrong", json={}),
                 client.get("/", headers={"host": "evil.example"})]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 404, 422, 400]
    for r in responses:
        csp = r.headers["content-security-policy"]
        rules = ("default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'")
        assert all(rule in csp for rule in rules)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1:9999",
                                  "127.0.0.1.evil.example:8765", "", "[::1", "127.0.0.1:abc",
                                  "evil.example@127.0.0.1:8765", "127.0.0.1:8765/x"])
def test_a_foreign_host_is_refused(client, project, host):
    before = _snapshot(project)
    assert client.get("/api/meta", headers={"host": host}).status_code == 400
    r = client.post("/api/wrong", json={"ids": [4], "reviewer": "x"}, headers={"host": host})
    assert r.status_code == 400 and "Host" in r.json()["detail"]
    assert _snapshot(project) == before


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"])
def test_loopback_names_are_this_server(client, host):
    assert client.get("/api/meta", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"}, {"origin": "null"},
                                     {"origin": "http://127.0.0.1:9999"}, {"origin": "http://localhost:8765"},
                                     {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}])
def test_a_cross_origin_write_is_refused(client, project, headers):
    before = _snapshot(project)
    r = client.post("/api/wrong", json={"ids": [4], "reviewer": "x"}, headers=headers)
    assert r.status_code == 403 and "may not change labels" in r.json()["detail"]
    assert _snapshot(project) == before


def test_a_cross_origin_box_on_a_frame_is_refused(client, project):
    before = _snapshot(project)
    body = {"source": 1, "frame_index": 0, "xyxy": [10, 10, 50, 60], "label": "NG", "reviewer": "x"}
    r = client.post("/api/add-to-frame", json=body, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and _snapshot(project) == before
    foreign = client.post("/api/add-to-frame", json=body, headers={"host": "evil.example:8765"})
    assert foreign.status_code == 400
    empty = {"source": 1, "frame_index": 0, "empty": False, "reviewer": "x"}
    r = client.post("/api/mark-empty", json=empty, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert _snapshot(project) == before


def test_a_same_origin_write_and_a_script_without_origin_are_served(client, project):
    r = client.post("/api/wrong", json={"ids": [4], "reviewer": "x"},
                    headers={"origin": BASE, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200
    assert client.post("/api/undo", json={"reviewer": "x"}).status_code == 200  # no Origin: curl, scripts
    assert client.get("/api/crops", headers={"origin": "http://evil.example"}).status_code == 200  # reads


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_does_not_say_it_is_json_is_refused(client, project, content_type):
    # what a cross-site page can send without a CORS preflight (fastapi>=0.132: strict content types)
    before = _snapshot(project)
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/api/wrong", content=json.dumps({"ids": [4], "reviewer": "x"}), headers=headers)
    assert 400 <= r.status_code < 500
    assert _snapshot(project) == before


def test_a_server_beyond_loopback_needs_its_token(project):
    from lrihar.review.server import create_app

    with pytest.raises(ValueError, match="must have a token"):
        create_app(project, host="0.0.0.0")
    token = "per-launch-token"
    client = _client(project, "http://192.168.1.5:8765", host="0.0.0.0", token=token)
    body = {"ids": [4], "reviewer": "x"}
    before = _snapshot(project)
    assert client.post("/api/wrong", json=body).status_code == 401
    assert client.get("/api/crops").status_code == 401
    assert client.get("/").status_code == 401
    assert client.post("/api/wrong", json=body, headers={"x-lrihar-token": "guess"}).status_code == 403
    assert client.post("/api/wrong?token=" + token, json=body).status_code == 401  # only the page takes it
    assert client.get("/", params={"token": "guess"}).status_code == 403
    assert _snapshot(project) == before
    assert client.post("/api/wrong", json=body, headers={"x-lrihar-token": token}).status_code == 200
    assert _snapshot(project)[1][3][-1] == 1  # detection 4 rejected

    opened = client.get("/", params={"token": token})
    cookie = opened.headers["set-cookie"]
    assert opened.status_code == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.post("/api/undo", json={"reviewer": "x"}).status_code == 200  # the cookie carries it
    assert client.get("/api/crops").status_code == 200

    # bound to one address, only that name (and loopback's) is this server
    named = _client(project, "http://192.168.1.5:8765", host="192.168.1.5", token=token)
    assert named.get("/api/meta", headers={"x-lrihar-token": token}).status_code == 200
    foreign = named.get("/api/meta", headers={"x-lrihar-token": token, "host": "evil.example:8765"})
    assert foreign.status_code == 400


def test_the_printed_address_carries_the_token_only_beyond_loopback():
    from lrihar.web.guard import launch_token, page_url

    assert [launch_token(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2")] == [None] * 4
    token = launch_token("0.0.0.0")
    assert token and len(token) >= 32 and token != launch_token("0.0.0.0")
    assert page_url("127.0.0.1", 8765, None) == "http://127.0.0.1:8765/"
    assert page_url("192.168.1.5", 80, "abc") == "http://192.168.1.5:80/?token=abc"
    assert page_url("::1", 8765, None) == "http://[::1]:8765/"
    assert page_url("0.0.0.0", 8765, "abc").endswith(":8765/?token=abc")


# -- bodies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("route,body", [
    ("/api/wrong", {"ids": [1.9], "reviewer": "x"}),
    ("/api/wrong", {"ids": [True], "reviewer": "x"}),
    ("/api/wrong", {"ids": ["1"], "reviewer": "x"}),
    ("/api/accept", {"ids": [1.0], "reviewer": "x"}),
    ("/api/relabel", {"ids": [True], "label": "NG", "reviewer": "x"}),
    ("/api/box", {"id": 1.9, "xyxy": [10, 10, 50, 50], "reviewer": "x"}),
    ("/api/add", {"like": True, "xyxy": [10, 10, 50, 50], "label": "NG", "reviewer": "x"}),
    ("/api/add-to-frame", {"source": True, "frame_index": 0, "xyxy": [10, 10, 50, 50], "label": "NG",
                           "reviewer": "x"}),
    ("/api/add-to-frame", {"source": 1, "frame_index": 0.0, "xyxy": [10, 10, 50, 50], "label": "NG",
                           "reviewer": "x"}),
    ("/api/promote", {"id": True, "reviewer": "x"}),
    ("/api/mark-empty", {"source": 1, "frame_index": 1.0, "reviewer": "x"}),
    ("/api/wrong", {"ids": [1], "reviewer": "x", "session": True}),
])
def test_ids_must_be_integers(client, project, route, body):
    before = _snapshot(project)
    r = client.post(route, json=body)
    assert r.status_code == 422 and "integer" in r.json()["detail"]
    assert _snapshot(project) == before  # detection 1 untouched


@pytest.mark.parametrize("raw", [
    b"{", b"", b"[]", b"null", b'"x"', b"1e999", b"{'ids': [1]}", b"[" * 100_000,
    b'{"ids": [1180591620717411303424], "reviewer": "x"}',
    b'{"ids": [-1], "reviewer": "x"}',
    b'{"ids": "1", "reviewer": "x"}',
    b'{"ids": [1], "reviewer": ""}',
    b'{"ids": [1], "reviewer": "   "}',
    b'{"ids": [1], "reviewer": "a\\u0000b"}',
    b'{"ids": [1], "reviewer": {"name": "x"}}',
    b'{"ids": [1], "reviewer": "x", "seen": {"one": 0}}',
    b'{"ids": [1], "reviewer": "x", "seen": {"1": 1.5}}',
    b'{"ids": [1], "reviewer": "x", "seen": [1]}',
    b'{"ids": [1], "reviewer": "x", "surprise": 1}',
])
def test_malformed_bodies_get_a_4xx_with_a_message(client, project, raw):
    before = _snapshot(project)
    r = client.post("/api/wrong", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert _snapshot(project) == before


@pytest.mark.parametrize("xyxy", [[1, 2, 3], [1, 2, 3, 4, 5], [10, 10, 50, "60"], [10, 10, 50, True],
                                  [10, 10, 50, None], "10,10,50,60", {"x": 1}])
def test_boxes_are_four_numbers(client, project, xyxy):
    before = _snapshot(project)
    assert client.post("/api/box", json={"id": 1, "xyxy": xyxy, "reviewer": "x"}).status_code == 422
    added = client.post("/api/add", json={"like": 1, "xyxy": xyxy, "label": "NG", "reviewer": "x"})
    assert added.status_code == 422
    drawn = client.post("/api/add-to-frame", json={"source": 1, "frame_index": 0, "xyxy": xyxy, "label": "NG",
                                                   "reviewer": "x"})
    assert drawn.status_code == 422
    assert _snapshot(project) == before


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_boxes_are_finite(client, project, number):
    before = _snapshot(project)
    raw = b'{"id": 1, "reviewer": "x", "xyxy": [10, 10, 50, ' + number + b"]}"
    r = client.post("/api/box", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["detail"]
    assert _snapshot(project) == before


@pytest.mark.parametrize("route,body", [
    ("/api/accept", {"ids": [3]}), ("/api/relabel", {"ids": [3], "label": "NG"}),
    ("/api/add-to-frame", {"source": 1, "frame_index": 0, "label": "NG", "xyxy": [10, 10, 50, 60]}),
    ("/api/mark-empty", {"source": 1, "frame_index": 0, "empty": False})])
def test_an_unknown_review_session_is_a_clear_400(client, project, route, body):
    before = _snapshot(project)
    r = client.post(route, json=body | {"reviewer": "x", "session": 2**31})
    assert r.status_code == 400 and "review session 2147483648 does not exist" in r.json()["detail"]
    assert _snapshot(project) == before


def test_labels_and_reviewers_are_bounded(client, project):
    before = _snapshot(project)
    for body in ({"ids": [1], "label": "x" * 65, "reviewer": "x"}, {"ids": [1], "label": "", "reviewer": "x"},
                 {"ids": [1], "label": "NG", "reviewer": "x" * 101}):
        assert client.post("/api/relabel", json=body).status_code == 422
    assert _snapshot(project) == before


def test_repeated_ids_count_once_and_lists_are_bounded(client, project):
    r = client.post("/api/relabel", json={"ids": [4] * 5, "label": "NG", "reviewer": "x"})
    assert r.status_code == 200 and [it["id"] for it in r.json()["items"]] == [4]
    assert len(_snapshot(project)[2]) == 1  # one log row, not five
    before = _snapshot(project)
    many = client.post("/api/wrong", json={"ids": list(range(1, 1002)), "reviewer": "x"})
    assert many.status_code == 422 and "ids" in many.json()["detail"]
    assert client.post("/api/wrong", json={"ids": [4] * 20_000, "reviewer": "x"}).status_code == 422
    assert _snapshot(project) == before


def test_an_oversize_body_gets_413(client, project):
    before = _snapshot(project)
    big = json.dumps({"ids": [4], "reviewer": "x", "pad": "y" * 1_100_000})
    r = client.post("/api/wrong", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():  # no Content-Length: the bytes are counted as they arrive
        yield b'{"ids": [4], "reviewer": "'
        for _ in range(200):
            yield b"y" * 10_000
        yield b'"}'

    r = client.post("/api/wrong", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    lying = client.post("/api/wrong", content=b"{}", headers={"content-type": "application/json",
                                                             "content-length": "abc"})
    assert lying.status_code == 400
    assert _snapshot(project) == before


@pytest.mark.parametrize("path", ["/api/crops/1180591620717411303424.jpg", "/api/frames/-1.jpg",
                                  "/api/frames/99999999999999999999999/boxes", "/api/crops/1.jpg?padding=nan",
                                  "/api/crops?offset=1180591620717411303424", "/api/crops?min_score=nan",
                                  "/api/crops?max_score=inf", "/api/crops?limit=0",
                                  "/api/crops?status=" + "x" * 5000])
def test_bad_paths_and_queries_get_a_4xx(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500 and isinstance(r.json()["detail"], str)


VALID = {"/api/session": {"reviewer": "fuzz"},
         "/api/relabel": {"ids": [4], "label": "NG", "reviewer": "fuzz"},
         "/api/accept": {"ids": [3], "reviewer": "fuzz"}, "/api/wrong": {"ids": [2], "reviewer": "fuzz"},
         "/api/box": {"id": 1, "xyxy": [10, 10, 50, 60], "reviewer": "fuzz"},
         "/api/add": {"like": 1, "xyxy": [10, 10, 50, 60], "label": "NG", "reviewer": "fuzz"},
         "/api/add-to-frame": {"source": 1, "frame_index": 1, "xyxy": [10, 10, 50, 60], "label": "NG",
                               "reviewer": "fuzz"},
         "/api/promote": {"id": 2, "reviewer": "fuzz"}, "/api/undo": {"reviewer": "fuzz"},
         "/api/mark-empty": {"source": 1, "frame_index": 1, "reviewer": "fuzz"}}
FIELDS = ["ids", "id", "like", "source", "frame_index", "label", "reviewer", "session", "seen", "xyxy",
          "empty", "extra"]


def _junk(rng: random.Random, depth: int = 0):
    """A JSON value: plausible (ids that exist, class names, boxes) or hostile."""
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return rng.choice([0, 1, 2, 3, 4, -1, 99, 2**31, 2**63, 2**70, -(2**70)])
    if kind == 1:
        return rng.choice([0.5, 1.9, -0.0, 1e308, 1e-308, 4.0])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind in (3, 4):
        return rng.choice(["", "x", "NG", "gloved_hand", MARKUP_CLASS, "\x00", "é" * 70, "1", "[1]",
                           " fuzz "])
    if kind in (5, 6):
        return rng.choice([[], [1], [4], [4, 4], [1, 2, 3, 4], [1.5], ["4"], [None], [[1]], [2**70]])
    if kind == 7:
        return rng.choice([[0, 0, 160, 120], [50, 50, 10, 10], [-1e9, -1e9, 1e9, 1e9], [1e308] * 4,
                           [10, 10, 11, 11], [0, 0, 0, 0]])
    if kind in (8, 9):
        return {k: _junk(rng, depth + 1) for k in rng.sample(FIELDS, rng.randrange(1, len(FIELDS)))}
    if kind == 10:
        return {str(rng.choice([1, 2, 3, 4, 99, 2**70, -1])): _junk(rng, depth + 1)}  # a "seen"
    return [_junk(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_no_route_answers_500_to_junk(client):
    rng = random.Random(8)
    statuses: dict[int, int] = {}
    for _ in range(800):  # enough for every route to meet both good and bad bodies
        route = rng.choice(list(VALID))
        body = json.loads(json.dumps(VALID[route]))
        if rng.random() < 0.1:
            body = _junk(rng)
        else:
            for _ in range(rng.randrange(3)):
                body[rng.choice([*body, *FIELDS])] = _junk(rng)
        r = client.post(route, json=body)
        assert r.status_code < 500, (route, body, r.text)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if rng.random() < 0.2:
            raw = json.dumps(body).encode()
            cut = raw[: rng.randrange(len(raw) + 1)]
            r = client.post(route, content=cut, headers={"content-type": "application/json"})
            assert r.status_code < 500, (route, cut, r.text)
    for _ in range(100):
        path = rng.choice(["/api/crops/{}.jpg", "/api/frames/{}.jpg", "/api/frames/{}/boxes",
                           "/api/sources/{}/frames/{}.jpg", "/api/sources/{}/frames/{}/boxes"])
        r = client.get(path.format(*(rng.choice(["1", "0", "-5", "1.5", "true", "x", str(2**70), "%00"])
                                     for _ in range(path.count("{}")))))
        assert r.status_code < 500, (path, r.text)
    assert statuses.get(200, 0) > 20 and statuses.get(400, 0) > 20, statuses  # the actions ran, too
