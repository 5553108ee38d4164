"""A tiny trained YOLO detector for tests: synthetic frames, a real project, one epoch, ONNX.

The frames hold red rectangles ("hands") on a textured background. A colour-threshold detector
(real, if simple) annotates them through the normal pipeline; the boxes are labelled ``hand``;
``train-detector`` then trains for one epoch at 64 px and ``export-runtime`` writes the ONNX
model. All of it runs once per session, with every socket connection refused and recorded, so
tests can prove that training and export never reached for the network.
"""

from __future__ import annotations

import socket
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


def labelled_project(root: Path, frames: Path, **config):
    """A project whose boxes come from the colour detector on ``frames``, all labelled ``hand``."""
    import json

    from lrihar.annotate.pipeline import annotate
    from lrihar.project import Project

    root.mkdir(parents=True, exist_ok=True)
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "hand"}], **config}))
    project = Project.open(root)
    annotate(project, [str(frames)], detector=ColourBoxDetector())
    label_all(project)
    return project


def label_all(project, label: str = "hand") -> None:
    """Give every stored box an automatic label (what `lrihar classify` would store)."""
    ids = [r.id for r in project.store.detections()]
    project.store.write_auto_labels(1, [(i, label, 0.9, None, None, "test", 0.5) for i in ids])


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Refuse and record every socket connection made inside."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled in tests")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(*a, **k))
        mp.setattr(socket.socket, "connect_ex", lambda self, *a, **k: refuse(*a, **k))
        mp.setattr(socket, "create_connection", refuse)
        yield attempts


FAST = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "plots": False, "patience": 5}


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory) -> dict:
    """A project with a yolo11n trained for one epoch and exported to ONNX at 64 px."""
    pytest.importorskip("ultralytics", reason="the [train] extra (ultralytics) is not installed")
    from lrihar.deploy.onnx_detector import export_detector
    from lrihar.train.detector import DetectorTrainConfig, train_detector

    base = tmp_path_factory.mktemp("tiny-yolo")
    boxes = draw_frames(base / "frames", 12)
    project = labelled_project(base / "project", base / "frames")
    with no_network() as attempts:
        trained = train_detector(project, DetectorTrainConfig(arch="yolo11n", **FAST), name="tiny",
                                 verbose=False)
        exported = export_detector(project, "tiny", imgsz=64, parity_frames=4)
    return {"project": project, "train": trained, "export": exported, "onnx": Path(exported.onnx),
            "network_attempts": attempts, "frames": base / "frames", "boxes": boxes}
