"""The trained hand detector, deployed: a YOLO ONNX model run by ONNX Runtime.

Letterbox (as ultralytics does it: aspect kept, grey 114 padding, centred) and decoding happen in
numpy (exports since the head cut decode only the anchors above the threshold,
:mod:`lrihar.models.detectors.yolo_head`; older ones return decoded boxes). Overlapping boxes
are merged with supervision's NMS, the same function the offline sweep uses, on the boxes
clipped to the frame (the boxes that get stored), so a sweep that re-thresholds boxes found at
the lowest confidence with ``nms_iou=1.0`` (no NMS) gets exactly what a rerun at each
(confidence, NMS IoU) pair returns. (ultralytics suppresses before clipping; the two differ only
for overlapping boxes that cross the frame's edge.) Neither torch nor ultralytics is imported
here.

``model`` is an ``.onnx`` file, a training run folder, or a project folder (its latest export);
by default the project in the current directory.

Example:
    >>> det = create_detector("yolo", model="proj")  # doctest: +SKIP  (its latest exported detector)
    >>> det(rgb_image)  # doctest: +SKIP  -> supervision.Detections
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.artifacts import check_recorded, exported_detector
from lrihar.errors import BadInputError, ModelLoadError
from lrihar.models.detectors import register_detector
from lrihar.models.detectors.base import Detector, empty_detections
from lrihar.models.detectors.yolo_head import HEAD_KEY, REG_MAX_KEY, STRIDES_KEY, anchor_grid, decode_bins

PAD_VALUE = 114  # ultralytics' letterbox grey


def resolve_model(model: str | None) -> Path:
    """An ``.onnx`` path from a file, run folder or project folder (default: the current folder)."""
    path = Path(model).expanduser() if model else Path.cwd()
    if path.is_dir():
        return exported_detector(path)
    if not path.is_file():
        raise ModelLoadError(f"detector.model: {path} does not exist; give an exported .onnx file, "
                             "a training run folder or a project folder")
    check_recorded(path)  # an exported file is the one its export record names
    return path


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """``image`` scaled to fit ``size`` (h, w), centred on grey; (pixels, scale, left, top)."""
    import cv2

    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    # The same rounding as ultralytics' LetterBox, so both see the same pixels (parity check).
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE,) * 3)
    return out, r, left, top


def input_tensor(letterboxed: Sequence[np.ndarray]) -> np.ndarray:
    """Letterboxed RGB uint8 frames as the model's input: float32 0-1, NCHW."""
    return np.stack(letterboxed).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers: CPU, preceded by TensorRT / CUDA when asked and present."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        gpu = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        wanted = [p for p in gpu if p in available] + wanted
    return wanted


@register_detector("yolo")
class YoloOnnxDetector(Detector):
    """A YOLO detector exported to ONNX (``lrihar export-runtime --detector``).

    Args:
        model: ``.onnx`` file, run folder or project folder (default: the current folder).
        box_threshold: keep boxes whose confidence is above this.
        nms_iou: IoU above which the lower-scored of two boxes is dropped (1.0 = no NMS).
        max_det: most boxes per image, highest scores first.
        threads: ONNX Runtime intra-op threads (default: ORT's choice, one per core).
        spin: let ORT's idle threads busy-wait between operators during a call (they stop when
            it returns). Off by default: on 2 idle cores it saves ~2 ms of 16 at 320 px, but with
            both cores busy with other work it doubled the latency (51 vs 26 ms).
        device: ``cpu``, or ``cuda`` to use the CUDA / TensorRT providers when installed.
        batch_size: frames per call of :meth:`detect_batch` (batched only for dynamic models).
    """

    name = "yolo"

    def __init__(self, model: str | None = None, box_threshold: float = 0.25, nms_iou: float = 0.7,
                 max_det: int = 300, threads: int | None = None, spin: bool = False,
                 device: str = "cpu", batch_size: int = 1, **ignored: Any) -> None:
        unknown = set(ignored) - {"prompt", "text_threshold"}  # shared detector settings it ignores
        if unknown:
            raise TypeError(f"got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if not 0 <= box_threshold <= 1 or not 0 <= nms_iou <= 1:
            raise BadInputError("detector: box_threshold and nms_iou must lie in [0, 1]")
        self.path = resolve_model(model)
        self.box_threshold, self.nms_iou, self.max_det = float(box_threshold), float(nms_iou), int(max_det)
        self.device, self.batch_size = device, batch_size
        self.session = self._session(threads, spin)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.imgsz = self._input_size(inp.shape, meta)
        self.dynamic_batch = not isinstance(inp.shape[0], int)
        names = _literal(meta.get("names")) or {0: "hand"}
        self.names = {int(k): str(v) for k, v in dict(names).items()}
        self.threads, self.spin = threads, spin
        self.head = self._head(meta)

    def _session(self, threads: int | None, spin: bool):
        import onnxruntime as ort

        from lrihar.models.ort_session import session_options

        try:
            return ort.InferenceSession(str(self.path), session_options(threads, spin),
                                        providers=providers_for(self.device))
        except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph types
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); export it again with "
                                 "`lrihar export-runtime --detector`") from None

    def _input_size(self, shape: Sequence[Any], meta: dict[str, str]) -> tuple[int, int]:
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            return int(shape[2]), int(shape[3])
        size = _literal(meta.get("imgsz"))
        if isinstance(size, list | tuple) and len(size) == 2:
            return int(size[0]), int(size[1])
        raise ModelLoadError(f"{self.path}: the input size is neither fixed in the graph nor in the "
                             "metadata (imgsz); export it with `lrihar export-runtime --detector`")

    def _head(self, meta: dict[str, str]) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Anchor centres, strides and bins of a graph cut before decoding; None for one that
        returns decoded boxes (exports made before the cut, or without a DFL head)."""
        if meta.get(HEAD_KEY) != json.dumps("dfl"):
            return None
        try:
            strides, reg_max = json.loads(meta[STRIDES_KEY]), int(json.loads(meta[REG_MAX_KEY]))
        except (KeyError, ValueError, TypeError):
            raise ModelLoadError(f"{self.path}: its metadata lacks the strides or bins of its head; "
                                 "export it again with `lrihar export-runtime --detector`") from None
        return (*anchor_grid(self.imgsz, strides), reg_max)

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        return (self.box_threshold, None)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.path), "sha256": _sha256(self.path),
                "imgsz": list(self.imgsz), "box_threshold": self.box_threshold, "nms_iou": self.nms_iou,
                "max_det": self.max_det, "threads": self.threads, "spin": self.spin,
                "providers": self.session.get_providers()}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list:
        images = [np.ascontiguousarray(np.asarray(im, dtype=np.uint8)) for im in images]
        step = len(images) if self.dynamic_batch else 1
        out = []
        for i in range(0, len(images), max(step, 1)):
            chunk = images[i:i + step]
            boxes = [letterbox(im, self.imgsz) for im in chunk]
            x = input_tensor([b[0] for b in boxes])
            outputs = self.session.run(None, {self.input_name: x})
            for k, (im, (_, r, left, top)) in enumerate(zip(chunk, boxes, strict=True)):
                found = self._candidates([o[k] for o in outputs])
                out.append(self._decode(*found, r, left, top, im.shape[1], im.shape[0]))
        return out

    def _candidates(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame's boxes (xyxy, letterbox pixels), scores and classes above the threshold."""
        if self.head is not None:  # (4 * reg_max, anchors) bins, (classes, anchors) scores
            bins, all_scores = outputs
            scores = all_scores.max(axis=0)
            keep = scores > self.box_threshold
            points, strides, reg_max = self.head
            xyxy = decode_bins(bins[:, keep], points[:, keep], strides[keep], reg_max)
            return xyxy, scores[keep].astype(np.float32), all_scores[:, keep].argmax(axis=0)
        pred = outputs[0].T  # (anchors, 4 + classes): cx, cy, w, h in letterbox pixels, class scores
        scores = pred[:, 4:].max(axis=1)
        keep = scores > self.box_threshold
        pred = pred[keep]
        cxcy, wh = pred[:, :2], pred[:, 2:4]
        xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
        return xyxy, scores[keep].astype(np.float32), pred[:, 4:].argmax(axis=1)

    def _decode(self, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, r: float, left: int,
                top: int, width: int, height: int):
        """Candidates in letterbox pixels -> boxes in image pixels, NMS, best first."""
        import supervision as sv

        if not len(scores):
            return empty_detections()
        xyxy = (xyxy - np.array([left, top, left, top], np.float32)) / r
        # NMS on the final, clipped boxes: what the sweep re-thresholds offline.
        xyxy = sv.clip_boxes(xyxy, (width, height)).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        xyxy, scores, classes = xyxy[order], scores[order], classes[order]
        if self.nms_iou < 1.0 and len(scores) > 1:
            kept = sv.box_non_max_suppression(np.concatenate([xyxy, scores[:, None]], axis=1),
                                              iou_threshold=self.nms_iou)
            xyxy, scores, classes = xyxy[kept], scores[kept], classes[kept]
        xyxy, scores, classes = xyxy[:self.max_det], scores[:self.max_det], classes[:self.max_det]
        return sv.Detections(xyxy=xyxy, confidence=scores, class_id=np.zeros(len(scores), int),
                             data={"class_name": np.array([self.names.get(int(c), "hand") for c in classes])})


def _literal(text: str | None) -> Any:
    """ultralytics writes ONNX metadata values as Python literals (``{0: 'hand'}``, ``[320, 320]``)."""
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        from lrihar.paths import sha256_of

        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]
