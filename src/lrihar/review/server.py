"""The review page: a small FastAPI app over the project store (``lrihar review``).

Every request opens the store on its own thread (SQLite connections are per thread); every
action is written before the response, so a reload never loses anything. Images are served by
detection id only (integers), never by path.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.errors import BadInputError, LriharError
from lrihar.project import Project
from lrihar.review import actions
from lrihar.store import Store

_LIST_SQL = """
SELECT d.id, COALESCE(l.label, ''), l.auto_label, COALESCE(l.score, d.score), COALESCE(l.provenance, ''),
       COALESCE(l.version, 0), d.rejected, COALESCE(s.post, ''), s.uri, d.frame_index,
       d.x1, d.y1, d.x2, d.y2, f.width, f.height, d.backend
FROM detections d
JOIN sources s ON s.id = d.source_id
JOIN frames f ON f.source_id = d.source_id AND f.frame_index = d.frame_index
LEFT JOIN labels l ON l.detection_id = d.id
"""
_FIELDS = ("id", "label", "auto_label", "score", "provenance", "version", "rejected", "post", "source",
           "frame_index", "x1", "y1", "x2", "y2", "width", "height", "backend")


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def create_app(project_root: str | Path):
    """The review app for one project folder."""
    from fastapi import Body, FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    project = Project.open(project_root)
    classes = [c.name for c in project.config.classes]
    local = threading.local()

    def store() -> Store:
        if getattr(local, "store", None) is None:
            local.store = Store(project.root / "lrihar.db")
        return local.store

    app = FastAPI(title="lrihar review", docs_url=None, redoc_url=None)

    @app.exception_handler(actions.ReviewConflict)
    async def conflict(_request, exc: actions.ReviewConflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(LriharError)
    async def bad_input(_request, exc: LriharError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("lrihar").joinpath("resources/review.html").read_text(encoding="utf-8")

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        counts = dict(store().db.execute(
            "SELECT COALESCE(l.label, ''), COUNT(*) FROM detections d LEFT JOIN labels l"
            " ON l.detection_id = d.id WHERE d.rejected = 0 GROUP BY 1").fetchall())
        return {"line": project.config.line, "classes": classes, "posts": project.config.posts,
                "counts": counts}

    @app.post("/api/session")
    def session(reviewer: str = Body(..., embed=True)) -> dict[str, int]:
        return {"session": actions.start_session(store(), reviewer)}

    @app.get("/api/crops")
    def crops(label: str | None = None, status: str = "all", post: str | None = None,
              min_score: float | None = None, max_score: float | None = None,
              offset: int = Query(0, ge=0), limit: int = Query(48, ge=1, le=500)) -> dict[str, Any]:
        where, params = [], []
        if label is not None:
            where.append("COALESCE(l.label, '') = ?")
            params.append(label)
        if status == "unreviewed":
            where.append("COALESCE(l.provenance, 'auto') = 'auto' AND d.rejected = 0")
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

    def frame_of(det_id: int) -> tuple[np.ndarray, tuple[float, ...]]:
        row = store().db.execute(
            "SELECT s.uri, d.frame_index, f.timestamp, f.name, d.x1, d.y1, d.x2, d.y2 FROM detections d"
            " JOIN sources s ON s.id = d.source_id JOIN frames f ON f.source_id = d.source_id"
            " AND f.frame_index = d.frame_index WHERE d.id = ?", (det_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"detection {det_id} does not exist")
        return _cached_frame(row[0], row[1], row[2], row[3]), tuple(row[4:])

    @app.get("/api/crops/{det_id}.jpg")
    def crop_image(det_id: int, padding: float = Query(0.1, ge=0, le=1)) -> Response:
        from lrihar.crops import padded_box

        image, box = frame_of(det_id)
        x1, y1, x2, y2 = padded_box(box, padding, image.shape[1], image.shape[0])
        return Response(_jpeg(image[y1:y2, x1:x2]), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/frames/{det_id}.jpg")
    def frame_image(det_id: int) -> Response:
        return Response(_jpeg(frame_of(det_id)[0], 85), media_type="image/jpeg")

    @app.get("/api/frames/{det_id}/boxes")
    def frame_boxes(det_id: int) -> dict[str, Any]:
        db = store().db
        ref = db.execute("SELECT source_id, frame_index FROM detections WHERE id=?", (det_id,)).fetchone()
        if ref is None:
            raise HTTPException(404, f"detection {det_id} does not exist")
        rows = db.execute(f"{_LIST_SQL} WHERE d.source_id = ? AND d.frame_index = ? ORDER BY d.id",
                          ref).fetchall()
        return {"items": [dict(zip(_FIELDS, r, strict=True)) for r in rows]}

    def _seen(body: dict) -> dict[int, int] | None:
        seen = body.get("seen")
        return None if seen is None else {int(k): int(v) for k, v in seen.items()}

    def _who(body: dict) -> tuple[str, int | None]:
        reviewer = str(body.get("reviewer") or "").strip()
        if not reviewer:
            raise BadInputError("reviewer: give your name so the correction says who made it")
        return reviewer, body.get("session")

    @app.post("/api/relabel")
    def relabel(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        return {"items": actions.relabel(store(), _ids(body), str(body.get("label")), reviewer, sess,
                                         _seen(body), classes)}

    @app.post("/api/accept")
    def accept(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        return {"items": actions.accept(store(), _ids(body), reviewer, sess, _seen(body))}

    @app.post("/api/wrong")
    def wrong(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        return {"items": actions.mark_wrong(store(), _ids(body), reviewer, sess, _seen(body))}

    @app.post("/api/box")
    def box(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        return actions.move_box(store(), int(body["id"]), body.get("xyxy", []), reviewer, sess, _seen(body))

    @app.post("/api/add")
    def add(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        return actions.add_box(store(), int(body["like"]), body.get("xyxy", []), str(body.get("label")),
                               reviewer, sess, classes)

    @app.post("/api/promote")
    def promote(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, sess = _who(body)
        det_id = int(body["id"])
        image, box = frame_of(det_id)
        return {"template": str(actions.promote_template(store(), project.config, det_id, image, box,
                                                         reviewer, sess))}

    @app.post("/api/undo")
    def undo(body: dict = Body(...)) -> dict[str, Any]:
        reviewer, _ = _who(body)
        return {"items": actions.undo_last(store(), reviewer)}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return {"sessions": actions.session_stats(store())}

    return app


def _ids(body: dict) -> list[int]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise BadInputError("ids: give a non-empty list of detection ids")
    try:
        return [int(i) for i in ids]
    except (TypeError, ValueError):
        raise BadInputError("ids: detection ids are integers") from None


@lru_cache(maxsize=64)
def _cached_frame(uri: str, index: int, timestamp: float, name: str | None) -> np.ndarray:
    from lrihar.sources import read_frame

    return read_frame(uri, index, timestamp, name)


def serve(project_root: str | Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the review page until interrupted."""
    import uvicorn

    app = create_app(project_root)
    if host not in ("127.0.0.1", "localhost", "::1"):
        import warnings

        warnings.warn(f"serving the review page on {host}: anyone on that network can edit labels",
                      stacklevel=2)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["create_app", "serve"]
