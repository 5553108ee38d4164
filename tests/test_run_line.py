"""`lrihar run` end to end on a scripted clip: exact events, cycles and alerts (a missing, an
out-of-order and a too-short step), each alert at its earliest certain moment; stored, written
as JSONL / CSV and an annotated video; a rerun goes on with new ids."""

from __future__ import annotations

import csv
import json

import pytest

import runtime_fixtures  # noqa: F401  registers the hue-blobs detector and the hue labeller
from conftest import make_project
from lrihar.cli import main
from lrihar.project import Project
from runtime_fixtures import FPS, scripted_clip

# (class, first frame, last frame) at 10 fps. Cycles are split by idle gaps > 1.5 s.
SCRIPT = [
    ("pick", 2, 9), ("scan", 12, 23), ("place", 26, 33),          # 1: complete
    ("pick", 55, 62), ("place", 65, 72),                          # 2: scan missing
    ("pick", 95, 102), ("place", 105, 112), ("scan", 115, 126),   # 3: scan missing, then out of order
    ("pick", 150, 157), ("scan", 160, 164), ("place", 167, 174),  # 4: scan too short (0.3 s < 0.8 s)
]
FRAMES = 190
PROCEDURE = {"steps": [{"class": "pick"}, {"class": "scan", "min_s": 0.8}, {"class": "place"}],
             "idle_gap_s": 1.5}
RUN = {"detector": "hue-blobs", "classifier": "hue", "min_event_frames": 3, "lost_track_s": 0.25,
       "window": 3}


@pytest.fixture
def line(tmp_path):
    clip = scripted_clip(tmp_path / "post1.mp4", SCRIPT, FRAMES)
    root = make_project(tmp_path / "proj", posts=["post-1"], procedures={"post-1": PROCEDURE}, run=RUN)
    return root, clip


def _expected_events():
    # ByteTrack confirms a track on its second frame, so an event starts one frame after its
    # square appears, and ends on the last frame that shows it.
    return [(name, (first + 1) / FPS, last / FPS) for name, first, last in SCRIPT]


def test_scripted_clip_gives_exact_events_cycles_and_alerts(line, tmp_path):
    root, clip = line
    out = tmp_path / "out"
    code = main(["run", str(clip), "-p", str(root), "--jsonl", str(out / "run.jsonl"), "--csv", str(out),
                 "--video", str(out / "annotated.mp4"), "--json", str(out / "summary.json")])
    assert code == 0
    store = Project.open(root).store
    events = store.events()
    got = [(e.label, e.start, e.end) for e in events]
    assert got == [(n, pytest.approx(s), pytest.approx(e)) for n, s, e in _expected_events()]
    assert {e.state for e in events} == {"end"} and len({e.id for e in events}) == len(SCRIPT)

    cycles = store.cycles()
    assert [c.steps_seen for c in cycles] == [["pick", "scan", "place"], ["pick", "place"],
                                              ["pick", "place", "scan"], ["pick", "scan", "place"]]
    assert [c.missing for c in cycles] == [[], ["scan"], ["scan"], []]
    assert [c.out_of_order for c in cycles] == [[], [], ["scan"], []]
    assert [c.too_short for c in cycles] == [[], [], [], ["scan"]]
    assert [c.ok for c in cycles] == [True, False, False, False]
    assert cycles[0].start == pytest.approx(0.3) and cycles[0].end == pytest.approx(3.3)

    alerts = [(a.kind, a.step, a.cycle_id) for a in store.alerts()]
    c = [cy.id for cy in cycles]
    assert alerts == [("missing", "scan", c[1]), ("missing", "scan", c[2]), ("out_of_order", "scan", c[2]),
                      ("too_short", "scan", c[3])]
    at = {(a.kind, a.cycle_id): a.at for a in store.alerts()}
    # Earliest certain moments: `place` becomes an event (3 frames after its first tracked frame)
    # -> scan is missing; scan becomes an event after place -> out of order; scan's track is lost
    # (0.3 s unseen > lost_track_s 0.25) -> its event ends, too short.
    assert at[("missing", c[1])] == pytest.approx((65 + 3) / FPS)
    assert at[("missing", c[2])] == pytest.approx((105 + 3) / FPS)
    assert at[("out_of_order", c[2])] == pytest.approx((115 + 3) / FPS)
    assert 164 / FPS <= at[("too_short", c[3])] <= (164 + 3) / FPS

    lines = [json.loads(x) for x in (out / "run.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines].count("alert") == 4
    assert sum(1 for x in lines if x["type"] == "event" and x["state"] == "new") == len(SCRIPT)
    with open(out / "events.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) >= len(SCRIPT)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["events"] == len(SCRIPT) and summary["alerts"] == 4
    assert {"detect", "classify", "track", "latency"} <= set(summary["timings"])

    import av

    with av.open(str(out / "annotated.mp4")) as v:
        assert sum(1 for _ in v.decode(video=0)) == FRAMES


def test_rerun_goes_on_with_new_ids_and_closes_crash_open_events(line):
    root, clip = line
    assert main(["run", str(clip), "-p", str(root)]) == 0
    store = Project.open(root).store
    first = {e.id for e in store.events()}
    # A crash leaves an event open: the next run closes it at start-up.
    store.db.execute("UPDATE events SET state = 'update' WHERE id = ?", (max(first),))
    store.db.commit()
    assert main(["run", str(clip), "-p", str(root)]) == 0
    store = Project.open(root).store
    events = store.events()
    assert len(events) == 2 * len(SCRIPT) and len({e.id for e in events}) == 2 * len(SCRIPT)
    assert min(e.id for e in events if e.id not in first) > max(first)
    assert {e.state for e in events} == {"end"}


def test_unknown_procedure_class_is_refused_before_anything_runs(tmp_path):
    clip = scripted_clip(tmp_path / "c.mp4", SCRIPT[:1], 12)
    root = make_project(tmp_path / "p", posts=["post-1"], run=RUN,
                        procedures={"post-1": {"steps": [{"class": "pick"}, {"class": "weld"}]}})
    assert main(["run", str(clip), "-p", str(root)]) == 2
    assert Project.open(root).store.events() == []


def test_stored_events_score_against_the_script(line, tmp_path):
    root, clip = line
    assert main(["run", str(clip), "-p", str(root)]) == 0
    gt = tmp_path / "steps.csv"
    rows = "".join(f"post-1,{a / FPS},{b / FPS},{n}\n" for n, a, b in SCRIPT)
    gt.write_text("post,start,end,class\n" + rows)
    out = tmp_path / "scores.json"
    assert main(["evaluate", "-p", str(root), "--events", str(gt), "--json", str(out)]) == 0
    segments = json.loads(out.read_text())["segments"]
    # Every event is found (one frame late at the start, exact at the end: IoU >= 0.9).
    assert {k: v["f1"] for k, v in segments["f1"].items()} == {"0.10": 100.0, "0.25": 100.0, "0.50": 100.0}
    assert segments["edit"] == 100.0


def test_a_cut_stream_reconnects_and_events_after_the_gap_are_recorded(ffmpeg_server, tmp_path):
    import threading
    import time

    from lrihar.runtime.session import RunOptions, run_line

    # One `pick` every 3 s, looped by ffmpeg as a live HTTP stream.
    ffmpeg_server.clip = scripted_clip(tmp_path / "loop.mp4", [("pick", 3, 20)], 30)
    root = make_project(tmp_path / "proj", posts=["post-1"], run={**RUN, "retry_s": 0.5})
    ffmpeg_server.start()
    project = Project.open(root)
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=run_line(
        project, RunOptions([ffmpeg_server.url], duration_s=16))))
    runner.start()
    time.sleep(6)
    ffmpeg_server.kill()   # the camera drops ...
    time.sleep(2)
    ffmpeg_server.start()  # ... and comes back
    runner.join(60)
    assert not runner.is_alive() and result["summary"].gaps == 1
    store = Project.open(root).store
    gaps = store.gaps()
    assert len(gaps) == 1 and gaps[0].end is not None and gaps[0].end > gaps[0].start
    events = store.events()
    assert any(e.end < gaps[0].start for e in events), "events before the cut"
    assert any(e.start > gaps[0].end for e in events), "events after the reconnect"
    assert result["summary"].sources[ffmpeg_server.url]["reconnects"] >= 1


def test_offline_defaults_run_on_real_footage(hands_dev, tmp_path):
    """Before anything is trained: mediapipe-hands + the template matcher (mobilenet-v2) on a real
    clip of two hands kneading dough; templates are hand crops of every fifth frame."""
    import av
    from PIL import Image

    from lrihar.models.detectors import create_detector

    clip = hands_dev / "videos" / "mixkit_42467_baker_kneading_dough.mp4"
    with av.open(str(clip)) as v:
        frames = [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]
    detector = create_detector("mediapipe-hands")
    classify = {"encoder": "mobilenet-v2", "lambda": 0.3, "templates": "templates"}
    root = make_project(tmp_path / "proj", posts=["bench"], classify=classify)
    folder = root / "templates" / "knead"
    folder.mkdir(parents=True)
    for k, image in enumerate(frames[::5]):
        for j, (x1, y1, x2, y2) in enumerate(detector(image).xyxy.astype(int)):
            Image.fromarray(image[y1:y2, x1:x2]).save(folder / f"{k}-{j}.png")
    assert len(list(folder.iterdir())) >= 4
    out = tmp_path / "run.json"
    assert main(["run", str(clip), "-p", str(root), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["frames"] == len(frames)
    events = Project.open(root).store.events()
    assert events and {e.label for e in events} == {"knead"} and all(e.post == "bench" for e in events)
    assert max(e.duration for e in events) >= 2.0  # the hands knead throughout the 5 s clip


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_flushes_every_sink_and_ends_open_events(line, tmp_path, signum):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root, clip = line
    jsonl = tmp_path / "run.jsonl"
    tests = Path(__file__).parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import runtime_fixtures; "
            "from lrihar.cli import main; sys.exit(main(sys.argv[2:]))")
    # --live: the file stands in for a camera, replayed without end until the signal.
    cmd = [sys.executable, "-c", code, str(tests), "run", str(clip), "-p", str(root), "--live",
           "--jsonl", str(jsonl)]
    proc = subprocess.Popen(cmd, env=os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count('"alert"') >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(getattr(signal, signum))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped: every event, cycle and alert so far is stored" in err and "Traceback" not in err
    items = [json.loads(x) for x in jsonl.read_text().splitlines()]
    events = {x["id"]: x for x in items if x["type"] == "event"}  # the last state of each
    assert events and all(e["state"] == "end" for e in events.values())
    store = Project.open(root).store
    stored = store.events()
    assert {e.id for e in stored} == set(events) and all(e.state == "end" for e in stored)
    assert len(store.alerts()) == sum(1 for x in items if x["type"] == "alert")
    run = store.runs()[-1]
    assert run["status"] == "done" and json.loads(run["stats"])["interrupted"] is True


def test_two_posts_at_once_share_detector_calls_and_keep_their_own_events(tmp_path):
    from runtime_fixtures import HueBlobDetector

    script2 = [("label", 5, 20), ("label", 50, 65)]  # short: the square drifts < 40 px, one track each
    clip1 = scripted_clip(tmp_path / "post1.mp4", SCRIPT, FRAMES)
    clip2 = scripted_clip(tmp_path / "post2.mp4", script2, 90)
    root = make_project(tmp_path / "proj", posts=["post-1", "post-2"], procedures={"post-1": PROCEDURE},
                        run={**RUN, "sources": {"post-1": [str(clip1)], "post-2": [str(clip2)]}})
    HueBlobDetector.batch_sizes.clear()
    assert main(["run", "-p", str(root)]) == 0
    store = Project.open(root).store
    got1 = [(e.label, e.start, e.end) for e in store.events(post="post-1")]
    got2 = [(e.label, e.start, e.end) for e in store.events(post="post-2")]
    assert got1 == [(n, pytest.approx(s), pytest.approx(e)) for n, s, e in _expected_events()]
    assert got2 == [(n, pytest.approx((a + 1) / FPS), pytest.approx(b / FPS)) for n, a, b in script2]
    assert {e.source for e in store.events(post="post-2")} == {str(clip2)}
    # Cycles and alerts only where a procedure is defined, and the same as with post-1 alone.
    assert {c.post for c in store.cycles()} == {"post-1"} and len(store.alerts(post="post-1")) == 4
    # One detector call per step over both streams while both run: 90 two-frame calls.
    assert HueBlobDetector.batch_sizes.count(2) >= 80


def test_posts_with_their_own_classes_get_their_own_labeller(tmp_path):
    clip1 = scripted_clip(tmp_path / "post1.mp4", SCRIPT[:3], 40)
    clip2 = scripted_clip(tmp_path / "post2.mp4", [("label", 5, 20)], 30)
    post1 = {"name": "post-1", "classes": [{"name": n} for n in ("pick", "scan", "place")],
             "procedure": PROCEDURE, "cameras": [str(clip1)]}
    # post-2 knows only `label`; with post-1's classes its yellow square would read as `pick`.
    post2 = {"name": "post-2", "classes": [{"name": "label"}], "cameras": [str(clip2)],
             "procedure": {"steps": [{"class": "label"}]}}
    root = make_project(tmp_path / "proj", lines=[{"name": "a", "posts": [post1]},
                                                  {"name": "b", "posts": [post2]}], run=RUN)
    assert main(["run", "-p", str(root)]) == 0
    store = Project.open(root).store
    assert [e.label for e in store.events(post="post-1")] == ["pick", "scan", "place"]
    assert [e.label for e in store.events(post="post-2")] == ["label"]
    assert {c.post for c in store.cycles()} == {"post-1", "post-2"}
