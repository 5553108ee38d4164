"""``lrihar export-runtime --detector``: a trained detector as ONNX, checked against PyTorch.

ultralytics exports ``weights/best.pt`` (opset 18, simplified by onnxslim, which must already be
installed: the ``[train]`` extra pins it, and ultralytics is told never to install anything).
The file lands in ``<run>/export/detector-<imgsz>[-dynamic].onnx``, its graph cut before the
box decoding, which the ``yolo`` backend does in numpy for the few anchors above its threshold
(:mod:`lrihar.deploy.onnx_head`). A parity check then runs the
PyTorch model (ultralytics' predict) and the ``yolo`` backend (ONNX Runtime, our letterbox and
NMS) on sample frames of the run's data: every confident PyTorch box must have an ONNX box with
IoU ≥ 0.9 and a score within tolerance. The SHA-256 of the file, the settings and the parity
figures are written next to it (``.json``) and into the store's run record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.artifacts import DETECTOR, find_run, read_record
from lrihar.boxes import box_iou
from lrihar.deploy.onnx_head import cut_before_decoding
from lrihar.errors import BadInputError, LriharError
from lrihar.paths import sha256_of
from lrihar.project import Project, recorded_run
from lrihar.train.detector import check_yolo_data, images_in, offline_state, split_folders
from lrihar.versions import package_versions

OPSET = 18
# ultralytics' own requirement strings for an ONNX export with simplification.
EXPORT_REQUIREMENTS = ("onnx>=1.12.0,<2.0.0", "onnxslim>=0.1.82", "onnxruntime")


@dataclass
class Parity:
    """How the ONNX model's boxes compare with the PyTorch model's on sample frames."""

    frames: int = 0
    torch_boxes: int = 0
    matched: int = 0
    min_iou: float = 1.0
    max_score_diff: float = 0.0
    confidence: float = 0.0
    ok: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class ExportSummary:
    """What ``export_detector`` wrote."""

    run: str
    onnx: str
    sha256: str
    imgsz: int
    dynamic: bool
    opset: int
    bytes: int
    parity: Parity
    record: str
    int8: dict[str, Any] | None = None


def _check_export_requirements(checks) -> None:
    # install=False: a missing package is reported, never pip-installed (shared/OFFLINE.md: the
    # auto-install once pulled protobuf 7 and broke mediapipe).
    missing = [r for r in EXPORT_REQUIREMENTS if not checks.check_requirements(r, install=False)]
    if missing:
        raise LriharError(f"ONNX export needs {', '.join(missing)}: pip install 'lrihar[train]' "
                          "(it pins versions that work with mediapipe's protobuf)")


def sample_images(run_dir: Path, n: int, every_split: bool = False) -> list[Path]:
    """Up to ``n`` images of the run's validation split (else its training split; with
    ``every_split`` of both), spread evenly."""
    data = Path(read_record(run_dir).get("summary", {}).get("data") or run_dir / "data" / "data.yaml")
    doc = check_yolo_data(data)
    splits = [folder for k in ("val", "train") for folder in split_folders(doc, data, k)]
    if every_split:
        images = [im for folder in dict.fromkeys(splits) for im in images_in(folder)]
    else:
        images = images_in(splits[0]) or images_in(splits[-1])
    if len(images) > n:
        images = [images[round(i)] for i in np.linspace(0, len(images) - 1, n)]
    return images


def parity_check(model_pt: Path, onnx_path: Path, images: list[np.ndarray], imgsz: int,
                 ul: Any, confidence: float = 0.001, top_k: int = 20, min_iou: float = 0.9,
                 score_tol: float = 0.005) -> Parity:
    """Compare the PyTorch and ONNX detectors on RGB ``images``.

    Both run without NMS (IoU 1.0), so what is compared is the network, the letterbox and the
    decoding, box by box (NMS is a library call on either side, and ultralytics applies it
    before clipping boxes to the frame, the ``yolo`` backend after). The ``top_k`` best PyTorch
    boxes per frame above ``confidence`` must each have an ONNX box with IoU ≥ ``min_iou`` and
    a score within ``score_tol``; a PyTorch box scoring within ``score_tol`` of ``confidence``
    may be missing (it can fall either side of the threshold).
    """

    from lrihar.models.detectors import create_detector

    torch_model = ul.YOLO(str(model_pt))
    onnx_model = create_detector("yolo", model=str(onnx_path), box_threshold=confidence, nms_iou=1.0)
    p = Parity(frames=len(images), confidence=confidence)
    for k, image in enumerate(images):
        # ultralytics takes numpy images as BGR (cv2's order)
        res = torch_model.predict(image[..., ::-1], imgsz=imgsz, conf=confidence, iou=1.0,
                                  device="cpu", verbose=False)[0]
        t_xyxy = res.boxes.xyxy.cpu().numpy().astype(float)
        t_score = res.boxes.conf.cpu().numpy().astype(float)
        order = np.argsort(-t_score)[:top_k]
        t_xyxy, t_score = t_xyxy[order], t_score[order]
        o = onnx_model(image)
        p.torch_boxes += len(t_score)
        if not len(t_score):
            continue
        if not len(o):
            borderline = t_score < confidence + score_tol
            p.matched += int(borderline.sum())
            if not borderline.all():
                p.problems.append(f"frame {k}: ONNX found no box, PyTorch {int((~borderline).sum())}")
            continue
        iou = box_iou(t_xyxy, o.xyxy)
        for i in range(len(t_score)):
            j = int(iou[i].argmax())
            diff = abs(float(o.confidence[j]) - t_score[i])
            if iou[i, j] >= min_iou and diff <= score_tol:
                p.matched += 1
                p.min_iou = min(p.min_iou, float(iou[i, j]))
                p.max_score_diff = max(p.max_score_diff, diff)
            elif t_score[i] < confidence + score_tol:
                p.matched += 1  # borderline score: either side of the threshold is right
            else:
                p.problems.append(f"frame {k}: PyTorch box {np.round(t_xyxy[i], 1).tolist()} "
                                  f"(score {t_score[i]:.3f}) has no ONNX match (best IoU "
                                  f"{iou[i, j]:.3f}, score diff {diff:.3f})")
    p.min_iou, p.max_score_diff = round(float(p.min_iou), 5), round(float(p.max_score_diff), 6)
    p.ok = p.matched == p.torch_boxes
    return p


def export_detector(project: Project, run: str | None = None, imgsz: int = 320, dynamic: bool = False,
                    parity_frames: int = 8, parity_confidence: float = 0.001, int8: bool = False,
                    calibration_frames: int = 64, min_int8_agreement: float = 0.9,
                    int8_confidence: float = 0.25) -> ExportSummary:
    """Export run ``run`` (default the latest trained) to ONNX, check parity, record the hash;
    with ``int8`` also an INT8 copy calibrated on ``calibration_frames`` frames of the run's data
    (:mod:`lrihar.deploy.int8_detector`), kept when it finds at least ``min_int8_agreement`` of
    the float model's boxes scoring ``int8_confidence`` or more on them.

    Raises:
        BadInputError: no trained run, bad imgsz.
        LriharError: export requirements missing, or the parity check failed (the file is then
            removed so that nothing deploys it; the JSON report stays).
    """
    from lrihar.train.offline import require_ultralytics

    require_ultralytics()
    _check_imgsz(imgsz)
    run_dir = find_run(DETECTOR, project, run)
    best = run_dir / "weights" / "best.pt"
    config = {"run": run_dir.name, "weights": str(best), "imgsz": imgsz, "dynamic": dynamic,
              "opset": OPSET, "parity_frames": parity_frames, "int8": int8}
    result: dict[str, Any] = {}
    with recorded_run(project.store, "export-runtime", config, lambda s: result | {"seconds": s}):
        calibration = sample_images(run_dir, calibration_frames, every_split=True) if int8 else None
        return export_onnx(best, run_dir / "export", imgsz, sample_images(run_dir, parity_frames),
                           offline_state(project), dynamic, parity_confidence, result, int8=calibration,
                           min_int8_agreement=min_int8_agreement, int8_confidence=int8_confidence)


def export_onnx(best: Path, out_dir: Path, imgsz: int = 320, images: list[Path] | None = None,
                state_dir: Path | None = None, dynamic: bool = False, parity_confidence: float = 0.001,
                record: dict[str, Any] | None = None, int8: list[Path] | None = None,
                min_int8_agreement: float = 0.9, int8_confidence: float = 0.25) -> ExportSummary:
    """Export the weights ``best`` to ``out_dir/detector-<imgsz>[-dynamic].onnx``, check parity on
    ``images``, write the report beside it; no project needed (see :func:`export_detector`).

    ``state_dir`` holds ultralytics' offline config (default ``out_dir/.offline``); ``record``,
    if given, receives the report's main fields even when the parity check fails. ``int8``:
    calibration images for an INT8 copy (``...-int8.onnx``), removed again when it finds fewer
    than ``min_int8_agreement`` of the float model's boxes on them.
    """
    from lrihar.sources import read_image
    from lrihar.train.offline import require_ultralytics, ultralytics_offline

    require_ultralytics()
    _check_imgsz(imgsz)
    best, out_dir = Path(best), Path(out_dir)
    if not best.is_file():
        raise BadInputError(f"{best}: no such weights file")
    from lrihar.train.backbones import check_checkpoint

    check_checkpoint(best)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"detector-{imgsz}{'-dynamic' if dynamic else ''}.onnx"
    record_path = target.with_suffix(".json")
    # Written and checked under export/.partial-*/, moved in place only whole: a full disk or a
    # crash never leaves a truncated file under a name a detector is loaded by.
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    partial = staging / target.name
    frames = [im for im in (read_image(Path(p)) for p in images or []) if im is not None]
    try:
        with ultralytics_offline(state_dir or out_dir / ".offline") as ul:
            from ultralytics.utils import checks

            _check_export_requirements(checks)
            model = ul.YOLO(str(best))
            strides = model.model.stride.tolist()
            exported = model.export(format="onnx", imgsz=imgsz, opset=OPSET, dynamic=dynamic, simplify=True,
                                    batch=1, device="cpu", nms=False)
            shutil.move(str(exported), partial)
            head = "cut before decoding" if cut_before_decoding(partial, strides) else "decoded boxes"
            parity = parity_check(best, partial, frames, imgsz, ul, confidence=parity_confidence)
        doc = {"onnx": target.name, "sha256": sha256_of(partial), "bytes": partial.stat().st_size,
               "imgsz": imgsz, "dynamic": dynamic, "opset": OPSET, "head": head,
               "run": best.parent.parent.name, "weights": str(best), "weights_sha256": sha256_of(best),
               "parity": asdict(parity), "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "versions": package_versions(extra=("ultralytics", "onnx", "onnxslim", "onnxruntime"))}
        if parity.ok and int8 is not None:
            doc["int8"] = _int8_copy(partial, [read_image(Path(p)) for p in int8], imgsz, min_int8_agreement,
                                     int8_confidence)
        if parity.ok:
            int8_copy = out_dir / f"{target.stem}-int8.onnx"
            int8_copy.unlink(missing_ok=True)  # an earlier export's: it belongs to the earlier model
            for done in sorted(staging.glob(f"{partial.stem}*.onnx")):
                os.replace(done, out_dir / done.name)
        tmp = record_path.with_name(record_path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, record_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if record is not None:
        record.update({k: doc[k] for k in ("onnx", "sha256", "bytes", "parity")} | {"path": str(target)}
                      | ({"int8": doc["int8"]} if "int8" in doc else {}))
    if not parity.ok:
        target.unlink(missing_ok=True)  # an earlier export of this name no longer matches its record
        raise LriharError(f"{target.name}: the ONNX model disagrees with the PyTorch model on "
                          f"{parity.torch_boxes - parity.matched} of {parity.torch_boxes} boxes "
                          f"({'; '.join(parity.problems[:3])}); the file was removed, the report is "
                          f"in {record_path}")
    return ExportSummary(run=doc["run"], onnx=str(target), sha256=doc["sha256"], imgsz=imgsz,
                         dynamic=dynamic, opset=OPSET, bytes=doc["bytes"], parity=parity,
                         record=str(record_path), int8=doc.get("int8"))


def _int8_copy(fp32: Path, frames: list[np.ndarray | None], imgsz: int, floor: float,
               confidence: float) -> dict[str, Any]:
    """Quantise ``fp32`` beside it, measure its agreement, keep it only at or above ``floor``."""
    from lrihar.deploy.int8_detector import int8_agreement, quantize_detector

    frames = [f for f in frames if f is not None]
    if not frames:
        raise BadInputError("--int8: the run's data holds no readable image to calibrate on")
    target = fp32.with_name(f"{fp32.stem}-int8.onnx")
    method = quantize_detector(fp32, target, frames, imgsz)
    report = {"onnx": target.name, "sha256": sha256_of(target), "bytes": target.stat().st_size,
              "calibration_frames": len(frames), "calibration": method, "min_agreement": floor,
              **int8_agreement(fp32, target, frames, confidence)}
    report["kept"] = report["agreement"] is None or report["agreement"] >= floor
    if not report["kept"]:
        target.unlink()
    return report


def _check_imgsz(imgsz: int) -> None:
    if imgsz < 32 or imgsz % 32:
        raise BadInputError(f"--imgsz: {imgsz} is not a positive multiple of 32 (the model's stride)")
