"""MediaPipe Hands: the offline default, whose palm and landmark models ship inside the wheel.

Boxes are the min/max of the 21 landmarks, padded; confidence is the palm detector's score.
Per box, ``data`` keeps the landmarks in image pixels (``landmarks``, shape (21, 3); z is in the
same scale as x), the world landmarks in metres (``world_landmarks``) and ``handedness``.

Recall on small, distant or gloved hands is modest. Extra *views* of each frame help some cases:
``zoom_out`` pads the frame so large, close hands fit the palm detector's anchors; ``tiles`` runs
an N×N overlapping grid for wide views with small hands; ``flip`` adds a mirrored pass. Boxes of
all views are merged with non-maximum suppression. See docs/benchmarks.md for what each pays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrihar.classes import HAND
from lrihar.errors import BadInputError
from lrihar.models.detectors import register_detector
from lrihar.models.detectors.base import Detector, empty_detections

N_LANDMARKS = 21


@dataclass(frozen=True)
class _View:
    """A transformed copy of the frame and the map from its pixels back to the frame's."""

    kind: str  # "full" | "zoom" | "flip" | "tile"
    x0: int = 0
    y0: int = 0
    x1: int = 0
    y1: int = 0
    zoom: float = 1.0


def _hands_graph(static: bool, max_hands: int, complexity: int, det_conf: float,
                 landmark_conf: float):
    """A MediaPipe Hands graph that also outputs the palm detections (for their scores)."""
    from mediapipe.python.solution_base import SolutionBase
    from mediapipe.python.solutions import hands as mp_hands

    class _HandsWithPalms(SolutionBase):
        def __init__(self) -> None:
            super().__init__(
                binary_graph_path=mp_hands._BINARYPB_FILE_PATH,
                side_inputs={"model_complexity": complexity, "num_hands": max_hands,
                             "use_prev_landmarks": not static},
                calculator_params={
                    "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": det_conf,
                    "handlandmarkcpu__ThresholdingCalculator.threshold": landmark_conf,
                },
                outputs=["multi_hand_landmarks", "multi_hand_world_landmarks",
                         "multi_handedness", "palm_detections"],
            )

        def process(self, image: np.ndarray):
            return super().process(input_data={"image": image})

    return _HandsWithPalms()


@register_detector("mediapipe-hands")
class MediaPipeHandsDetector(Detector):
    """MediaPipe Hands with optional zoom-out, tiling and flip views.

    Args:
        box_threshold: palm detection confidence (MediaPipe ``min_detection_confidence``).
        landmark_threshold: hand-presence score of the landmark model (``min_tracking_confidence``).
        max_num_hands: hands per view.
        model_complexity: 0 (lite) or 1 (full) landmark model.
        tracking: video mode (landmarks of frame t seed frame t+1; faster, but results then
            depend on earlier frames, so a resumed run can differ from an uninterrupted one).
        padding: fraction of the landmark box added on each side.
        zoom_out: also run on the frame centred in a canvas this many times larger (1 = off).
        tiles: also run on an N×N grid of overlapping tiles (1 = off).
        flip: also run on the mirrored frame.
        nms_iou: IoU above which boxes from different views are merged.
    """

    name = "mediapipe-hands"

    def __init__(self, box_threshold: float = 0.3, landmark_threshold: float = 0.5,
                 max_num_hands: int = 4, model_complexity: int = 1, tracking: bool = False,
                 padding: float = 0.15, zoom_out: float = 1.5, tiles: int = 1,
                 flip: bool = False, nms_iou: float = 0.5, batch_size: int = 1,
                 **ignored: Any) -> None:
        unknown = set(ignored) - {"model", "prompt", "text_threshold", "device"}
        if unknown:
            raise TypeError(f"got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if model_complexity not in (0, 1):
            raise BadInputError("detector.options.model_complexity: must be 0 (lite) or 1 (full)")
        self.settings = dict(
            box_threshold=box_threshold, landmark_threshold=landmark_threshold,
            max_num_hands=max_num_hands, model_complexity=model_complexity, tracking=tracking,
            padding=padding, zoom_out=zoom_out, tiles=tiles, flip=flip, nms_iou=nms_iou,
        )
        self.batch_size = batch_size
        self._graphs: dict[_View, Any] = {}

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        return (self.settings["box_threshold"], None)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.settings}

    def reset(self) -> None:
        for graph in self._graphs.values():
            graph.close()
        self._graphs.clear()

    def _graph(self, view: _View):
        key = view if self.settings["tracking"] else _View("any")
        if key not in self._graphs:
            s = self.settings
            self._graphs[key] = _hands_graph(
                not s["tracking"], s["max_num_hands"], s["model_complexity"],
                s["box_threshold"], s["landmark_threshold"])
        return self._graphs[key]

    def _views(self, width: int, height: int) -> list[_View]:
        s = self.settings
        views = [_View("full", 0, 0, width, height)]
        if s["zoom_out"] > 1:
            views.append(_View("zoom", 0, 0, width, height, zoom=float(s["zoom_out"])))
        if s["flip"]:
            views.append(_View("flip", 0, 0, width, height))
        n = int(s["tiles"])
        if n > 1:
            # Tiles overlap by a quarter of their size so a hand on a seam is whole in one tile.
            span = n - 0.25 * (n - 1)  # tiles per side, less the overlaps
            tw, th = int(np.ceil(width / span)), int(np.ceil(height / span))
            for i in range(n):
                for j in range(n):
                    x0 = min(round(i * 0.75 * tw), width - tw)
                    y0 = min(round(j * 0.75 * th), height - th)
                    views.append(_View("tile", x0, y0, x0 + tw, y0 + th))
        return views

    @staticmethod
    def _render(image: np.ndarray, view: _View) -> tuple[np.ndarray, float, float]:
        """The view's pixels and the offset of the frame's origin inside them."""
        if view.kind == "zoom":
            h, w = image.shape[:2]
            H, W = round(h * view.zoom), round(w * view.zoom)
            oy, ox = (H - h) // 2, (W - w) // 2
            canvas = np.zeros((H, W, 3), dtype=np.uint8)
            canvas[oy:oy + h, ox:ox + w] = image
            return canvas, ox, oy
        if view.kind == "flip":
            return np.ascontiguousarray(image[:, ::-1]), 0, 0
        if view.kind == "tile":
            return np.ascontiguousarray(image[view.y0:view.y1, view.x0:view.x1]), -view.x0, -view.y0
        return np.ascontiguousarray(image), 0, 0

    def detect_batch(self, images: Sequence[np.ndarray]) -> list:
        return [self._detect_one(np.asarray(img, dtype=np.uint8)) for img in images]

    def _detect_one(self, image: np.ndarray):
        import supervision as sv

        h, w = image.shape[:2]
        parts = []
        for view in self._views(w, h):
            pixels, ox, oy = self._render(image, view)
            result = self._graph(view).process(pixels)
            dets = self._to_detections(result, pixels.shape[1], pixels.shape[0], ox, oy,
                                       flip_width=w if view.kind == "flip" else None)
            if len(dets):
                parts.append(dets)
        if not parts:
            return empty_detections(N_LANDMARKS)
        merged = sv.Detections.merge(parts)
        merged.xyxy = sv.clip_boxes(merged.xyxy, (w, h)).astype(np.float32)
        if len(parts) > 1:
            merged = merged.with_nms(threshold=self.settings["nms_iou"], class_agnostic=True)
        return merged

    def _to_detections(self, result: Any, vw: int, vh: int, ox: float, oy: float,
                       flip_width: int | None):
        import supervision as sv

        if not result.multi_hand_landmarks:
            return empty_detections(N_LANDMARKS)
        palms = _palm_boxes(result.palm_detections, vw, vh)
        pad = self.settings["padding"]
        boxes, scores, lms, wlms, hands = [], [], [], [], []
        for lm, wlm, handed in zip(result.multi_hand_landmarks, result.multi_hand_world_landmarks,
                                   result.multi_handedness, strict=True):
            pts = np.array([[p.x * vw, p.y * vh, p.z * vw] for p in lm.landmark], np.float32)
            label = handed.classification[0].label
            score = _palm_score(pts, palms, default=handed.classification[0].score)
            pts[:, 0] -= ox
            pts[:, 1] -= oy
            if flip_width is not None:
                pts[:, 0] = flip_width - pts[:, 0]
                label = {"Left": "Right", "Right": "Left"}.get(label, label)
            lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
            size = hi - lo
            boxes.append([*(lo - pad * size), *(hi + pad * size)])
            scores.append(score)
            lms.append(pts)
            wlms.append([[p.x, p.y, p.z] for p in wlm.landmark])
            hands.append(label)
        return sv.Detections(
            xyxy=np.array(boxes, np.float32), confidence=np.array(scores, np.float32),
            class_id=np.zeros(len(boxes), int),
            data={"class_name": np.array([HAND] * len(boxes)),
                  "landmarks": np.array(lms, np.float32),
                  "world_landmarks": np.array(wlms, np.float32),
                  "handedness": np.array(hands)},
        )


def _palm_boxes(palm_detections: Any, vw: int, vh: int) -> list[tuple[np.ndarray, float]]:
    out = []
    for det in palm_detections or []:
        bb = det.location_data.relative_bounding_box
        box = np.array([bb.xmin * vw, bb.ymin * vh, (bb.xmin + bb.width) * vw,
                        (bb.ymin + bb.height) * vh])
        out.append((box, float(det.score[0]) if det.score else 0.0))
    return out


def _palm_score(points: np.ndarray, palms: list[tuple[np.ndarray, float]], default: float) -> float:
    """Score of the palm detection whose box holds the most of this hand's landmarks.

    In tracking mode the palm detector does not run on every frame; the landmark model's
    handedness score stands in then.
    """
    best, best_inside = default, 0
    for box, score in palms:
        inside = int(((points[:, 0] >= box[0]) & (points[:, 0] <= box[2])
                      & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3])).sum())
        if inside > best_inside:
            best, best_inside = score, inside
    return best
