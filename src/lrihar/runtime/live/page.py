""":class:`LivePage`: the live page as a frame observer and sink of the pipeline, served by uvicorn
from a background thread."""

from __future__ import annotations

import socket
import threading
import time

from lrihar.errors import BadInputError, LriharError
from lrihar.events import RuntimeItem
from lrihar.runtime.live.pictures import Pictures
from lrihar.runtime.live.state import LiveState
from lrihar.web.guard import is_loopback, new_token, page_url
from lrihar.web.serving import ServerLimits, page_server, server_config


class LivePage:
    """The live page of ``lrihar run --serve``.

    Give it to the pipeline as an observer (``page(view)`` per processed frame) and as a sink
    (``emit``, ``close``). Both only store references under a lock (a few µs); pictures are drawn
    and encoded by the server's threads when a browser asks, at most ``fps_cap`` per source per
    second.

    Args:
        host: the address to listen on. Beyond loopback every request needs a per-launch token
            (``token``, or a fresh one), carried by :attr:`url`, as ``lrihar review`` does it.
        port: the port; 0 picks a free one (see :attr:`url` once started).
        width: pictures wider than this are scaled down.
        fps_cap: most pictures encoded per source per second.
        history: how many alerts, events and cycles per post the page keeps.
        token: the token required beyond loopback (None: a fresh one there, none on loopback).
        limits: connection cap, header and keep-alive timeouts (the review page's, by default).
    """

    name = "live page"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, width: int = 640, fps_cap: float = 10,
                 history: int = 50, token: str | None = None, limits: ServerLimits | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token if token is not None or is_loopback(host) else new_token()
        self.fps_cap = fps_cap
        self.state = LiveState(history)
        self.pictures = Pictures(width, fps_cap)
        self.limits = limits or ServerLimits()
        self._server = None
        self._thread: threading.Thread | None = None

    # -- the pipeline's side ----------------------------------------------------------------------
    def __call__(self, view) -> None:
        """Keep ``view`` (a :class:`~lrihar.runtime.pipeline.FrameView`) as its source's latest frame."""
        self.state.observe(view)

    def emit(self, item: RuntimeItem) -> None:
        self.state.add(item)

    def close(self) -> None:
        """Stop serving (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(10)

    # -- the server -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 20.0) -> LivePage:
        """Listen on ``host:port`` and serve the page from a background thread."""
        from lrihar.runtime.live.app import create_app

        if self._server is not None:
            return self
        sock = self._listen()
        self.port = sock.getsockname()[1]
        poll_ms = max(100, round(1000 / self.fps_cap)) if self.fps_cap > 0 else 100
        app = create_app(self.state, self.pictures, self.host, self.port, self.token, poll_ms)
        config = server_config(app, self.limits, lifespan="off", timeout_graceful_shutdown=2)
        server = page_server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lrihar-live-page",
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            server.should_exit = True
            sock.close()
            raise LriharError(f"the live page did not start on {self.host}:{self.port} (see the log above)")
        self._server, self._thread = server, thread
        return self

    def _listen(self) -> socket.socket:
        sock = None
        try:
            family, kind, proto, _, address = socket.getaddrinfo(self.host.strip("[]"), self.port,
                                                                 type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.limits.backlog)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise BadInputError(f"--host {self.host} --port {self.port}: the live page cannot listen there "
                                f"({exc.strerror or exc}); choose another --port (0 picks a free one) "
                                "or another --host") from exc
        sock.setblocking(False)
        return sock

    @property
    def url(self) -> str:
        """The address to open (with ``?token=`` beyond loopback); only once started."""
        if self._server is None:
            raise LriharError("the live page is not started")
        return page_url(self.host, self.port, self.token)

    def __enter__(self) -> LivePage:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
