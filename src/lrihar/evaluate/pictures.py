"""Small pictures for the report: frames with their boxes and labels drawn (supervision's
annotators), scaled to :data:`WIDTH` px and encoded as base64 JPEG so the HTML stays small.

Frames are picked deterministically: an even spread over the project's frames with boxes, and,
with ground truth, the frames with the most misses and false boxes
(:func:`lrihar.evaluate.project_eval.worst_frames`), ground truth and lrihar side by side.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.sources import SourceError, read_image
from lrihar.store import Store

WIDTH = 480  # px: enough to see a hand, small enough for a report of a few MB at most
UNLABELLED = "(no label)"
# Colours, chosen to read apart for most colour-blind readers too.
GT_HIT, GT_MISSED = "#1a9850", "#f46d43"  # green: found; orange: a hand nobody boxed
PRED_HIT, PRED_FALSE = "#3f6fd8", "#d73027"  # blue: a true box; red: a box on no hand


def jpeg_base64(image, quality: int = 80) -> str:
    """A PIL image (or RGB array) as base64 JPEG."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def draw(image: np.ndarray, xyxy: Sequence[Sequence[float]], labels: Sequence[str],
         colour_index: Sequence[int], palette: Sequence[str], width: int = WIDTH):
    """``image`` (RGB) scaled to ``width`` px with its boxes and labels drawn; a PIL image.

    Scaled before drawing so lines and text stay legible in the small picture.
    """
    import supervision as sv
    from PIL import Image

    scale = min(1.0, width / image.shape[1])
    picture = Image.fromarray(image)
    if scale < 1.0:
        picture = picture.resize((width, max(1, round(image.shape[0] * scale))), Image.Resampling.LANCZOS)
    boxes = np.asarray(xyxy, float).reshape(-1, 4) * scale
    if not len(boxes):
        return picture
    dets = sv.Detections(xyxy=boxes, class_id=np.asarray(colour_index, int))
    colours = sv.ColorPalette.from_hex(list(palette))
    picture = sv.BoxAnnotator(color=colours, thickness=2).annotate(picture, dets)
    return sv.LabelAnnotator(color=colours, text_scale=0.4, text_padding=3, smart_position=True).annotate(
        picture, dets, labels=list(labels))


def spread(n_items: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``n_items`` (first and last included)."""
    if n_items <= k:
        return list(range(n_items))
    return sorted({round(x) for x in np.linspace(0, n_items - 1, k)})


def sample_frames(store: Store, classes: Sequence[str], k: int = 6) -> tuple[list[dict], list[str]]:
    """Up to ``k`` frames with boxes, evenly spread over the project, each box with its label
    and score; returns (images for the report, frames that could not be read)."""
    from lrihar.crops import iter_frames

    frames: dict[tuple[str, int], list[int]] = {}
    for row in store.detections():
        frames.setdefault((row.source_uri, row.frame_index), []).append(row.id)
    keys = list(frames)
    wanted = {i for n in spread(len(keys), k) for i in frames[keys[n]]}
    names = [*classes, UNLABELLED]
    palette = [c.as_hex() for c in _palette(len(names) + 1)]  # the last one: NG and unknown labels
    errors: list[SourceError] = []
    out = []
    for rows, image in iter_frames(store, errors, only=wanted):
        labels = [r.action or UNLABELLED for r in rows]
        colour = [names.index(x) if x in names else len(names) for x in labels]
        text = [f"{x} {r.action_score:.2f}" if r.action_score is not None else x for x, r in zip(
            labels, rows, strict=True)]
        boxes = f"{len(rows)} box{'es' if len(rows) > 1 else ''}"
        out.append(_jpeg(f"{_where(rows[0])}: {boxes}", f"frame-{len(out) + 1}", draw(
            image, [r.xyxy for r in rows], text, colour, palette)))
    return out, [f"{e.source_id}: {e.message}" for e in errors]


def _where(row) -> str:
    if row.frame_name:
        return Path(row.frame_name).name
    return f"{Path(row.source_uri).name} #{row.frame_index}"


def _jpeg(alt: str, name: str, picture) -> dict[str, str]:
    """An image block entry: caption, file stem for Markdown, base64 JPEG."""
    return {"alt": alt, "name": name, "mime": "image/jpeg", "data": jpeg_base64(picture)}


def _palette(n: int):
    import supervision as sv

    colours = sv.ColorPalette.DEFAULT.colors
    return [colours[i % len(colours)] for i in range(n)]


def worst_pairs(worst: list[dict[str, Any]]) -> tuple[list[dict], list[str]]:
    """Ground truth beside lrihar's boxes for each of ``worst`` (entries of
    :func:`~lrihar.evaluate.project_eval.worst_frames`); returns (pairs, frames not readable)."""
    pairs, unreadable = [], []
    for w in worst:
        image = read_image(Path(w["path"]), lambda _i, m: unreadable.append(m))
        if image is None:
            continue
        gt_text = [f"{'MISSED ' if m else ''}{c}" for c, m in zip(w["gt_labels"], w["missed"], strict=True)]
        pred_text = [f"{'FALSE ' if f else ''}{c or 'box'}" for c, f in zip(w["pred_labels"], w["false"],
                                                                               strict=True)]
        left = draw(image, w["gt"], gt_text, [int(m) for m in w["missed"]], [GT_HIT, GT_MISSED])
        right = draw(image, w["pred"], pred_text, [int(f) for f in w["false"]], [PRED_HIT, PRED_FALSE])
        n_missed, n_false = sum(w["missed"]), sum(w["false"])
        stem = f"worst-{len(pairs) + 1}"
        post = "" if w["post"] == "(line)" else f" ({w['post']})"
        pairs.append({"caption": f"{w['name']}{post}: {n_missed} missed, {n_false} false",
                      "left": _jpeg(f"{w['name']}: ground truth", f"{stem}-gt", left),
                      "right": _jpeg(f"{w['name']}: lrihar", f"{stem}-lrihar", right)})
    return pairs, unreadable
