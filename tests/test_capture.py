"""Capture for `lrihar run`: bounded queues (never drop a file, drop-oldest live), reconnects and gaps on a
real FFmpeg HTTP stream that is cut and restarted, and the watchdog (stalled pipeline vs dead source)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from live_server import wait_for
from lrihar.errors import BadInputError
from lrihar.events import Gap
from lrihar.runtime.capture import Capture
from lrihar.runtime.ids import IdCounter
from lrihar.sources import Frame


def test_a_file_never_drops_a_frame_for_a_slow_consumer(clip):
    capture = Capture(str(clip), "post-1", IdCounter(), queue_size=2).start()
    items, waits = [], []
    while (timed := capture.get_timed(timeout=5)) is not None:
        waits.append(time.time() - timed[1])
        items.append(timed[0])
        time.sleep(0.02)  # slower than decoding: the decode thread has to wait, not drop
    assert capture.finished
    assert [f.index for f in items] == list(range(30))
    assert min(waits[5:]) > 0.015  # the queue stays full: each frame waited a consumer's step
    assert all(isinstance(f, Frame) for f in items)
    stats = capture.stats()
    assert stats["frames_decoded"] == 30 and stats["frames_dropped"] == 0 and stats["gaps"] == 0
    assert stats["state"] == "ended" and not capture.gaps


def test_a_live_source_drops_the_oldest_frames_and_counts_them(clip):
    # A video file read live: decoded as fast as it goes, while nobody takes a frame.
    capture = Capture(str(clip), "post-1", IdCounter({"gap": 4}), live=True, queue_size=3, retry_s=30).start()
    wait_for(lambda: capture.stats()["state"] == "waiting", 10, "the clip to be decoded to its end")
    assert capture.stats()["frames_dropped"] == 28  # the outage's start took a place too
    started = time.monotonic()
    capture.stop()
    assert time.monotonic() - started < 1.0  # not held by the 30 s retry wait
    items = list(capture)
    # The newest kept, the oldest dropped; the outage, sent on when it began, is still under way.
    assert [f.index for f in items[:-1]] == [28, 29] and capture.stats()["frames_dropped"] == 28
    gap = items[-1]
    assert isinstance(gap, Gap) and gap.id == 5 and gap.end is None and gap.reason == "stream ended"
    assert gap.start == pytest.approx(items[-2].timestamp)
    assert capture.finished


def test_bad_inputs_fail_early_with_a_clear_message(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        Capture(str(tmp_path / "missing.mp4"), "post-1", IdCounter())
    if not Path("/dev/video7").exists():
        with pytest.raises(BadInputError, match=r"camera 7: /dev/video7 does not exist"):
            Capture("7", "post-1", IdCounter())
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(BadInputError, match="only a video file or a stream can be read live"):
        Capture(str(tmp_path), "post-1", IdCounter(), live=True)


def take_until(capture: Capture, items: list, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; stats: {capture.stats()}")
        item = capture.get(timeout=0.2)
        if item is not None:
            items.append(item)


def frames_after_gap(items: list) -> int:
    gap = next((n for n, i in enumerate(items) if isinstance(i, Gap)), None)
    return 0 if gap is None else sum(isinstance(i, Frame) for i in items[gap + 1:])


def test_a_cut_stream_is_reopened_and_the_outage_is_one_gap(ffmpeg_server):
    ffmpeg_server.start()
    capture = Capture(ffmpeg_server.url, "post-2", IdCounter(), retry_s=0.5, source_timeout_s=5).start()
    try:
        items: list = []
        take_until(capture, items, lambda: len(items) >= 8, 10, "frames before the cut")
        ffmpeg_server.kill()
        take_until(capture, items, lambda: capture.stats()["in_gap"], 5, "the cut to be noticed")
        time.sleep(1.5)  # the server stays down across a few failed reopen attempts
        ffmpeg_server.start()
        take_until(capture, items, lambda: frames_after_gap(items) >= 5, 10, "frames after the restart")
    finally:
        capture.stop()
    gaps = [i for i in items if isinstance(i, Gap)]
    # One gap, sent on twice: when it began (end None: "no signal" while it lasts) and when it ended.
    assert [(g.id, g.end is None) for g in gaps] == [(gaps[0].id, True), (gaps[0].id, False)]
    began, gap = gaps
    assert (began.start, began.reason, began.source) == (gap.start, gap.reason, gap.source)
    cut, resumed = items.index(began), items.index(gap)
    before, after = items[:cut], items[resumed + 1:]
    assert not items[cut + 1:resumed]  # no frame while it lasted
    assert len(before) >= 8 and len(after) >= 5 and all(isinstance(i, Frame) for i in before + after)
    assert gap.start < gap.end and gap.start == before[-1].timestamp and gap.end == after[0].timestamp
    assert gap.end - gap.start > 1.5  # the server was down that long
    assert gap.source == ffmpeg_server.url and gap.post == "post-2" and gap.wall_end > gap.wall_start
    # source clock: time since the capture started, increasing across the reconnect
    stamps = [f.timestamp for f in before + after]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    indices = [f.index for f in before + after]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    stats = capture.stats()
    assert stats["reconnects"] == 1 and stats["gaps"] == 1 and stats["reopen_attempts"] >= 2
    assert stats["reconnects_last_hour"] == 1 and stats["dead"] == 0 and stats["frames_dropped"] == 0
    assert stats["errors"] >= 1 and "cannot open" in stats["last_error"]  # attempts while it was down


def test_watchdog_tells_a_stalled_pipeline_from_a_dead_source(ffmpeg_server):
    ffmpeg_server.start()
    capture = Capture(ffmpeg_server.url, "post-1", IdCounter(), queue_size=2, retry_s=0.3,
                      source_timeout_s=3, stall_timeout_s=0.8, watch_every_s=0.1).start()
    try:
        items: list = []
        take_until(capture, items, lambda: items, 10, "the first frame")
        # Stalled pipeline: frames keep coming, the consumer takes none. Reported, not reopened.
        wait_for(lambda: capture.stats()["stalls"] == 1, 5, "a stall")
        stats = capture.stats()
        assert stats["stalled"] and stats["dead"] == 0 and stats["reopen_attempts"] == 0
        assert stats["frames_dropped"] > 0 and not stats["in_gap"]
        take_until(capture, items, lambda: not capture.stats()["stalled"], 2, "the stall to clear")
        # Dead source: the connection stays open but nothing arrives; the consumer keeps up.
        ffmpeg_server.pause()
        paused_at = items[-1].timestamp
        take_until(capture, items, lambda: capture.stats()["in_gap"], 8, "the dead source")
        stats = capture.stats()
        assert stats["dead"] == 1 and "dead source" in stats["gap_reason"]
        assert stats["stalls"] == 1 and not stats["stalled"]
        assert capture.gaps[-1].start >= paused_at
    finally:
        capture.stop()


def test_stop_interrupts_a_blocked_network_read(ffmpeg_server):
    ffmpeg_server.start()
    capture = Capture(ffmpeg_server.url, "post-1", IdCounter(), source_timeout_s=60).start()
    items: list = []
    take_until(capture, items, lambda: items, 10, "the first frame")
    ffmpeg_server.pause()  # the decode thread now waits on a socket that stays silent
    time.sleep(0.5)
    started = time.monotonic()
    capture.stop(timeout=10)
    assert time.monotonic() - started < 1.0  # not the 60 s read timeout
    assert not any(t.is_alive() for t in capture._threads)
    assert capture.errors == []  # our own interrupt is not the source's fault
