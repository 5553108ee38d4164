"""Drawing a processed frame: tracked boxes with ``#track label`` and the post's step checklist
(supervision's annotators), for the annotated video and the live page."""

from __future__ import annotations

import numpy as np

from lrihar.runtime.pipeline import FrameView

DONE, TODO, PROBLEM = (26, 152, 80), (200, 200, 200), (215, 48, 39)


def draw_view(view: FrameView, width: int | None = None) -> np.ndarray:
    """The frame of ``view`` (RGB) with its boxes, labels and checklist; scaled to ``width`` px
    first when given (text stays legible on small pictures)."""
    import cv2
    import supervision as sv

    image = view.frame.image
    scale = 1.0
    if width is not None and image.shape[1] > width:
        scale = width / image.shape[1]
        size = (width, max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    dets = view.detections
    if len(dets):
        ids = dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), -1)
        boxes = sv.Detections(xyxy=dets.xyxy * scale, tracker_id=np.asarray(ids),
                              class_id=np.maximum(np.asarray(ids), 0))
        text = [f"#{t} {lab}" if t >= 0 else lab for t, lab in zip(ids, view.labels, strict=True)]
        image = sv.BoxAnnotator(thickness=2, color_lookup=sv.ColorLookup.CLASS).annotate(image, boxes)
        image = sv.LabelAnnotator(text_scale=0.45, text_padding=3, color_lookup=sv.ColorLookup.CLASS,
                                  smart_position=True).annotate(image, boxes, labels=text)
    y = 18
    if view.cycle_id is not None:
        cv2.putText(image, f"cycle {view.cycle_id}", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, TODO, 1,
                    cv2.LINE_AA)
        y += 16
    for step in view.checklist:
        mark = "x" if step.done else " "
        colour = PROBLEM if step.problem else DONE if step.done else TODO
        note = f" ({step.problem})" if step.problem else ""
        cv2.putText(image, f"[{mark}] {step.step}{note}", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
        y += 16
    return image
