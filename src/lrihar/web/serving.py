"""How both local pages are served (the review page and ``lrihar run``'s live page): one uvicorn
configuration, so that both stand up to slow or misbehaving clients alike.

uvicorn keeps a connection that never finishes its request header open for ever (its keep-alive
timeout starts only after a response), so a few hundred such clients use up the process's file
descriptors: new connections can no longer be accepted and asyncio logs the failed accept again
and again. Here:

* **Header timeout.** A connection must send a complete request header within
  ``header_timeout_s`` of connecting, or of its previous response (keep-alive), else it is closed.
  The header's size is bounded (``max_header_bytes``, h11's incomplete-event limit: 400 beyond it).
* **Connection cap.** At most ``max_connections`` open connections (fewer when the process has few
  file descriptors: a quarter of ``RLIMIT_NOFILE``). A connection beyond the cap closes the oldest
  one still waiting for its request header (an idle keep-alive or a slow client), so a normal
  request gets in at once; when every connection is busy with a request, the newcomer is closed.
* **Keep-alive** ``keep_alive_s`` after a response; ``limit_concurrency`` (503) bounds the tasks.
* **Backlog.** The kernel holds up to ``backlog`` connections not yet accepted (they cost the
  process no descriptor), while asyncio accepts at most half the cap in one go: a burst of
  connections neither runs the process out of descriptors nor leaves clients waiting for a
  SYN retry behind a full queue.
* **Accept errors** that say the process is out of descriptors (``EMFILE``, ``ENFILE``, ...) are
  logged once per ``log_every_s`` with the number left out since (:class:`ResourceErrorFilter`).

Example:
    >>> run_server(server_config(app, host="127.0.0.1", port=8765))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lrihar.errors import LriharError

if TYPE_CHECKING:
    import uvicorn

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RESOURCE_TEXT = ("out of system resource", "Too many open files")
_LOGGERS = ("asyncio", "uvicorn", "uvicorn.error")


@dataclass(frozen=True)
class ServerLimits:
    """What a client may hold of a page's server (see the module docstring)."""

    max_connections: int = 128
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_header_bytes: int = 16 * 1024
    backlog: int = 128
    log_every_s: float = 60.0

    def connection_cap(self) -> int:
        """``max_connections``, lowered to a quarter of the process's file descriptors (at least 4)."""
        try:
            import resource
        except ImportError:  # not Unix
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft <= 0:
            return self.max_connections
        return max(4, min(self.max_connections, soft // 4))

    def accept_batch(self, cap: int) -> int:
        """Connections asyncio accepts in one go, before any of them reaches the cap: half of it."""
        return max(4, min(self.backlog, cap // 2))


def server_config(app, limits: ServerLimits | None = None, **kwargs: Any) -> uvicorn.Config:
    """The uvicorn configuration of a local page: ``limits`` (default :class:`ServerLimits`), no
    access log, no ``Server`` header, warnings only; ``kwargs`` (host, port, lifespan, ...) go to
    :class:`uvicorn.Config`. Installs the rate limit on resource-error logs."""
    import uvicorn

    limits = limits or ServerLimits()
    cap = limits.connection_cap()
    options: dict[str, Any] = {
        "log_level": "warning", "access_log": False, "server_header": False,
        "http": guarded_protocol(limits, cap), "timeout_keep_alive": limits.keep_alive_s,
        # asyncio's accept batch; the kernel's queue is set to `limits.backlog` once serving (PageServer).
        "h11_max_incomplete_event_size": limits.max_header_bytes, "backlog": limits.accept_batch(cap),
        # Tasks beyond this get 503; connections are held to `cap` by the protocol itself.
        "limit_concurrency": 2 * cap + 1,
    }
    config = uvicorn.Config(app, **(options | kwargs))  # configures uvicorn's loggers
    config.lrihar_limits = limits
    quiet_resource_errors(limits.log_every_s)
    return config


def page_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server for a :func:`server_config`: once listening, the kernel's queue of
    connections not yet accepted is set to the limits' ``backlog`` (asyncio set it to the accept
    batch, which it also uses as the kernel's queue)."""
    import uvicorn

    backlog = getattr(config, "lrihar_limits", ServerLimits()).backlog

    class PageServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            for server in getattr(self, "servers", []):
                for listener in server.sockets or ():
                    with socket.socket(fileno=os.dup(listener.fileno())) as same:
                        same.listen(backlog)  # the same listening socket, through a second descriptor

    return PageServer(config)


def run_server(config: uvicorn.Config, what: str = "the page") -> None:
    """Serve ``config`` until interrupted (Ctrl-C ends it quietly), as ``uvicorn.run`` does.

    Raises:
        LriharError: the server did not start (the reason is in the log above).
    """
    server = page_server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise LriharError(f"{what} did not start on {config.host}:{config.port} (see the log above)")


def guarded_protocol(limits: ServerLimits, cap: int) -> type:
    """uvicorn's h11 protocol with the header timeout and the connection cap of one server."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    # Connections waiting for a complete request header, oldest first (the event loop's thread only).
    waiting: dict[Any, None] = {}

    class GuardedH11Protocol(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._await_header()
            if len(self.connections) > cap:
                next(iter(waiting))._drop()  # the oldest waiting; self when all others are busy

        def connection_lost(self, exc) -> None:
            self._header_done()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a whole header came (or the connection failed)
                self._header_done()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._await_header()  # keep-alive: the next request's header is due in time too

        def _await_header(self) -> None:
            self._header_done()
            waiting[self] = None
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._drop)

        def _header_done(self) -> None:
            waiting.pop(self, None)
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _drop(self) -> None:
            self._header_done()
            if not self.transport.is_closing():
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
                self.transport.close()

    return GuardedH11Protocol


class ResourceErrorFilter(logging.Filter):
    """Lets one "out of file descriptors" record through per ``every_s``; the next one that passes
    says how many were left out. Other records pass untouched."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_resource_error(record):
            return True
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.every_s:
                self.suppressed += 1
                return False
            if self.suppressed:
                record.msg = f"{record.msg} ({self.suppressed} more like it in the last " \
                             f"{now - self._last:.0f} s not logged)"
            self._last, self.suppressed = now, 0
            return True


def is_resource_error(record: logging.LogRecord) -> bool:
    """Whether ``record`` reports a process out of descriptors or buffers (a failed accept)."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return True
    message = str(record.msg)
    return any(text in message for text in _RESOURCE_TEXT)


_filter_lock = threading.Lock()


def quiet_resource_errors(every_s: float = 60.0) -> ResourceErrorFilter:
    """Install one :class:`ResourceErrorFilter` on asyncio's and uvicorn's loggers (once a process)."""
    with _filter_lock:
        for name in _LOGGERS:
            for existing in logging.getLogger(name).filters:
                if isinstance(existing, ResourceErrorFilter):
                    return existing
        flt = ResourceErrorFilter(every_s)
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(flt)
        return flt
