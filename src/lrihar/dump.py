"""Stored detections out as COCO JSON, CSV or JSON Lines for other tools.

Example:
    >>> from lrihar.dump import dump_detections
    >>> dump_detections(store, "coco", open("dets.json", "w"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import TextIO

from lrihar.csv_cells import SafeDictWriter
from lrihar.errors import BadInputError
from lrihar.store import DetectionRow, Store

FORMATS = ("coco", "csv", "jsonl")
CSV_FIELDS = ("source", "frame_index", "timestamp", "frame_name", "x1", "y1", "x2", "y2",
              "score", "label", "backend", "handedness", "run_id", "detection_id",
              "action", "action_score", "runner_up", "margin", "label_provenance")


def frame_file_name(source_uri: str, frame_index: int, frame_name: str | None) -> str:
    """How a frame is named outside the store: its image path, or ``video#frame=N``."""
    return frame_name or f"{source_uri}#frame={frame_index}"


def _flat(row: DetectionRow) -> dict:
    x1, y1, x2, y2 = row.xyxy
    return {"source": row.source_uri, "frame_index": row.frame_index,
            "timestamp": round(row.timestamp, 6), "frame_name": row.frame_name,
            "x1": round(x1, 2), "y1": round(y1, 2), "x2": round(x2, 2), "y2": round(y2, 2),
            "score": round(row.score, 5), "label": row.label, "backend": row.backend,
            "handedness": row.handedness, "run_id": row.run_id, "detection_id": row.id,
            "action": row.action, "action_score": _round(row.action_score, 5),
            "runner_up": row.runner_up, "margin": _round(row.margin, 5),
            "label_provenance": row.label_provenance}


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def coco_document(store: Store) -> dict:
    """A COCO detection document: every stored frame as an image, every box with its score.

    ``images[].file_name`` is the frame's image path, or ``<video>#frame=<index>`` for video
    frames; ``images[].status`` says whether the frame held an action, nothing, or was gated.
    The category of a box is its action class (or NG) once ``classify`` has run, else the
    detector's phrase ("hand"); ``action_score`` is the template similarity.
    """
    images, image_ids = [], {}
    for uri, _kind, rec in store.frames():
        image_ids[(uri, rec.index)] = len(images) + 1
        images.append({"id": len(images) + 1, "file_name": frame_file_name(uri, rec.index, rec.name),
                       "width": rec.width, "height": rec.height, "source": uri,
                       "frame_index": rec.index, "timestamp": round(rec.timestamp, 6),
                       "status": rec.status})
    categories: dict[str, int] = {}
    annotations = []
    for row in store.detections():
        cat = categories.setdefault(row.action or row.label, len(categories) + 1)
        x1, y1, x2, y2 = row.xyxy
        annotations.append({
            "id": row.id, "image_id": image_ids[(row.source_uri, row.frame_index)],
            "category_id": cat, "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": round(row.score, 5),
            "backend": row.backend, "handedness": row.handedness,
            "action_score": _round(row.action_score, 5), "runner_up": row.runner_up,
            "label_provenance": row.label_provenance,
        })
    return {"info": {"description": "lrihar detections"}, "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in categories.items()]}


def dump_detections(store: Store, fmt: str, out: TextIO) -> int:
    """Write every stored detection to ``out`` in ``fmt``; returns the number of detections."""
    if fmt not in FORMATS:
        raise BadInputError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "coco":
        doc = coco_document(store)
        json.dump(doc, out)
        out.write("\n")
        return len(doc["annotations"])
    n = 0
    if fmt == "csv":
        writer = SafeDictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in store.detections():
            writer.writerow(_flat(row))
            n += 1
        return n
    for row in store.detections():
        record = _flat(row) | {"landmarks": row.landmarks, "world_landmarks": row.world_landmarks}
        out.write(json.dumps(record) + "\n")
        n += 1
    return n
