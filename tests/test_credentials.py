"""Secrets stay out of what is shown and stored: a camera URL's password and the MQTT password
never reach the store's sources, errors or run records, nor a source's display name."""

from __future__ import annotations

import json

import pytest

from lrihar.cli import main
from lrihar.credentials import mask_config, mask_text
from lrihar.project import Project, init_project
from lrihar.sources import StreamSource

SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize("text, shown", [
    (f"rtsp://admin:{SECRET}@10.0.0.7:554/live", "rtsp://admin:***@10.0.0.7:554/live"),
    (f"cannot open http://cam/x.mjpg?user=a&password={SECRET}&ch=1: refused",
     "cannot open http://cam/x.mjpg?user=a&password=***&ch=1: refused"),
    (f"rtsp://u:{SECRET}@h/a?token={SECRET}", "rtsp://u:***@h/a?token=***"),
    ("rtsp://10.0.0.7/live?ch=1", "rtsp://10.0.0.7/live?ch=1"),  # nothing secret: unchanged
    ("/data/line 1/clip.mp4", "/data/line 1/clip.mp4"),
])
def test_urls_are_masked(text, shown):
    assert mask_text(text) == shown


def test_configs_are_masked_at_every_depth():
    cfg = {"run": {"mqtt": {"host": "broker", "username": "line", "password": SECRET}},
           "sources": [f"rtsp://admin:{SECRET}@cam/1"], "token": None}
    masked = mask_config(cfg)
    assert SECRET not in json.dumps(masked)
    assert masked["run"]["mqtt"] == {"host": "broker", "username": "line", "password": "***"}
    assert masked["sources"] == ["rtsp://admin:***@cam/1"] and masked["token"] is None
    assert SECRET in json.dumps(cfg)  # the original is left as it was


def test_a_stream_source_opens_with_its_password_and_shows_none():
    url = f"rtsp://admin:{SECRET}@127.0.0.1:9/live"
    source = StreamSource(url, reconnects=0)
    assert source.open_uri == url and SECRET not in source.uri
    assert list(source) == []  # nothing listens there
    assert source.errors and all(SECRET not in e.message and SECRET not in e.source_id for e in source.errors)


def test_annotate_of_a_camera_stores_no_password(tmp_path):
    root = tmp_path / "p"
    init_project(root)
    url = f"http://admin:{SECRET}@127.0.0.1:9/cam.mjpg?password={SECRET}"
    main(["annotate", "-p", str(root), url, "--no-progress"])  # the camera is down: errors recorded
    db = Project.open(root).store.db
    dump = "\n".join(str(row) for table in ("sources", "errors", "runs")
                     for row in db.execute(f"SELECT * FROM {table}"))
    assert "127.0.0.1" in dump and SECRET not in dump


def test_a_dead_camera_with_a_password_shows_none_in_the_runs_items(tmp_path):
    from live_server import free_port
    from test_line_robustness import _run_line

    url = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream?token={SECRET}"
    summary, items = _run_line([url])
    gaps = [g for g in items if g.type == "gap"]
    assert gaps and all(SECRET not in json.dumps(g.to_dict()) for g in gaps)
    assert all(SECRET not in uri for uri in summary.sources)
    assert any(uri.startswith("rtsp://admin:***@127.0.0.1") for uri in summary.sources)
