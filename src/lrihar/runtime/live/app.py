"""The live page's read-only FastAPI app, behind the review page's :class:`~lrihar.web.guard.Guard`
(Host check, token beyond loopback, CSP ``script-src 'self'``, nosniff)."""

from __future__ import annotations

from lrihar.runtime.live.pictures import Pictures
from lrihar.runtime.live.state import LiveState
from lrihar.web.guard import Guard, serve_page

_NO_STORE = {"Cache-Control": "no-store"}


def create_app(state: LiveState, pictures: Pictures, host: str = "127.0.0.1", port: int | None = None,
               token: str | None = None, poll_ms: int = 100):
    """The app: ``/`` the page, ``/static/*`` its script and style, ``/api/state`` everything but
    the pictures, ``/api/frames`` the frame counters, ``/frame/{k}.jpg`` source ``k``'s picture.

    Args:
        state: what the run has shown so far.
        pictures: the picture encoder.
        host, port, token: as for :class:`~lrihar.web.guard.Guard`.
        poll_ms: how often the page asks for new frames (the state is asked for every 500 ms).
    """
    from fastapi import FastAPI, HTTPException
    from fastapi import Path as PathParam
    from fastapi.responses import JSONResponse, Response

    app = FastAPI(title="lrihar live", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, host=host, port=port, token=token)

    serve_page(app, "live")

    @app.get("/api/state")
    def current() -> JSONResponse:
        return JSONResponse({**state.snapshot(), "poll_ms": poll_ms}, headers=_NO_STORE)

    @app.get("/api/frames")
    def frames() -> JSONResponse:
        return JSONResponse(state.frames(), headers=_NO_STORE)

    @app.get("/frame/{k}.jpg")
    def frame(k: int = PathParam(ge=0, le=100_000)) -> Response:
        slot = state.slot(k)
        found = pictures.jpeg(slot) if slot is not None else None
        if found is None:
            raise HTTPException(404, f"source {k} has no frame yet")
        seq, data = found
        return Response(data, media_type="image/jpeg", headers={**_NO_STORE, "X-Frame-Seq": str(seq)})

    return app
