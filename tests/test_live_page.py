"""The live page of ``lrihar run --serve``: its JSON state, security headers and bounded memory,
and in a real headless Chromium the picture updating, the checklist and an alert arriving."""

from __future__ import annotations

import time

import numpy as np
import pytest
import supervision as sv

from live_server import browser_page
from lrihar.errors import BadInputError
from lrihar.events import ActionEvent, Alert, Cycle, Gap, StepStatus
from lrihar.runtime.live import LivePage
from lrihar.runtime.pipeline import FrameView
from lrihar.sources import Frame

SOURCE = "rtsp://op:secret@10.0.0.7:554/line1"


def view(index: int, steps: list[StepStatus], cycle_id: int | None = 1, source: str = SOURCE) -> FrameView:
    """A 320×240 frame with a square moving right, tracked as hand #7."""
    image = np.full((240, 320, 3), 40, np.uint8)
    x = 20 + 10 * index
    image[100:160, x:x + 60] = (220, 180, 140)
    dets = sv.Detections(xyxy=np.array([[x, 100, x + 60, 160]], np.float32), tracker_id=np.array([7]),
                         confidence=np.array([0.9], np.float32))
    frame = Frame(source, index, index / 30, image)
    return FrameView(source, "post1", frame, dets, ["screw"], steps, cycle_id)


def steps(done: int) -> list[StepStatus]:
    names = ["pick", "screw", "check"]
    return [StepStatus(n, done=i < done, seconds=1.5 if i < done else 0.0) for i, n in enumerate(names)]


def event(i: int, state: str = "new") -> ActionEvent:
    return ActionEvent(i, "post1", SOURCE, 7, "screw", 1.0 * i, 1.0 * i + 0.5, 0.8, state=state)


@pytest.fixture
def page():
    live = LivePage(port=0, fps_cap=20, history=5).start()
    try:
        yield live
    finally:
        live.close()


def test_state_endpoint_security_headers_and_pictures(page):
    import httpx

    page(view(0, steps(1)))
    for i in range(1, 9):
        page.emit(event(i))
    page.emit(event(8, "end"))
    page.emit(Cycle(1, "post1", 0.0, 12.5, ["pick", "screw"], missing=["check"]))
    page.emit(Alert(1, "post1", 1, "missing", "check", 12.5, "check was not done"))
    page.emit(Alert(2, "post1", 2, "too_short", "screw", 14.0, "screw took 0.2 s"))
    page.emit(Gap(1, SOURCE, "post1", 15.0, None, "stream dropped"))
    base = page.url.rstrip("/")
    with httpx.Client(base_url=base) as client:
        r = client.get("/api/state")
        assert r.status_code == 200
        for header in ("content-security-policy", "x-content-type-options"):
            assert header in r.headers
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        st = r.json()
        assert [a["id"] for a in st["alerts"]] == [2, 1]  # newest first
        (post,) = st["posts"]
        assert post["cycle_id"] == 1 and [s["done"] for s in post["checklist"]] == [True, False, False]
        assert [c["cycle_time"] for c in post["cycles"]] == [12.5] and post["cycles"][0]["ok"] is False
        # bounded: 5 kept; event 8's end moved it to the top, once; the gap is newest
        assert [(e["type"], e["id"]) for e in st["events"]] == [("gap", 1), ("event", 8), ("event", 7),
                                                                ("event", 6), ("event", 5)]
        assert st["events"][1]["state"] == "end"
        (src,) = st["sources"]
        assert src["gap"] == "stream dropped" and "secret" not in r.text and src["source"].startswith("rtsp://10.")
        pic = client.get("/frame/0.jpg")
        assert pic.status_code == 200 and pic.headers["content-type"] == "image/jpeg"
        assert pic.content[:2] == b"\xff\xd8" and pic.headers["x-frame-seq"] == "1"
        assert client.get("/frame/1.jpg").status_code == 404
        assert client.get("/").headers["content-type"].startswith("text/html")
        assert client.get("/static/live.js").status_code == 200
        assert client.post("/api/state").status_code == 405  # read-only
        # another name for this server (DNS rebinding) is refused by the review page's guard
        assert client.get("/api/state", headers={"Host": f"evil.example:{page.port}"}).status_code == 400


def test_pictures_are_encoded_lazily_at_most_fps_cap():
    live = LivePage(fps_cap=2)
    slot_view = view(0, steps(0))
    started = time.perf_counter()
    for i in range(200):
        live(view(i, steps(0)) if i else slot_view)
    per_frame = (time.perf_counter() - started) / 200
    assert live.pictures.encoded == 0  # nobody watching: nothing drawn
    slot = live.state.slot(0)
    seq, first = live.pictures.jpeg(slot)
    live(view(300, steps(0)))
    again = live.pictures.jpeg(slot)  # a newer frame, but within 1 / fps_cap: the cached picture
    assert again == (seq, first) and live.pictures.encoded == 1
    time.sleep(0.55)
    assert live.pictures.jpeg(slot)[0] == seq + 1 and live.pictures.encoded == 2
    assert per_frame < 0.005  # the observer itself only keeps a reference (view() building included)


def test_busy_port_and_token_beyond_loopback(page):
    with pytest.raises(BadInputError, match="cannot listen"):
        LivePage(port=page.port).start()
    assert LivePage(host="127.0.0.1").token is None
    assert LivePage(host="0.0.0.0").token  # a per-launch token, as `lrihar review` does


def test_a_token_is_needed_when_given():
    import httpx

    with LivePage(token="s3cret-token") as live:
        assert live.url.endswith("/?token=s3cret-token")
        base = live.url.split("?")[0].rstrip("/")
        assert httpx.get(f"{base}/api/state").status_code == 401
        assert httpx.get(f"{base}/api/state", headers={"X-Lrihar-Token": "wrong"}).status_code == 403
        assert httpx.get(f"{base}/api/state", headers={"X-Lrihar-Token": "s3cret-token"}).status_code == 200
        with httpx.Client() as client:  # the browser's way: the address with the token sets a cookie
            assert client.get(live.url).status_code == 200
            assert client.get(f"{base}/frame/0.jpg").status_code == 404  # let in; no frame yet


def test_browser_shows_frames_checklist_and_a_new_alert(page):
    page(view(0, steps(1)))
    page.emit(Cycle(1, "post1", 0.0, 10.0, ["pick", "screw", "check"], complete=True))
    with browser_page() as browser:
        errors: list[str] = []
        browser.on("pageerror", lambda e: errors.append(str(e)))
        browser.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        browser.goto(page.url)
        browser.wait_for_function("() => { const i = document.querySelector('img.frame');"
                                  " return i && i.complete && i.naturalWidth > 0 && i.dataset.seq === '1'; }",
                                  timeout=5000)
        assert browser.eval_on_selector("img.frame", "i => i.naturalWidth") == 320
        rows = browser.locator(".checklist li")
        rows.nth(2).wait_for()
        assert rows.all_inner_texts()[0].startswith("✓pick") and "done" in rows.nth(0).get_attribute("class")
        assert rows.nth(1).get_attribute("class") in ("", None) and "☐" in rows.nth(1).inner_text()
        assert browser.locator(".chart rect").count() == 1
        assert browser.locator("#alerts li.alert").count() == 0
        # the run goes on: a new frame with the next step done, and an alert
        page(view(5, steps(2)))
        page.emit(Alert(3, "post1", 2, "out_of_order", "check", 20.0, "check came before <b>screw</b>"))
        browser.wait_for_function("() => document.querySelector('img.frame').dataset.seq === '2'",
                                  timeout=5000)
        alert = browser.locator("#alerts li.alert[data-id='3']")
        alert.wait_for(timeout=5000)
        assert "check came before <b>screw</b>" in alert.inner_text()  # text, never markup
        assert browser.locator("#alerts b").count() == 0 and "fresh" in alert.get_attribute("class")
        assert "done" in browser.locator(".checklist li").nth(1).get_attribute("class")
    assert errors == []
