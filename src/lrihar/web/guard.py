"""What stands between a local page's API (the review page, the live page) and the browser: Host,
Origin, token, body size and the security headers every response carries (one ASGI middleware,
:class:`Guard`), and the page's address and launch token.

* **Host** must name the server: ``127.0.0.1``, ``localhost`` or ``[::1]`` (and ``--host``) with
  its port. A DNS-rebinding page reaches the server under its own name, so it is refused (400).
  A wildcard bind (``0.0.0.0``, ``::``) is reached under names the server cannot know, so there
  any name with the right port is accepted and the token below is the defence.
* **Origin** is checked on every write (POST, PUT, PATCH, DELETE): a browser always sends it, and
  it must be this server's own origin, else 403. A write without ``Origin`` (and without a
  cross-site ``Sec-Fetch-Site``) comes from a non-browser client such as a script and is let
  through: no web page can send one.
* **Token.** When the server listens beyond this machine every request needs the per-launch
  token: header ``X-Lrihar-Token``, or the HttpOnly ``SameSite=Strict`` cookie set when the page
  is opened with ``/?token=...`` (401 without one, 403 with a wrong one).
* **Body size** is capped (Content-Length and the bytes actually streamed): 413 beyond it.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOKEN_HEADER = "x-lrihar-token"
MAX_BODY = 1_000_000
"""Largest request body accepted (bytes); the biggest real one, 1000 ids, is ~20 kB."""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self'; "
     "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),  # the page's URL may carry the token
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),  # no embedding crops in other sites
)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def check_token(host: str, token: str | None) -> None:
    """Refuse (ValueError) a server bound beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise ValueError(f"a review server bound to {host} must have a token")


def new_token() -> str:
    """A fresh per-launch token."""
    return secrets.token_urlsafe(24)


def cookie_name(port: int | None) -> str:
    """The token cookie's name; cookies ignore ports, so two servers on one host keep theirs apart."""
    return f"lrihar_token_{port}" if port else "lrihar_token"


class Guard:
    """ASGI middleware: refuses foreign Hosts, cross-origin writes, missing tokens and big bodies,
    and adds :data:`SECURITY_HEADERS` to every response.

    Args:
        app: the application behind it.
        host: the bound address (``--host``).
        port: the bound port; None accepts any (an app not served on a fixed port).
        token: required on every request when given (a server beyond loopback must have one).
        max_body: largest request body in bytes.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = 8765, token: str | None = None,
                 max_body: int = MAX_BODY) -> None:
        check_token(host, token)
        self.app = app
        self.port = port
        self.token = token
        self.max_body = max_body
        bound = host.strip("[]").lower()
        self.names = None if _is_wildcard(bound) else LOOPBACK_NAMES | {bound}
        self.cookie = cookie_name(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra: list[tuple[bytes, bytes]] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS
                            if k.encode() not in present]
                message["headers"] = headers + extra
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = (self._host_problem(headers.get("host", ""))
                   or self._origin_problem(scope["method"], headers)
                   or self._token_problem(scope, headers, extra))
        too_big = 413, f"the request body is larger than {self.max_body} bytes"
        length = headers.get("content-length")
        if refusal is None and length is not None:
            if not length.isdigit():
                refusal = 400, "Content-Length is not a number"
            elif int(length) > self.max_body:
                refusal = too_big
        if refusal is not None:
            await _respond(send_with_headers, *refusal)
            return
        if scope["method"] in _WRITES:
            body = await self._read_body(receive)
            if body is None:
                await _respond(send_with_headers, *too_big)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_headers)

    def _host_problem(self, host: str) -> tuple[int, str] | None:
        try:
            if any(c in host for c in "@/\\?# "):
                raise ValueError(host)  # only a name and a port: "x@127.0.0.1" is no loopback
            parts = urlsplit("//" + host)
            name, port = parts.hostname, parts.port or 80
        except ValueError:
            name, port = None, None
        if name is not None and (self.names is None or name in self.names) \
                and (self.port is None or port == self.port):
            return None
        return 400, (f"Host {host!r} is not this review server; open the address `lrihar review` printed "
                     "(a page under another name is refused so it cannot reach your labels)")

    def _origin_problem(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if method not in _WRITES:
            return None
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none"):
                return None  # not a browser, or a browser on this very page
            return 403, "cross-site requests may not change labels"
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc.lower() == headers.get("host", "").lower():
            return None
        return 403, f"requests from {origin} may not change labels; use the review page itself"

    def _token_problem(self, scope: Scope, headers: dict[str, str],
                       extra: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        if self.token is None:
            return None
        given = headers.get(TOKEN_HEADER)
        if given is None and "cookie" in headers:
            morsel = SimpleCookie(headers["cookie"]).get(self.cookie)
            given = morsel.value if morsel is not None else None
        if given is None and scope["method"] == "GET" and scope["path"] == "/":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if query:
                given = query[0]
                if _same(given, self.token):  # the page sends it with every request from now on
                    extra.append((b"set-cookie", f"{self.cookie}={given}; Path=/; HttpOnly; "
                                                 "SameSite=Strict".encode()))
        if given is None:
            return 401, ("this review server needs its token: open the address with ?token=... that "
                         f"`lrihar review` printed, or send the {TOKEN_HEADER} header")
        if not _same(given, self.token):
            return 403, "wrong token; use the one `lrihar review` printed at this launch"
        return None

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The request's body messages, or None once they pass :attr:`max_body` bytes."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away; the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                return messages


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _respond(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["MAX_BODY", "SECURITY_HEADERS", "TOKEN_HEADER", "Guard", "check_token", "cookie_name",
           "is_loopback", "new_token"]


def page_url(host: str, port: int, token: str | None) -> str:
    """The address to open: a wildcard bind is shown under this machine's name, the token in the query."""
    import socket

    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 address
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def launch_token(host: str) -> str | None:
    """A fresh token when ``host`` reaches beyond this machine, else None (loopback needs none)."""
    return None if is_loopback(host) else new_token()


def serve_page(app, page: str) -> None:
    """Routes of a one-page app: ``/`` serves ``resources/<page>.html``, ``/static/<page>.js`` and
    ``.css`` its script and style (read once, never cached by the browser: a rerun may change them)."""
    from importlib import resources

    from fastapi import HTTPException
    from fastapi.responses import Response

    types = {f"{page}.html": "text/html; charset=utf-8", f"{page}.js": "text/javascript; charset=utf-8",
             f"{page}.css": "text/css; charset=utf-8"}
    static = {name: resources.files("lrihar").joinpath(f"resources/{name}").read_bytes() for name in types}

    def static_response(name: str) -> Response:
        return Response(static[name], media_type=types[name], headers={"Cache-Control": "no-store"})

    @app.get("/")
    def index() -> Response:
        return static_response(f"{page}.html")

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static or name.endswith(".html"):
            raise HTTPException(404, "no such file")
        return static_response(name)
