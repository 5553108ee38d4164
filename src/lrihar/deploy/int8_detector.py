"""An INT8 copy of an exported detector (``export-runtime --detector --int8``), and how far it
strays from the float model.

ONNX Runtime's static quantisation (QDQ format) with per-channel weights quantises the
convolutions only: the box decoding, the sigmoid scores and the output concatenation stay in
float (quantising the output, which holds box pixels and 0-1 scores side by side, wrecked the
scores). Activation ranges come from calibration frames of the run's own data (percentile
calibration: on the gloves set it kept 1-2 points more recall than min-max). On CPUs with VNNI
the INT8 model runs ~1.5× faster; it finds fewer boxes, so :func:`int8_agreement` measures which
share of the float model's boxes it still finds, and the export keeps the file only above a floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.models.detectors.yolo import input_tensor, letterbox

MATCH_IOU = 0.5


def quantize_detector(fp32: Path, target: Path, frames: Sequence[np.ndarray], imgsz: int) -> str:
    """Write ``target``: ``fp32`` with INT8 convolutions calibrated on ``frames``; returns the
    calibration method used (percentile; min-max where an activation is constant on ``frames``,
    which leaves the percentile histogram no range to bin)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    tensors = [input_tensor([letterbox(f, (imgsz, imgsz))[0]]) for f in frames]  # as the backend feeds them

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.left, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))  # shape inference and graph clean-up first
        for method in (CalibrationMethod.Percentile, CalibrationMethod.MinMax):
            try:
                quantize_static(str(prepared), str(target), Frames(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                per_channel=True, op_types_to_quantize=["Conv"], calibrate_method=method)
                return method.name.lower()
            except ValueError:  # numpy: "Too many bins for data range"
                if method is CalibrationMethod.MinMax:
                    raise
    raise AssertionError("unreachable")


def int8_agreement(fp32: Path, int8: Path, frames: Sequence[np.ndarray], confidence: float = 0.25,
                   nms_iou: float = 0.7) -> dict[str, Any]:
    """Both files through the ``yolo`` backend at its default thresholds: the share of the float
    model's boxes the INT8 model finds again (IoU ≥ 0.5), and the boxes only INT8 finds."""
    from lrihar.boxes import box_iou
    from lrihar.models.detectors import create_detector

    kw = {"box_threshold": confidence, "nms_iou": nms_iou}
    ref = create_detector("yolo", model=str(fp32), **kw)
    quant = create_detector("yolo", model=str(int8), **kw)
    found = total = extra = 0
    for frame in frames:
        a, b = ref(frame).xyxy, quant(frame).xyxy
        iou = box_iou(a, b)
        total += len(a)
        found += int((iou.max(axis=1, initial=0.0) >= MATCH_IOU).sum())
        extra += int((iou.max(axis=0, initial=0.0) < MATCH_IOU).sum())
    return {"frames": len(frames), "float_boxes": total, "found_again": found,
            "agreement": round(found / total, 4) if total else None, "int8_only_boxes": extra,
            "confidence": confidence, "nms_iou": nms_iou, "match_iou": MATCH_IOU}
