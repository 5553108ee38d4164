"""`lrihar run` and the local pages under faults (issue 20): slow clients that never finish a
request, a dead camera beside a live one, a sink that fails on every write."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import runtime_fixtures  # noqa: F401  registers the hue-blobs detector and the hue labeller
from conftest import make_project
from live_server import free_port, wait_for

TESTS = Path(__file__).parent
HALF_OPEN = 200
FD_LIMIT = 128  # the page's process is given this few descriptors, so that 200 clients exhaust them

# A page's server in a process with few descriptors, until killed. argv: tests, kind, port, project, limit.
SERVER = textwrap.dedent("""
    import resource, sys, time
    sys.path.insert(0, sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[5]), hard))
    kind, port = sys.argv[2], int(sys.argv[3])
    if kind == "live":
        from lrihar.runtime.live import LivePage
        page = LivePage(port=port).start()
        print("ready", flush=True)
        while True:
            time.sleep(1)
    else:
        from lrihar.review.server import serve
        serve(sys.argv[4], port=port)
""")


def _half_open(port: int, n: int) -> list[socket.socket]:
    """``n`` clients that send half a request header and then nothing, keeping the connection open."""
    clients = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x")
        except OSError:
            pass  # refused or reset: the server is shedding them, which is the point
        clients.append(s)
    return clients


def _get_page(port: int, deadline_s: float) -> tuple[int, float]:
    """Status of a normal ``GET /`` (retried until ``deadline_s``) and the seconds it took."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < deadline_s:
        left = deadline_s - (time.monotonic() - started)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(0.5, left))
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            return response.status, time.monotonic() - started
        except OSError as exc:
            last = exc
            time.sleep(0.1)
        finally:
            conn.close()
    raise AssertionError(f"no answer within {deadline_s} s: {last!r}")


@pytest.mark.parametrize("kind", ["live", "review"])
def test_half_open_clients_do_not_lock_out_a_normal_request(kind, tmp_path):
    port = free_port()
    project = make_project(tmp_path / "proj", posts=["post-1"])
    err = tmp_path / "server.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(TESTS), kind, str(port), str(project),
                                 str(FD_LIMIT)],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    clients: list[socket.socket] = []
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, 20, f"the {kind} page to listen")
        assert _get_page(port, 5)[0] == 200
        clients = _half_open(port, HALF_OPEN)
        status, seconds = _get_page(port, 4)
        assert status == 200 and seconds < 4
        # The page's process never ran out of descriptors, or if it did, said so once, not per accept.
        time.sleep(1.5)
        text = err.read_text()
        assert text.count("out of system resource") + text.count("Too many open files") <= 2, text[-2000:]
        assert len(text) < 20_000
    finally:
        for s in clients:
            s.close()
        proc.kill()
        proc.wait(10)


def test_a_client_that_never_finishes_its_header_is_closed():
    from lrihar.runtime.live import LivePage
    from lrihar.web.serving import ServerLimits

    with LivePage(port=0, limits=ServerLimits(header_timeout_s=0.5)) as page:
        s = socket.create_connection(("127.0.0.1", page.port), timeout=5)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x")
            started = time.monotonic()
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 3
        finally:
            s.close()


def test_resource_errors_are_logged_once_per_interval_with_a_count():
    from lrihar.web.serving import ResourceErrorFilter

    clock = [0.0]
    flt = ResourceErrorFilter(every_s=60, clock=lambda: clock[0])
    logger = logging.getLogger("lrihar-test-accept")
    logger.propagate = False
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(flt)
    try:
        exc = OSError(24, "Too many open files")
        for _ in range(1000):
            logger.error("socket.accept() out of system resource", exc_info=(OSError, exc, None))
        logger.error("something else")
        clock[0] = 61
        logger.error("socket.accept() out of system resource", exc_info=(OSError, exc, None))
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(flt)
    assert seen[0] == "socket.accept() out of system resource" and seen[1] == "something else"
    assert len(seen) == 3 and "999" in seen[2]


# -- a dead camera beside a live one ------------------------------------------------------------

RATE = 30  # fps of the live camera
# (class, first frame, last frame) at 30 fps: a cycle with too short a scan, then one without scan.
LIVE_SCRIPT = [("pick", 3, 17), ("scan", 21, 33), ("place", 37, 51), ("pick", 68, 82), ("place", 86, 100)]
LIVE_FRAMES = 105
PROCEDURE = {"steps": [{"class": "pick"}, {"class": "scan", "min_s": 0.8}, {"class": "place"}],
             "idle_gap_s": 0.5}
RUN = {"detector": "hue-blobs", "classifier": "hue", "min_event_frames": 3, "lost_track_s": 0.25,
       "window": 3, "retry_s": 0.5, "source_timeout_s": 1.0, "stall_timeout_s": 5.0}


def _camera(ids, frames):
    """A live camera sending ``frames`` at :data:`RATE` fps on a steady clock (frame k at k / RATE
    s), through the real capture queue (drop-oldest) and watchdog; it ends after the last one."""
    from lrihar.runtime.capture import Capture
    from lrihar.sources import Frame

    class Camera(Capture):
        def _decode_live(self) -> None:
            self._state = "streaming"
            for k, image in enumerate(frames):
                if self._stop.wait(max(0.0, self._t0 + k / RATE - time.monotonic())):
                    return
                self._frame_decoded()
                self._queue.put(Frame(self.uri, k, k / RATE, image))

    return Camera("rtsp://camera.invalid/live", "post-1", ids, live=True, queue_size=2,
                  source_timeout_s=RUN["source_timeout_s"], retry_s=RUN["retry_s"])


def _silent_server():
    """A listening socket that never answers: a camera that takes the connection and sends nothing."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def _run_line(extra_uris: list[str]) -> tuple:
    from lrihar.config import ProcedureConfig, RunConfig
    from lrihar.runtime.capture import Capture
    from lrihar.runtime.ids import IdCounter
    from lrihar.runtime.pipeline import LinePipeline
    from runtime_fixtures import HueBlobDetector, HueLabeller, scripted_frames

    cfg = RunConfig(**RUN)
    ids = IdCounter()
    captures = [_camera(ids, scripted_frames(LIVE_SCRIPT, LIVE_FRAMES))]
    captures += [Capture.from_config(uri, "post-1", ids, cfg) for uri in extra_uris]
    items: list = []

    class Keep:
        def emit(self, item):
            items.append(item)

        def close(self):
            pass

    pipeline = LinePipeline(captures, HueBlobDetector(), HueLabeller(), cfg, ids,
                            {"post-1": ProcedureConfig.model_validate(PROCEDURE)}, sinks=[Keep()],
                            frame_rate=RATE)
    summary = pipeline.run(duration_s=None if not extra_uris else (LIVE_FRAMES + 15) / RATE)
    return summary, items


def test_a_dead_camera_costs_a_live_one_nothing():
    alone, alone_items = _run_line([])
    assert alone.frames >= 0.9 * LIVE_FRAMES  # the pipeline keeps up with 30 fps on its own
    silent = _silent_server()
    try:
        refused = free_port()  # nobody listens there
        both, both_items = _run_line([f"http://127.0.0.1:{silent.getsockname()[1]}/live.ts",
                                      f"rtsp://127.0.0.1:{refused}/stream"])
    finally:
        silent.close()
    live = "rtsp://camera.invalid/live"
    assert both.sources[live]["frames_decoded"] == LIVE_FRAMES
    assert abs(both.frames - alone.frames) <= 0.1 * alone.frames, (both.frames, alone.frames)
    assert both.sources[live]["frames_dropped"] <= alone.sources[live]["frames_dropped"] + 0.1 * LIVE_FRAMES

    def alerts(items):
        return sorted((a.kind, a.step) for a in items if a.type == "alert")

    assert alerts(alone_items) == [("missing", "scan"), ("too_short", "scan")]
    assert alerts(both_items) == alerts(alone_items)
    assert [(e.label, e.start) for e in both_items if e.type == "event" and e.state == "end"] == \
        [(e.label, e.start) for e in alone_items if e.type == "event" and e.state == "end"]
    # The dead ones are gaps from 0 s, still open when the run stopped, not alerts.
    gaps = [g for g in both_items if g.type == "gap"]
    assert sorted(g.source for g in gaps) == sorted(set(both.sources) - {live}) and both.gaps == 2
    assert all(g.start == 0 and g.end is None and g.reason for g in gaps)


# -- a failing sink -------------------------------------------------------------------------------

def test_jsonl_on_a_full_disk_keeps_the_store_whole_and_the_run_going(tmp_path, caplog):
    import test_run_line as script
    from lrihar.cli import main
    from lrihar.project import Project
    from runtime_fixtures import scripted_clip

    if not Path("/dev/full").exists():
        pytest.skip("needs Linux /dev/full (every write fails with ENOSPC)")
    clip = scripted_clip(tmp_path / "post1.mp4", script.SCRIPT, script.FRAMES)
    root = make_project(tmp_path / "proj", posts=["post-1"], procedures={"post-1": script.PROCEDURE},
                        run=script.RUN)
    out = tmp_path / "summary.json"
    with caplog.at_level(logging.WARNING):
        code = main(["run", str(clip), "-p", str(root), "--jsonl", "/dev/full",
                     "--csv", str(tmp_path / "csv"), "--json", str(out)])
    assert code == 0
    store = Project.open(root).store
    assert len(store.events()) == len(script.SCRIPT) and {e.state for e in store.events()} == {"end"}
    assert len(store.alerts()) == 4 and len(store.cycles()) == 4
    # The other sinks went on: every ended event in the CSV.
    assert (tmp_path / "csv" / "events.csv").read_text().count("\n") == len(script.SCRIPT) + 1
    summary = json.loads(out.read_text())
    assert summary["frames"] == script.FRAMES and summary["alerts"] == 4
    failed = summary["sinks"]["JSONL /dev/full"]
    assert failed["failures"] >= 5 and failed["set_aside"] and "No space left" in failed["first_error"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("JSONL /dev/full failed" in w for w in warnings) == 1, warnings  # reported once ...
    assert any("JSONL /dev/full: 5 failures in a row" in w for w in warnings)  # ... set aside ...
    assert any(w.startswith("JSONL /dev/full: ") and "first error" in w for w in warnings)  # ... summed up


def test_a_set_aside_sink_is_retried_and_the_store_always_comes_first():
    from lrihar.errors import LriharError
    from lrihar.runtime.sinks.fanout import SinkFanout

    order: list[str] = []

    class Flaky:
        name = "flaky"
        broken = True

        def emit(self, item):
            order.append(f"flaky {item}")
            if self.broken:
                raise OSError(28, "No space left on device")

        def close(self):
            raise OSError(28, "No space left on device")

    class Store:
        name = "store"
        essential = True

        def emit(self, item):
            order.append(f"store {item}")

        def close(self):
            order.append("store closed")

    clock = [0.0]
    flaky, store = Flaky(), Store()
    out = SinkFanout([flaky, store], max_consecutive=3, retry_s=10, clock=lambda: clock[0])
    for i in range(6):
        out.emit(i)
    assert order[:2] == ["store 0", "flaky 0"]
    assert [x for x in order if x.startswith("store")] == [f"store {i}" for i in range(6)]
    assert sum(x.startswith("flaky") for x in order) == 3  # set aside after 3 in a row
    assert out.stats()["flaky"] | {"first_error": None, "last_error": None} == {
        "failures": 3, "skipped": 3, "set_aside": True, "first_error": None, "last_error": None}
    clock[0] = 11
    flaky.broken = False
    out.emit(6)
    out.emit(7)
    assert order[-2:] == ["store 7", "flaky 7"] and not out.stats()["flaky"]["set_aside"]
    out.close()  # the flaky sink's close fails: reported, not raised
    assert "store closed" in order

    class LostStore(Store):
        def close(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(LriharError, match="store"):
        SinkFanout([LostStore()]).close()
