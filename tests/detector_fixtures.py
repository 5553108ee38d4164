"""A tiny trained YOLO detector for tests: synthetic frames, a real project, one epoch, ONNX.

The frames hold red rectangles ("hands") on a textured background. A colour-threshold detector
(real, if simple) annotates them through the normal pipeline (no classify run: the boxes have
no label, as a hand detector set needs none); ``train-detector`` then trains for one epoch at
64 px and ``export-runtime`` writes the ONNX
model. All of it runs once per session, with every socket connection refused and recorded, so
tests can prove that training and export never reached for the network.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrihar.models.detectors.base import Detector

RED = (220, 40, 30)


def draw_frames(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (96, 80)) -> dict[str, list]:
    """``n`` JPEG frames with 1-2 red rectangles each; their boxes by file name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    boxes = {}
    for i in range(n):
        image = rng.integers(30, 90, (h, w, 3), dtype=np.uint8)
        these = []
        for k in range(1 + i % 2):
            bw, bh = (int(v) for v in rng.integers(14, 26, 2))
            x = int(rng.integers(0, w // 2 - bw)) + k * w // 2  # one per half: never overlapping
            y = int(rng.integers(0, h - bh))
            image[y:y + bh, x:x + bw] = RED
            these.append([x, y, x + bw, y + bh])
        name = f"frame{i:02d}.png"  # lossless, so the colour detector finds the exact boxes
        Image.fromarray(image).save(folder / name)
        boxes[name] = these
    return boxes


class ColourBoxDetector(Detector):
    """Boxes around red blobs (connected components), each with the same score."""

    name = "colour-boxes"

    def __init__(self, score: float = 0.9) -> None:
        self.score = score

    def detect_batch(self, images):
        import cv2
        import supervision as sv

        out = []
        for image in images:
            mask = ((image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh, area in stats[1:n] if area >= 20],
                            np.float32).reshape(-1, 4)
            out.append(sv.Detections(xyxy=xyxy, confidence=np.full(len(xyxy), self.score, np.float32),
                                     class_id=np.zeros(len(xyxy), int),
                                     data={"class_name": np.array(["hand"] * len(xyxy))}))
        return out


class MisplacesTheRightHand(ColourBoxDetector):
    """The cheap detector's typical mistake: the hand in the right half of a frame gets a box
    beside it (IoU 0 with the hand) and a low score (0.2); the hand in the left half is found."""

    name = "misplaces-right"

    def detect_batch(self, images):
        out = []
        for image, dets in zip(images, super().detect_batch(images), strict=True):
            right = dets.xyxy[:, 0] >= image.shape[1] / 2
            width = dets.xyxy[:, 2] - dets.xyxy[:, 0]
            dets.xyxy[right, 0] -= width[right]
            dets.xyxy[right, 2] -= width[right]
            dets.confidence[right] = 0.2
            out.append(dets)
        return out


def annotated_project(root: Path, frames: Path, detector: Detector | None = None, **config):
    """A project whose boxes come from the colour detector (or ``detector``) on ``frames``; no
    box has a label (no classify run: a hand detector set needs none)."""
    import json

    from lrihar.annotate.pipeline import annotate
    from lrihar.project import Project

    root.mkdir(parents=True, exist_ok=True)
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "hand"}], **config}))
    project = Project.open(root)
    annotate(project, [str(frames)], detector=detector or ColourBoxDetector())
    return project


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Refuse and record every socket connection and every pip / uv run made inside."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(f"connect {args[:2]!r}")
        raise OSError("network disabled in tests")

    def recording(run):
        def wrapper(cmd, *args, **kwargs):
            if any(word in str(cmd) for word in ("pip", "uv ")):
                attempts.append(f"install {cmd!r}")
                raise OSError("installing disabled in tests")
            return run(cmd, *args, **kwargs)
        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(*a, **k))
        mp.setattr(socket.socket, "connect_ex", lambda self, *a, **k: refuse(*a, **k))
        mp.setattr(socket, "create_connection", refuse)
        for name in ("run", "check_output", "check_call"):
            mp.setattr(subprocess, name, recording(getattr(subprocess, name)))
        yield attempts


FAST = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "plots": False, "patience": 5}


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory) -> dict:
    """A project with a yolo11n trained for one epoch and exported to ONNX at 64 px."""
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: train sets its env first
        pytest.skip("the [train] extra (ultralytics) is not installed")
    from lrihar.deploy.onnx_detector import export_detector
    from lrihar.train.detector import DetectorTrainConfig, train_detector

    base = tmp_path_factory.mktemp("tiny-yolo")
    boxes = draw_frames(base / "frames", 12)
    project = annotated_project(base / "project", base / "frames")
    with no_network() as attempts:
        trained = train_detector(project, DetectorTrainConfig(arch="yolo11n", **FAST), name="tiny",
                                 verbose=False)
        exported = export_detector(project, "tiny", imgsz=64, parity_frames=4)
    return {"project": project, "train": trained, "export": exported, "onnx": Path(exported.onnx),
            "network_attempts": attempts, "frames": base / "frames", "boxes": boxes}


def record_export(onnx: Path) -> Path:
    """Write the export record ``export-runtime --detector`` writes beside ``onnx`` (its name and
    SHA-256), without which a project's detector is not picked up."""
    from lrihar.paths import sha256_of

    onnx.with_suffix(".json").write_text(json.dumps({"onnx": onnx.name, "sha256": sha256_of(onnx)}))
    return onnx


def synthetic_yolo_onnx(path: Path, imgsz: int = 64, clusters: int = 12, per_cluster: int = 8,
                        seed: int = 0, dynamic: bool = False) -> Path:
    """An ONNX model with YOLO's interface whose raw output is a fixed set of overlapping boxes,
    scored by ``sigmoid(logit + w · mean(image))``: varied, frame-dependent boxes without training.

    Input ``images`` (1, 3, imgsz, imgsz); output ``output0`` (1, 5, N) of cx, cy, w, h in
    letterbox pixels and one class score, as ultralytics exports a one-class detector.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1 * imgsz, 0.9 * imgsz, (clusters, 2))
    sizes = rng.uniform(0.1 * imgsz, 0.5 * imgsz, (clusters, 2))
    boxes = []
    for c, s in zip(centres, sizes, strict=True):
        for _ in range(per_cluster):  # jittered copies of one box: overlaps of every degree
            boxes.append([*(c + rng.normal(0, 0.15, 2) * s), *(s * rng.uniform(0.7, 1.3, 2))])
    boxes = np.array(boxes, np.float32).T[None]  # (1, 4, N)
    n = boxes.shape[2]
    logits = rng.normal(0, 1.5, (1, 1, n)).astype(np.float32)
    weights = rng.normal(0, 4.0, (1, 1, n)).astype(np.float32)
    batch = "batch" if dynamic else 1
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images", "axes"], ["mean"], keepdims=1),  # (B, 1, 1, 1)
         helper.make_node("Reshape", ["mean", "shape_b11"], ["mean3"]),
         helper.make_node("Mul", ["mean3", "weights"], ["shift"]),
         helper.make_node("Add", ["shift", "logits"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["scores"]),
         helper.make_node("Mul", ["mean3", "zeros"], ["zero"]),
         helper.make_node("Add", ["zero", "boxes"], ["box_b"]),  # boxes broadcast to the batch
         helper.make_node("Concat", ["box_b", "scores"], ["output0"], axis=1)],
        "synthetic-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 5, n])],
        [numpy_helper.from_array(boxes, "boxes"), numpy_helper.from_array(logits, "logits"),
         numpy_helper.from_array(weights, "weights"),
         numpy_helper.from_array(np.zeros((1, 1, n), np.float32), "zeros"),
         numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape_b11"),
         numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in {"names": "{0: 'hand'}", "imgsz": f"[{imgsz}, {imgsz}]"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
