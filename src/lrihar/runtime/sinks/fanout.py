"""Every runtime item to every sink, and every processed frame to every observer, each failing alone.

A sink that raises (``--jsonl`` on a full disk, a video that cannot be written, a broken plug-in)
must neither stop the run nor keep the other sinks from their items. :class:`SinkFanout` hands
each item to the *essential* sinks first (``essential = True``: the store, what a run must keep),
then to the others, every call guarded:

* a failure is counted and reported once, naming the sink and the error; while it goes on, a
  count is logged every ``report_every_s``;
* after ``max_consecutive`` failures in a row a sink is set aside: it gets no items (they are
  counted as skipped) and is tried again every ``retry_s`` with the item of the moment; the first
  success brings it back (reported);
* an essential sink is never set aside;
* :meth:`SinkFanout.close` closes every sink, essential ones first, each guarded; a sink that fails
  to close is reported, and only an essential sink's failure (rows the store could not keep) is
  raised.

Example:
    >>> out = SinkFanout([StoreSink(store, run_id), JsonlSink("/dev/full")])  # doctest: +SKIP
    >>> out.emit(event)  # the store has it; the JSONL failure is logged once  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from lrihar.errors import LriharError

log = logging.getLogger(__name__)


def sink_name(sink: Any) -> str:
    """What the logs call ``sink``: its ``name`` attribute, else its class name."""
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__


class _Guarded:
    """One sink or observer, its failures and whether it is set aside."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name = sink_name(target)
        self.essential = bool(getattr(target, "essential", False))
        self.failures = 0  # calls that raised, in all
        self.in_a_row = 0
        self.skipped = 0  # items and frames not given to it while set aside
        self.first_error: str | None = None
        self.last_error: str | None = None
        self.retry_at: float | None = None  # set aside until then
        self.reported = 0  # failures + skipped at the last periodic report
        self.report_at = 0.0

    def stats(self) -> dict:
        return {"failures": self.failures, "skipped": self.skipped, "set_aside": self.retry_at is not None,
                "first_error": self.first_error, "last_error": self.last_error}


class SinkFanout:
    """Items to sinks (``emit``), frames to observers (``observe``); see the module docstring.

    Args:
        sinks: objects with ``emit(item)`` and ``close()``; the essential ones are served first.
        observers: callables taking each processed frame (an object may be both).
        max_consecutive: failures in a row that set a sink aside.
        retry_s: how often a set-aside sink is tried again.
        report_every_s: how often a failing sink's count is logged.
        clock: monotonic seconds (tests).
    """

    def __init__(self, sinks: Sequence = (), observers: Sequence[Callable] = (), max_consecutive: int = 5,
                 retry_s: float = 60.0, report_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_consecutive = max_consecutive
        self.retry_s = retry_s
        self.report_every_s = report_every_s
        self.clock = clock
        self._guards: dict[int, _Guarded] = {}
        ordered = sorted(sinks, key=lambda s: not getattr(s, "essential", False))  # stable
        self.sinks = [self._guard(s).target for s in ordered]
        self.observers = [self._guard(o).target for o in observers]
        self._closed = False

    def _guard(self, target: Any) -> _Guarded:
        return self._guards.setdefault(id(target), _Guarded(target))

    def emit(self, item) -> None:
        """``item`` to every sink in turn; a sink's failure is its own."""
        for sink in self.sinks:
            guard = self._guards[id(sink)]
            if self._ready(guard):
                self._call(guard, sink.emit, item)

    def observe(self, view) -> None:
        """A processed frame to every observer in turn; an observer's failure is its own."""
        for observe in self.observers:
            guard = self._guards[id(observe)]
            if self._ready(guard):
                self._call(guard, observe, view)

    def stats(self) -> dict[str, dict]:
        """Per sink and observer that ever failed: failures, skipped items, set aside, errors."""
        return {g.name: g.stats() for g in self._guards.values() if g.failures}

    def close(self) -> None:
        """Close every sink once, essential ones first, each guarded; then report what failed.

        Raises:
            LriharError: an essential sink could not close (it could not write what it held).
        """
        if self._closed:
            return
        self._closed = True
        lost = []
        for sink in self.sinks:
            guard = self._guards[id(sink)]
            try:
                sink.close()
            except Exception as exc:
                message = _describe(exc)
                guard.failures += 1
                guard.last_error = message
                guard.first_error = guard.first_error or message
                if guard.essential:
                    lost.append(f"{guard.name}: {message}")
                else:
                    log.warning("%s: could not close: %s", guard.name, message)
        for guard in self._guards.values():
            if guard.failures and not guard.essential:
                log.warning("%s: %d failure(s), %d item(s) or frame(s) not given to it while set aside; "
                            "first error: %s", guard.name, guard.failures, guard.skipped, guard.first_error)
        if lost:
            raise LriharError("could not write everything the run found: " + "; ".join(lost))

    # -- the guard ---------------------------------------------------------------------------------
    def _ready(self, guard: _Guarded) -> bool:
        """Whether ``guard``'s sink gets the next call (not set aside, or due for a retry)."""
        if guard.retry_at is None:
            return True
        now = self.clock()
        if now >= guard.retry_at:
            return True
        guard.skipped += 1
        self._maybe_report(guard, now)
        return False

    def _call(self, guard: _Guarded, fn: Callable, arg) -> None:
        try:
            fn(arg)
        except Exception as exc:
            self._failed(guard, exc)
            return
        if guard.in_a_row:
            if guard.retry_at is not None:
                log.warning("%s: works again (%d item(s) or frame(s) not given to it while set aside)",
                            guard.name, guard.skipped)
            guard.in_a_row, guard.retry_at = 0, None

    def _failed(self, guard: _Guarded, exc: Exception) -> None:
        message = _describe(exc)
        now = self.clock()
        guard.failures += 1
        guard.in_a_row += 1
        guard.last_error = message
        if guard.failures == 1:
            guard.first_error = message
            guard.report_at, guard.reported = now + self.report_every_s, 1
            log.warning("%s failed: %s; the run goes on%s", guard.name, message,
                        "" if guard.essential else " (the other outputs get every item)")
        if not guard.essential and guard.in_a_row >= self.max_consecutive:
            if guard.retry_at is None:
                log.warning("%s: %d failures in a row: set aside, tried again every %.0f s", guard.name,
                            guard.in_a_row, self.retry_s)
            guard.retry_at = now + self.retry_s
        self._maybe_report(guard, now)

    def _maybe_report(self, guard: _Guarded, now: float) -> None:
        if now < guard.report_at:
            return
        new = guard.failures + guard.skipped - guard.reported
        if new:
            log.warning("%s: still failing: %d failure(s), %d item(s) or frame(s) skipped so far; last "
                        "error: %s", guard.name, guard.failures, guard.skipped, guard.last_error)
        guard.reported = guard.failures + guard.skipped
        guard.report_at = now + self.report_every_s


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
