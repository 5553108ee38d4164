"""The trained hand detector, deployed: a YOLO ONNX model run by ONNX Runtime.

Letterbox (as ultralytics does it: aspect kept, grey 114 padding, centred) and decoding happen in
numpy; overlapping boxes are merged with supervision's NMS, the same function the offline sweep
uses, on the boxes clipped to the frame (the boxes that get stored), so a sweep that
re-thresholds boxes found at the lowest confidence with ``nms_iou=1.0`` (no NMS) gets exactly
what a rerun at each (confidence, NMS IoU) pair returns. (ultralytics suppresses before
clipping; the two differ only for overlapping boxes that cross the frame's edge.) Neither torch
nor ultralytics is imported here.

``model`` is an ``.onnx`` file, a training run folder, or a project folder (its latest export);
by default the project in the current directory.

Example:
    >>> det = create_detector("yolo", model="proj")  # doctest: +SKIP  (its latest exported detector)
    >>> det(rgb_image)  # doctest: +SKIP  -> supervision.Detections
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.errors import BadInputError, ModelLoadError
from lrihar.models.detectors import register_detector
from lrihar.models.detectors.base import Detector, empty_detections

PAD_VALUE = 114  # ultralytics' letterbox grey


def find_exported_model(path: Path) -> Path:
    """The newest ``export/*.onnx`` under a run folder or a project's ``models/detector``."""
    candidates = []
    for base in (path, path / "models" / "detector"):
        candidates += list(base.glob("export/*.onnx")) + list(base.glob("*/export/*.onnx"))
    if not candidates:
        raise ModelLoadError(
            f"{path}: no exported detector found (looked for models/detector/*/export/*.onnx); "
            "train and export one with `lrihar train-detector` and `lrihar export-runtime --detector`, "
            "or pass the model as --model PATH.onnx (detector.model in the project file)")
    return max(candidates, key=lambda p: (p.stat().st_mtime, str(p)))


def resolve_model(model: str | None) -> Path:
    """An ``.onnx`` path from a file, run folder or project folder (default: the current folder)."""
    path = Path(model).expanduser() if model else Path.cwd()
    if path.is_dir():
        return find_exported_model(path)
    if not path.is_file():
        raise ModelLoadError(f"detector.model: {path} does not exist; give an exported .onnx file, "
                             "a training run folder or a project folder")
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
        spin: let ORT's idle threads busy-wait between operators. Off by default: on a shared
            2-core machine spinning doubled the latency (45 vs 24 ms at 320 px, 2 threads),
            while on an idle one it saves little.
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

    def _session(self, threads: int | None, spin: bool):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            return ort.InferenceSession(str(self.path), opts, providers=providers_for(self.device))
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
            raw = self.session.run(None, {self.input_name: x})[0]
            for im, (_, r, left, top), pred in zip(chunk, boxes, raw, strict=True):
                out.append(self._decode(pred, r, left, top, im.shape[1], im.shape[0]))
        return out

    def _decode(self, pred: np.ndarray, r: float, left: int, top: int, width: int, height: int):
        """(4 + classes, anchors) -> boxes in image pixels, thresholded, NMS, best first."""
        import supervision as sv

        pred = pred.T  # (anchors, 4 + classes): cx, cy, w, h in letterbox pixels, class scores
        scores = pred[:, 4:].max(axis=1)
        keep = scores > self.box_threshold
        if not keep.any():
            return empty_detections()
        pred, scores = pred[keep], scores[keep].astype(np.float32)
        classes = pred[:, 4:].argmax(axis=1)
        cxcy, wh = pred[:, :2], pred[:, 2:4]
        xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
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
