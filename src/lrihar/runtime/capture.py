"""Frame capture for ``lrihar run``: one decode thread per source behind a bounded queue.

Files and image folders never lose a frame: when the queue is full, decoding waits. Live sources
(stream URLs, cameras) never wait: the oldest queued frame is dropped, and counted, so the pipeline
always works on the newest picture. A live source that ends, fails or goes silent is reopened every
``retry_s`` until the capture is stopped; each outage becomes one :class:`~lrihar.events.Gap`,
queued between the last frame before it and the first frame after it. A watchdog thread per source
tells a dead source (nothing decoded for ``source_timeout_s``: reopened) from a stalled pipeline
(frames queued but none taken for ``stall_timeout_s``: reported, nothing to reopen).

Example:
    >>> cap = Capture("rtsp://cam-3/stream", post="post-1", ids=IdCounter()).start()  # doctest: +SKIP
    >>> for item in cap:  # doctest: +SKIP
    ...     print(item.type if isinstance(item, Gap) else item.timestamp)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lrihar.credentials import mask_text
from lrihar.errors import BadInputError
from lrihar.events import Gap
from lrihar.runtime.ids import IdCounter
from lrihar.sources import (
    Frame,
    FrameSource,
    SourceError,
    _decode_container,
    is_stream,
    open_source,
    stream_open_args,
)

if TYPE_CHECKING:
    from lrihar.config import RunConfig

log = logging.getLogger(__name__)

LIVE_OPTIONS = {"analyzeduration": "1000000"}
"""Probe one second of a live stream, not FFmpeg's five: a (re)connection shows frames sooner."""

HOUR_S = 3600.0

CaptureItem = Frame | Gap


class Capture:
    """Decode one source on its own thread into a bounded queue; iterate (or :meth:`get`) to consume.

    Args:
        uri: a video file, image file or folder (kept as its absolute path), stream URL
            (rtsp://, http://, ...) or camera index (``0`` -> ``/dev/video0``, Linux V4L2).
        post: the post this source watches (recorded in its gaps).
        ids: the run's id counter, so gap ids continue from the store and never repeat.
        live: drop-oldest and reconnect (True) or wait and read once (False); None: live for
            streams and cameras, not for files and folders.
        queue_size: frames held between decoding and the consumer.
        retry_s: wait before reopening a live source that ended or failed.
        source_timeout_s: a live source that decodes nothing this long is dead and reopened.
        stall_timeout_s: frames queued and none taken this long: the pipeline is stalled.
        watch_every_s: how often the watchdog looks.
        keep: how many recent gaps and errors are kept (the counters count them all).
        stride: keep every n-th frame (files and folders).
        fps: keep about this many frames per second of media time (files and folders).

    Raises:
        BadInputError: the file or folder does not exist or has an unsupported type, or the camera
            device is absent.
    """

    def __init__(self, uri: str, post: str, ids: IdCounter, *, live: bool | None = None,
                 queue_size: int = 8, retry_s: float = 2.0, source_timeout_s: float = 10.0,
                 stall_timeout_s: float = 10.0, watch_every_s: float = 1.0, keep: int = 50,
                 stride: int = 1, fps: float | None = None) -> None:
        self._url = str(uri)  # what is opened: a camera URL with its password, if it has one
        self.uri = mask_text(self._url)  # what events, gaps, the page, logs and the store show
        self.post = post
        self.live = is_stream(self.uri) if live is None else live
        self.retry_s = retry_s
        self.source_timeout_s = source_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.watch_every_s = watch_every_s
        self._ids = ids
        self._file: FrameSource | None = None
        if is_stream(self._url):
            _check_camera(self._url)
        else:
            source = open_source(self._url, stride, fps)  # checks the path
            self.uri = self._url = source.uri  # absolute, as in its frames and in the store (no secret)
            if not self.live:
                self._file = source
            elif source.kind != "video":
                raise BadInputError(f"{uri}: only a video file or a stream can be read live")
            # else a video file read live (a simulated camera): frames dropped, replayed when it ends
        self._stop = threading.Event()
        self._queue = _FrameQueue(queue_size, drop_oldest=self.live, cancel=self._stop)
        self._reopen = threading.Event()
        self._lock = threading.Lock()
        self._errors: deque[SourceError] = deque(maxlen=keep)
        self.gaps: deque[Gap] = deque(maxlen=keep)
        self.decode_seconds: deque[float] = deque(maxlen=2000)
        """Decode time of the latest frames of a file or folder (a live source's frames come at its
        own pace, so no decode time is kept for them)."""
        """The last ``keep`` gaps, the one under way (``end`` None) included."""
        self._reconnect_times: deque[float] = deque(maxlen=10_000)
        self._stall_times: deque[float] = deque(maxlen=10_000)
        self._counts = dict.fromkeys(("frames_decoded", "reconnects", "reopen_attempts", "dead", "stalls",
                                      "gaps", "errors"), 0)
        self._state = "idle"
        self._dead_reason: str | None = None
        self._stalled = False
        self._t0 = self._wall0 = 0.0
        self._activity = 0.0  # monotonic time of the last frame, or of the current open attempt
        self._last_frame_at: float | None = None
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_config(cls, uri: str, post: str, ids: IdCounter, run: RunConfig, **kwargs) -> Capture:
        """A capture with the project file's ``run:`` settings."""
        live = kwargs.pop("live", None)
        live = is_stream(uri) if live is None else live
        return cls(uri, post, ids, live=live, queue_size=run.live_queue_size if live else run.queue_size,
                   retry_s=run.retry_s, source_timeout_s=run.source_timeout_s,
                   stall_timeout_s=run.stall_timeout_s, **kwargs)

    # -- consumer side -------------------------------------------------------------------------

    def start(self) -> Capture:
        """Start the decode and watchdog threads (once); returns self."""
        if self._threads:
            return self
        self._t0, self._wall0 = time.monotonic(), time.time()
        self._activity = self._t0
        name = f"lrihar-capture {self.uri}"
        self._threads = [threading.Thread(target=self._decode, name=name, daemon=True),
                         threading.Thread(target=self._watch, name=f"{name} watchdog", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def get(self, timeout: float | None = None) -> CaptureItem | None:
        """The next frame or gap, oldest first; None when nothing came within ``timeout`` or the
        capture is over (see :attr:`finished`)."""
        timed = self.get_timed(timeout)
        return None if timed is None else timed[0]

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the decode thread, so quickly) whenever an item is queued or the
        capture is over: a consumer of several captures can wait for any of them at once instead of
        on each in turn (``get_timed(0)`` then takes what is there)."""
        self._queue.listeners.append(callback)

    @property
    def waits(self) -> bool:
        """True for a file or folder read once (it never drops a frame: its next one is only ever
        a decode away); False for a live source, and for a stream read with ``live=False``, whose
        next frame may be an outage away."""
        return self._file is not None

    def get_timed(self, timeout: float | None = None) -> tuple[CaptureItem, float] | None:
        """Like :meth:`get`, with the Unix time the item was queued: end-to-end latency then
        includes the time a frame waited in the queue."""
        timed = self._queue.get(timeout)
        if timed is not None:
            self._stalled = False
        return timed

    def __iter__(self) -> Iterator[CaptureItem]:
        """Frames and gaps until the file ends or :meth:`stop` is called."""
        while not self.finished:
            item = self.get(timeout=0.5)
            if item is not None:
                yield item

    @property
    def finished(self) -> bool:
        """True once decoding is over (end of file, or stopped) and the queue is empty."""
        return self._queue.closed and not len(self._queue)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop decoding, interrupting a blocked network read, and wait for the threads to end.

        What is still queued can be read afterwards; an outage under way is queued as a gap
        with ``end`` None, so the consumer can record it.
        """
        self._stop.set()
        self._queue.wake()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("%s: capture threads still running after %.1f s: %s", self.uri, timeout, alive)
        if not self._threads or self._threads[0].is_alive():
            self._queue.close()  # otherwise the decode thread closed it after its last item

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def errors(self) -> list[SourceError]:
        """Problems met while reading: a file's all, a live source's last ``keep``."""
        return list(self._file.errors) if self._file is not None else list(self._errors)

    def stats(self) -> dict:
        """A snapshot of the counters, for logs, the live page and MQTT."""
        now = time.monotonic()
        with self._lock:
            for times in (self._reconnect_times, self._stall_times):
                while times and times[0] < now - HOUR_S:
                    times.popleft()
            gap = self.gaps[-1] if self.gaps and self.gaps[-1].end is None else None
            errors = self.errors
            counts = {**self._counts, "errors": len(errors)} if self._file is not None else self._counts
            return {
                "source": self.uri, "post": self.post, "live": self.live, "state": self._state,
                **counts, "frames_dropped": self._queue.dropped, "queued": len(self._queue),
                "reconnects_last_hour": len(self._reconnect_times),
                "stalls_last_hour": len(self._stall_times), "stalled": self._stalled,
                "in_gap": gap is not None, "gap_reason": gap.reason if gap else None,
                "last_frame_age_s": None if self._last_frame_at is None else now - self._last_frame_at,
                "last_error": errors[-1].message if errors else None,
            }

    # -- decode thread -------------------------------------------------------------------------

    def _decode(self) -> None:
        try:
            if self._file is not None:
                self._decode_file(self._file)
            else:
                self._decode_live()
        except Exception as exc:  # a broken source must not take the run down with it
            log.exception("%s: capture failed", self.uri)
            self._record_error(None, f"capture failed: {exc.__class__.__name__}: {exc}")
        finally:
            self._state = "stopped" if self._stop.is_set() else "ended"
            self._queue.close()

    def _decode_file(self, source: FrameSource) -> None:
        self._state = "reading"
        frames = iter(source)
        while True:
            started = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                return
            self.decode_seconds.append(time.perf_counter() - started)
            self._frame_decoded()
            if self._stop.is_set() or not self._queue.put(frame):
                return

    def _decode_live(self) -> None:
        url, fmt, options = stream_open_args(self._url)
        options = {**LIVE_OPTIONS, **options}
        errors = _LiveErrors(self)
        interrupt = _install_interrupt()
        if interrupt is not None:
            interrupt.watch(lambda: self._stop.is_set() or self._reopen.is_set())
        index, gap, first = 0, None, True
        while not self._stop.is_set():
            self._reopen.clear()  # no container is open here, so the interrupt clock may go back
            errors.fatal = None
            with self._lock:
                self._state, self._activity = "opening", time.monotonic()
                if not first:
                    self._counts["reopen_attempts"] += 1
            first = False
            # The watchdog decides when a source is dead; PyAV's own timeout is only a backstop.
            frames = _decode_container(errors, url, options, fmt, start_index=index,
                                       timeout=2 * self.source_timeout_s)
            for frame in frames:
                now = time.monotonic()
                if gap is not None:
                    self._end_gap(gap, now - self._t0)
                    gap = None
                self._state = "streaming"
                self._frame_decoded(now)
                index = frame.index + 1
                self._queue.put(Frame(self.uri, frame.index, now - self._t0, frame.image))
                if self._stop.is_set() or self._reopen.is_set():
                    break
            frames.close()  # closes the container now, not when the generator is collected
            if self._stop.is_set():
                break
            if gap is None:
                reason = self._dead_reason if self._reopen.is_set() else errors.fatal or "stream ended"
                gap = self._begin_gap(reason)
            self._state = "waiting"
            self._stop.wait(self.retry_s)
        # An outage still under way at stop was sent on when it began (end None): recorded as such.

    def _frame_decoded(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._counts["frames_decoded"] += 1
            self._activity = self._last_frame_at = now

    def _begin_gap(self, reason: str) -> Gap:
        reason = mask_text(reason)  # an error text may quote the camera URL
        start = 0.0 if self._last_frame_at is None else self._last_frame_at - self._t0
        gap = Gap(id=self._ids.next("gap"), source=self.uri, post=self.post, start=start, end=None,
                  reason=reason, wall_start=self._wall0 + start)
        with self._lock:
            self.gaps.append(gap)
        self._queue.put(dataclasses.replace(gap))  # its start, sent on at once (end None): no signal now
        log.warning("%s: no frames since %.1f s (%s); reopening every %.1f s", self.uri, start, reason,
                    self.retry_s)
        return gap

    def _end_gap(self, gap: Gap, end: float) -> None:
        gap.end, gap.wall_end = end, self._wall0 + end
        with self._lock:
            self._counts["gaps"] += 1
            self._counts["reconnects"] += 1
            self._reconnect_times.append(time.monotonic())
        log.info("%s: frames again after a gap of %.1f s", self.uri, end - gap.start)
        self._queue.put(gap)

    def _record_error(self, index: int | None, message: str) -> None:
        with self._lock:
            self._errors.append(SourceError(self.uri, index, mask_text(message)))
            self._counts["errors"] += 1

    # -- watchdog thread -----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_every_s) and not self.finished:
            self._check(time.monotonic())

    def _check(self, now: float) -> None:
        silent = now - self._activity
        if self.live and self._state in ("opening", "streaming") and silent > self.source_timeout_s \
                and not self._reopen.is_set():
            self._dead_reason = f"no frame for {silent:.0f} s (dead source)"
            with self._lock:
                self._counts["dead"] += 1
            log.warning("%s: %s; reopening", self.uri, self._dead_reason)
            self._reopen.set()  # interrupts a blocked read (see _install_interrupt)
        waiting = self._queue.waiting_since
        if not self._stalled and waiting is not None and now - waiting > self.stall_timeout_s:
            self._stalled = True
            with self._lock:
                self._counts["stalls"] += 1
                self._stall_times.append(now)
            log.warning("%s: pipeline stalled: %d frames queued, none taken for %.0f s", self.uri,
                        len(self._queue), now - waiting)


class _FrameQueue:
    """A bounded FIFO: ``drop_oldest`` discards the oldest frame (never a gap, where a frame can go)
    when full, otherwise ``put`` waits for room until ``cancel`` is set. ``close``: no more items."""

    def __init__(self, maxsize: int, drop_oldest: bool, cancel: threading.Event) -> None:
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.cancel = cancel
        self.dropped = 0
        self.closed = False
        self.waiting_since: float | None = None
        """When the oldest item still queued has been waiting since the consumer last took one."""
        self._items: deque[tuple[CaptureItem, float]] = deque()  # (item, Unix time queued)
        self._cond = threading.Condition()
        self.listeners: list[Callable[[], None]] = []
        """Called after each ``put`` and on ``close`` (see :meth:`Capture.on_ready`)."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: CaptureItem) -> bool:
        """Queue ``item``; False when cancelled while waiting for room (a gap always goes in)."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if self.drop_oldest or isinstance(item, Gap):
                    self._drop_one()
                    break
                if self.cancel.is_set():
                    return False
                self._cond.wait()
            if not self._items:
                self.waiting_since = time.monotonic()
            self._items.append((item, time.time()))
            self._cond.notify_all()
        self._notify()
        return True

    def _notify(self) -> None:
        for listener in self.listeners:
            listener()

    def _drop_one(self) -> None:
        at = next((k for k, (item, _) in enumerate(self._items) if isinstance(item, Frame)), 0)
        victim, _ = self._items[at]
        del self._items[at]  # by position: frames compare by their pixel arrays
        if isinstance(victim, Frame):
            self.dropped += 1

    def get(self, timeout: float | None) -> tuple[CaptureItem, float] | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self.closed, timeout) or not self._items:
                return None
            entry = self._items.popleft()
            self.waiting_since = time.monotonic() if self._items else None
            self._cond.notify_all()
            return entry

    def wake(self) -> None:
        """Let a ``put`` waiting for room see ``cancel``."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._notify()


class _LiveErrors(FrameSource):
    """What :func:`lrihar.sources._decode_container` reports for a live source, kept bounded by the
    capture. The message that ended a connection (cannot open, demux failed; not a skipped corrupt
    packet) becomes its gap's reason. Reports caused by our own interrupt (stop, or reopening a dead
    source) are not problems of the source."""

    kind = "stream"

    def __init__(self, capture: Capture) -> None:
        super().__init__(capture.uri)
        self.capture = capture
        self.fatal: str | None = None

    def _error(self, index: int | None, message: str) -> None:
        if self.capture._stop.is_set() or self.capture._reopen.is_set():
            return
        if not message.startswith("corrupt packet"):
            self.fatal = message
        self.capture._record_error(index, message)


def _check_camera(uri: str) -> None:
    """Fail early, and clearly, on a camera that is not there (streams are retried instead)."""
    url, fmt, _ = stream_open_args(uri)
    if fmt != "v4l2":
        return
    device = Path(url)
    if not device.exists():
        raise BadInputError(f"camera {uri}: {device} does not exist; cameras are read through Linux "
                            "V4L2: plug the camera in, list the devices with `ls /dev/video*` (or "
                            "`v4l2-ctl --list-devices`) and give its number, or use its stream URL")
    if not os.access(device, os.R_OK):
        raise BadInputError(f"camera {uri}: {device} is not readable by this user; add the user to the "
                            "`video` group (`sudo usermod -aG video $USER`, then log in again)")


class _InterruptClock:
    """Stands in for the ``time`` module inside ``av.container.core``.

    PyAV aborts a blocking FFmpeg read once ``time.monotonic()`` passes the read timeout, and that is
    its only interrupt callback. A thread that asked to stop (or to reopen a dead source) sees the
    clock jump ahead, so its read ends within FFmpeg's poll interval (0.1 s) instead of only after
    ``source_timeout_s``. Other threads, and threads that asked nothing, see the real clock.
    """

    def __init__(self, real) -> None:
        self._real = real
        self._local = threading.local()

    def watch(self, should_stop: Callable[[], bool]) -> None:
        """Interrupt the calling thread's reads whenever ``should_stop()`` is true."""
        self._local.should_stop = should_stop

    def monotonic(self) -> float:
        should_stop = getattr(self._local, "should_stop", None)
        return self._real.monotonic() + (1e9 if should_stop is not None and should_stop() else 0.0)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


_install_lock = threading.Lock()


def _install_interrupt() -> _InterruptClock | None:
    """Install :class:`_InterruptClock` once; None where PyAV no longer reads its clock that way
    (then a stop or a reopen waits for PyAV's read timeout, ``2 * source_timeout_s``, at worst)."""
    import av.container.core as core

    with _install_lock:
        current = getattr(core, "time", None)
        if isinstance(current, _InterruptClock):
            return current
        if current is not time:
            return None
        core.time = _InterruptClock(time)
        return core.time
