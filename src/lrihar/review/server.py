"""The review page: a small FastAPI app over the project store (``lrihar review``).

Every request opens the store on its own thread (SQLite connections are per thread); every
action is written before the response, so a reload never loses anything. Images are served by
integer ids only (a detection's, or a frame's source id and index), never by path. Every body is
a pydantic model (strict integer ids, four finite numbers per box, bounded lengths), so bad input
is a 4xx with a message; :mod:`lrihar.web.guard` checks Host, Origin, token and body size
before a route runs.

Two queues: ``all`` lists every crop, lowest score first, with filters; ``uncertain`` lists the
frames :func:`lrihar.review.suggest.suggest_frames` ranked highest (computed once, at launch), in
that order, with their reasons, so a person fixes the frames most worth it, drawing the missed
hands on frames that may hold no box yet, or marking a frame as holding no hand at all.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, field_validator

from lrihar.classes import NG, box_labels, unlabelled_box_label
from lrihar.errors import BadInputError, LriharError
from lrihar.lines import project_layout
from lrihar.naming import MAX_CLASS_NAME
from lrihar.project import Project
from lrihar.review import edits
from lrihar.store import Store
from lrihar.store.frames import MANUAL_BACKEND
from lrihar.web.guard import MAX_BODY, Guard, check_token, serve_page

if TYPE_CHECKING:
    from lrihar.review.suggest import Suggestion

_LIST_SQL = """
SELECT d.id, COALESCE(l.label, ''), l.auto_label, COALESCE(l.score, d.score), COALESCE(l.provenance, ''),
       COALESCE(l.version, 0), d.rejected, COALESCE(s.post, ''), s.uri, d.frame_index,
       d.x1, d.y1, d.x2, d.y2, f.width, f.height, d.backend, d.source_id
FROM detections d
JOIN sources s ON s.id = d.source_id
JOIN frames f ON f.source_id = d.source_id AND f.frame_index = d.frame_index
LEFT JOIN labels l ON l.detection_id = d.id
"""
_FIELDS = ("id", "label", "auto_label", "score", "provenance", "version", "rejected", "post", "source",
           "frame_index", "x1", "y1", "x2", "y2", "width", "height", "backend", "source_id")


MAX_ID = 2**63 - 1  # SQLite's largest integer
MAX_IDS = 1000
"""Most detections one action may name (a page shows at most 500)."""

Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
FrameIndex = Annotated[StrictInt, Field(ge=0, le=MAX_ID)]
Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Who(BaseModel):
    """Who acts: every write names its reviewer (and the page's review session, if any)."""

    model_config = ConfigDict(extra="forbid")
    reviewer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                               pattern=r"^[^\x00-\x1f\x7f]*$")]
    session: Id | None = None


class Seen(Who):
    """The versions the page showed, keyed by detection id (a JSON object's keys are text)."""

    seen: dict[Annotated[int, Field(ge=1, le=MAX_ID)], Annotated[StrictInt, Field(ge=0, le=MAX_ID)]] \
        | None = Field(None, max_length=MAX_IDS)


class IdsBody(Seen):
    """Detections to act on; repeated ids count once."""

    ids: list[Id] = Field(min_length=1, max_length=MAX_IDS)

    @field_validator("ids")
    @classmethod
    def _once(cls, ids: list[int]) -> list[int]:
        return list(dict.fromkeys(ids))


class RelabelBody(IdsBody):
    label: Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME)]


class OneBody(Who):
    id: Id


class BoxBody(Seen):
    id: Id
    xyxy: tuple[Coordinate, Coordinate, Coordinate, Coordinate]


class AddBody(Who):
    like: Id
    xyxy: tuple[Coordinate, Coordinate, Coordinate, Coordinate]
    label: Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME)]


class FrameAddBody(Who):
    """A box drawn on a frame named by its source id and index (it may hold no box yet)."""

    source: Id
    frame_index: FrameIndex
    xyxy: tuple[Coordinate, Coordinate, Coordinate, Coordinate]
    label: Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME)]


class MarkEmptyBody(Who):
    """A person looked at a frame and saw no hand (``empty`` true), or takes that back (false)."""

    source: Id
    frame_index: FrameIndex
    empty: StrictBool = True


def validation_message(errors: Any) -> str:
    """One line from FastAPI's validation errors: ``field: what is wrong`` for the first few."""
    parts = []
    for err in list(errors)[:5]:
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'cannot parse it')})")
            continue
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _jpeg(image: np.ndarray, quality: int = 90, max_side: int | None = None) -> bytes:
    from PIL import Image

    picture = Image.fromarray(image)
    if max_side is not None:
        picture.thumbnail((max_side, max_side))  # keeps the aspect ratio; never enlarges
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def short_frame_name(uri: str, frame_index: int, name: str | None) -> str:
    """A frame as a person reads it: the image file's name, or ``video#frame=N``."""
    return Path(name).name if name else f"{Path(uri).name}#frame={frame_index}"


def create_app(project_root: str | Path, host: str = "127.0.0.1", port: int | None = 8765,
               token: str | None = None, max_body: int = MAX_BODY,
               suggestions: Sequence[Suggestion] | None = None):
    """The review app for one project folder, behind :class:`~lrihar.web.guard.Guard`.

    Args:
        project_root: the project folder.
        host: the address it is served on; requests must name it (or, for a loopback address,
            any loopback name) and ``port`` in their Host header.
        port: the port it is served on (None: any).
        token: required with every request; an app served beyond loopback must have one.
        max_body: largest request body in bytes (413 beyond it).
        suggestions: the uncertain queue, best first (``suggest_frames``); None serves the
            ``all`` queue only.
    """
    from fastapi import Body, FastAPI, HTTPException, Query
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    check_token(host, token)  # now, not at the first request, where the middleware is built
    project = Project.open(project_root)
    classes = project.classes
    layout = project_layout(project.config)
    local = threading.local()

    def store() -> Store:
        if getattr(local, "store", None) is None:
            local.store = Store(project.root / "lrihar.db")
        return local.store

    queue = _resolve_queue(store(), suggestions) if suggestions is not None else None
    app = FastAPI(title="lrihar review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, host=host, port=port, token=token, max_body=max_body)

    @app.exception_handler(edits.ReviewConflict)
    async def conflict(_request, exc: edits.ReviewConflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(LriharError)
    async def bad_input(_request, exc: LriharError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    serve_page(app, "review")

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        counts = dict(store().db.execute(
            "SELECT COALESCE(l.label, ''), COUNT(*) FROM detections d LEFT JOIN labels l"
            " ON l.detection_id = d.id WHERE d.rejected = 0 GROUP BY 1").fetchall())
        # The labels a box may get besides NG: the classes, or the detector's "hand" where there are none.
        offered = [n for n in box_labels(classes) if n != NG]
        return {"line": ", ".join(layout.lines), "classes": offered, "posts": list(layout.posts),
                "new_box_label": unlabelled_box_label(classes), "counts": counts,
                "queue": "all" if queue is None else "uncertain"}

    @app.post("/api/session")
    def session(body: Who = Body(...)) -> dict[str, int]:
        return {"session": edits.start_session(store(), body.reviewer)}

    @app.get("/api/crops")
    def crops(label: str | None = Query(None, max_length=1000), status: str = Query("all", max_length=20),
              post: str | None = Query(None, max_length=1000),
              min_score: float | None = Query(None, allow_inf_nan=False),
              max_score: float | None = Query(None, allow_inf_nan=False),
              offset: int = Query(0, ge=0, le=MAX_ID),
              limit: int = Query(48, ge=1, le=500)) -> dict[str, Any]:
        where, params = [], []
        if label is not None:
            where.append("COALESCE(l.label, '') = ?")
            params.append(label)
        if status == "unreviewed":
            where.append("COALESCE(l.provenance, 'auto') IN ('auto', 'model') AND d.rejected = 0")
        elif status == "reviewed":
            where.append("l.provenance = 'corrected' AND d.rejected = 0")
        elif status == "wrong":
            where.append("d.rejected = 1")
        elif status == "all":
            where.append("d.rejected = 0")
        else:
            raise BadInputError("status: use all, unreviewed, reviewed or wrong")
        if post:
            where.append("s.post = ?")
            params.append(post)
        if min_score is not None:
            where.append("COALESCE(l.score, d.score) >= ?")
            params.append(min_score)
        if max_score is not None:
            where.append("COALESCE(l.score, d.score) <= ?")
            params.append(max_score)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        db = store().db
        total = db.execute(f"SELECT COUNT(*) FROM ({_LIST_SQL}{clause})", params).fetchone()[0]
        rows = db.execute(f"{_LIST_SQL}{clause} ORDER BY COALESCE(l.score, d.score), d.id LIMIT ? OFFSET ?",
                          [*params, limit, offset]).fetchall()
        return {"total": total, "items": [dict(zip(_FIELDS, r, strict=True)) for r in rows]}

    def frame_at(source_id: int, frame_index: int) -> np.ndarray:
        row = store().db.execute(
            "SELECT s.uri, f.frame_index, f.timestamp, f.name FROM frames f"
            " JOIN sources s ON s.id = f.source_id WHERE f.source_id = ? AND f.frame_index = ?",
            (source_id, frame_index)).fetchone()
        if row is None:
            raise HTTPException(404, f"frame {frame_index} of source {source_id} is not in the store")
        return _cached_frame(*row)

    def frame_of(det_id: int) -> tuple[np.ndarray, tuple[float, ...]]:
        row = store().db.execute("SELECT source_id, frame_index, x1, y1, x2, y2 FROM detections WHERE id = ?",
                                 (det_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"detection {det_id} does not exist")
        return frame_at(row[0], row[1]), tuple(row[2:])

    def boxes_on(source_id: int, frame_index: int) -> list[dict[str, Any]]:
        rows = store().db.execute(f"{_LIST_SQL} WHERE d.source_id = ? AND d.frame_index = ? ORDER BY d.id",
                                  (source_id, frame_index)).fetchall()
        return [dict(zip(_FIELDS, r, strict=True)) for r in rows]

    @app.get("/api/crops/{det_id}.jpg")
    def crop_image(det_id: int = PathParam(ge=1, le=MAX_ID),
                   padding: float = Query(0.1, ge=0, le=1, allow_inf_nan=False)) -> Response:
        from lrihar.boxes import crop

        image, box = frame_of(det_id)
        return Response(_jpeg(crop(image, box, padding)), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/frames/{det_id}.jpg")
    def frame_image(det_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        return Response(_jpeg(frame_of(det_id)[0], 85), media_type="image/jpeg")

    @app.get("/api/frames/{det_id}/boxes")
    def frame_boxes(det_id: int = PathParam(ge=1, le=MAX_ID)) -> dict[str, Any]:
        ref = store().db.execute("SELECT source_id, frame_index FROM detections WHERE id=?",
                                 (det_id,)).fetchone()
        if ref is None:
            raise HTTPException(404, f"detection {det_id} does not exist")
        return {"items": boxes_on(*ref)}

    @app.get("/api/sources/{source_id}/frames/{frame_index}.jpg")
    def stored_frame_image(source_id: int = PathParam(ge=1, le=MAX_ID),
                           frame_index: int = PathParam(ge=0, le=MAX_ID),
                           max_side: int | None = Query(None, ge=16, le=8192)) -> Response:
        return Response(_jpeg(frame_at(source_id, frame_index), 85, max_side), media_type="image/jpeg")

    @app.get("/api/sources/{source_id}/frames/{frame_index}/boxes")
    def stored_frame_boxes(source_id: int = PathParam(ge=1, le=MAX_ID),
                           frame_index: int = PathParam(ge=0, le=MAX_ID)) -> dict[str, Any]:
        row = store().db.execute("SELECT width, height FROM frames WHERE source_id=? AND frame_index=?",
                                 (source_id, frame_index)).fetchone()
        if row is None:
            raise HTTPException(404, f"frame {frame_index} of source {source_id} is not in the store")
        return {"width": row[0], "height": row[1], "items": boxes_on(source_id, frame_index),
                "check": edits.frame_check(store().db, (source_id, frame_index))}

    @app.get("/api/queue")
    def uncertain_queue(offset: int = Query(0, ge=0, le=MAX_ID),
                        limit: int = Query(48, ge=1, le=500)) -> dict[str, Any]:
        if queue is None:
            raise HTTPException(404, "this page serves every crop: start it with `lrihar review --queue "
                                     "uncertain` for the frames most worth a correction")
        items = []
        for item in queue[offset:offset + limit]:
            boxes = boxes_on(item["source_id"], item["frame_index"])
            check = edits.frame_check(store().db, (item["source_id"], item["frame_index"]))
            # live: a frame a person has corrected (or found empty) since launch stays, marked done
            reviewed = check["verdict"] is not None or any(
                b["rejected"] or b["provenance"] == "corrected" or b["backend"] == MANUAL_BACKEND
                for b in boxes)
            items.append(item | {"boxes": boxes, "check": check, "reviewed": reviewed})
        return {"queue": "uncertain", "total": len(queue), "items": items}
    @app.post("/api/relabel")
    def relabel(body: RelabelBody) -> dict[str, Any]:
        return {"items": edits.relabel(store(), body.ids, body.label, body.reviewer, body.session,
                                         body.seen, classes)}

    @app.post("/api/accept")
    def accept(body: IdsBody) -> dict[str, Any]:
        return {"items": edits.accept(store(), body.ids, body.reviewer, body.session, body.seen)}

    @app.post("/api/wrong")
    def wrong(body: IdsBody) -> dict[str, Any]:
        return {"items": edits.mark_wrong(store(), body.ids, body.reviewer, body.session, body.seen)}

    @app.post("/api/box")
    def box(body: BoxBody) -> dict[str, Any]:
        return edits.move_box(store(), body.id, body.xyxy, body.reviewer, body.session, body.seen)

    @app.post("/api/add")
    def add(body: AddBody) -> dict[str, Any]:
        return edits.add_box(store(), body.like, body.xyxy, body.label, body.reviewer, body.session,
                               classes)

    @app.post("/api/add-to-frame")
    def add_to_frame(body: FrameAddBody) -> dict[str, Any]:
        return edits.add_frame_box(store(), (body.source, body.frame_index), body.xyxy, body.label,
                                     body.reviewer, body.session, classes)

    @app.post("/api/mark-empty")
    def mark_empty(body: MarkEmptyBody) -> dict[str, Any]:
        return edits.mark_frame_empty(store(), (body.source, body.frame_index), body.reviewer, body.session,
                                        body.empty)

    @app.post("/api/promote")
    def promote(body: OneBody) -> dict[str, Any]:
        image, box = frame_of(body.id)
        return {"template": str(edits.promote_template(store(), project.config, body.id, image, box,
                                                         body.reviewer, body.session))}

    @app.post("/api/undo")
    def undo(body: Who) -> dict[str, Any]:
        return {"items": edits.undo_last(store(), body.reviewer)}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return {"sessions": edits.session_stats(store())}

    return app


def _resolve_queue(store: Store, suggestions: Sequence[Suggestion]) -> list[dict[str, Any]]:
    """The suggested frames as the page lists them: rank, integer frame reference, size, why."""
    out = []
    for rank, s in enumerate(suggestions, 1):
        row = store.db.execute("SELECT f.source_id, f.width, f.height FROM frames f JOIN sources src"
                               " ON src.id = f.source_id WHERE src.uri = ? AND f.frame_index = ?",
                               (s.source, s.frame_index)).fetchone()
        if row is None:  # suggested from another store: nothing the page could show
            continue
        out.append({"rank": rank, "source_id": row[0], "frame_index": s.frame_index, "width": row[1],
                    "height": row[2], "name": short_frame_name(s.source, s.frame_index, s.name),
                    "source": s.source, "status": s.status, "score": s.score, "reasons": list(s.reasons)})
    return out


@lru_cache(maxsize=64)
def _cached_frame(uri: str, index: int, timestamp: float, name: str | None) -> np.ndarray:
    from lrihar.sources import read_frame

    return read_frame(uri, index, timestamp, name)


def serve(project_root: str | Path, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, suggestions: Sequence[Suggestion] | None = None) -> None:
    """Run the review page until interrupted (``token``: see :func:`launch_token`; ``suggestions``:
    the uncertain queue, see :func:`create_app`). Served as the live page is
    (:mod:`lrihar.web.serving`: connection cap, header and keep-alive timeouts)."""
    from lrihar.web.serving import run_server, server_config

    app = create_app(project_root, host, port, token, suggestions=suggestions)
    run_server(server_config(app, host=host, port=port), "the review page")


__all__ = ["create_app", "serve", "short_frame_name", "validation_message"]
