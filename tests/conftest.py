"""Shared fixtures: tiny real models, synthetic clips and projects, the real dev images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrihar import videowriter
from tiny_models import save_tiny_encoder, save_tiny_grounding_dino, save_tiny_owlv2

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

# tiny_yolo: a tiny trained and exported YOLO (session); ffmpeg_server: a live HTTP stream
pytest_plugins = ["detector_fixtures", "live_server"]

_REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (workspace, CI) or inside it (device machine copies).
HANDS_DEV = next((p for p in (_REPO.parent / "shared/data/hands-dev", _REPO / "shared/data/hands-dev")
                  if p.is_dir()), _REPO.parent / "shared/data/hands-dev")


@pytest.fixture(scope="session")
def tiny_grounding_dino(tmp_path_factory) -> Path:
    return save_tiny_grounding_dino(tmp_path_factory.mktemp("grounding-dino-tiny"))


@pytest.fixture(scope="session")
def tiny_owlv2(tmp_path_factory) -> Path:
    return save_tiny_owlv2(tmp_path_factory.mktemp("owlv2-tiny"))


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny BLIP-2, CLIP, SigLIP and DINOv2 checkpoints, by encoder name."""
    root = tmp_path_factory.mktemp("encoders")
    return {k: save_tiny_encoder(k, root / k) for k in ("blip2", "clip", "siglip", "dinov2")}


def synthetic_frames(n: int = 30, width: int = 160, height: int = 120, still: range | None = None,
                     seed: int = 0) -> list[np.ndarray]:
    """Frames of a square moving over a textured background; frames in ``still`` repeat."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    frames, previous = [], None
    for i in range(n):
        if still is not None and i in still and previous is not None:
            frames.append(previous.copy())
            continue
        frame = background.copy()
        x = 5 + (i * 7) % (width - 40)
        y = 10 + (i * 3) % (height - 40)
        frame[y:y + 30, x:x + 30] = (220, 180, 150)
        frames.append(frame)
        previous = frame
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Encode test frames (10 fps unless told) with the library's writer."""
    return videowriter.write_video(path, frames, fps=fps)


@pytest.fixture
def clip(tmp_path) -> Path:
    """A 30-frame 160×120 clip at 10 fps."""
    return write_video(tmp_path / "clip.mp4", synthetic_frames(30))


def make_project(root: Path, **sections) -> Path:
    """A project folder whose lrihar.yaml holds ``sections`` (YAML via JSON, a subset)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lrihar.yaml").write_text(json.dumps(sections))
    return root


def tiny_gd_project(root: Path, model_dir: Path, **detector) -> Path:
    """A project using the tiny Grounding DINO with thresholds low enough to box something."""
    settings = {"backend": "grounding-dino", "model": str(model_dir), "box_threshold": 0.2,
                "text_threshold": 0.1, "batch_size": 2} | detector
    return make_project(root, detector=settings)


@pytest.fixture
def hands_dev() -> Path:
    if not HANDS_DEV.is_dir():
        pytest.skip(f"real dev images not found at {HANDS_DEV} (only present in the lrihar workspace)")
    return HANDS_DEV


CLASSES = ("gloved_hand", "bare_hand")


@pytest.fixture
def gloves_project(tmp_path, hands_dev):
    """A project whose templates are 10 GT crops per class from even images, and whose
    detections come from annotating 40 odd images with the offline detector."""
    src = hands_dev / "gloves_roboflow"
    entries = load_gt(src)
    counts = dict.fromkeys(CLASSES, 0)
    for k, im in enumerate(entries[::2]):
        image = Image.open(src / im["file"]).convert("RGB")
        for box, cls in zip(im["hands"], im["hand_classes"], strict=True):
            if counts[cls] < 10:
                folder = tmp_path / "p" / "templates" / cls
                folder.mkdir(parents=True, exist_ok=True)
                image.crop([round(v) for v in box]).save(folder / f"t{k}_{counts[cls]}.jpg")
                counts[cls] += 1
    images = tmp_path / "frames"
    images.mkdir()
    for im in entries[1::2][:40]:
        shutil.copy(src / im["file"], images)
    root = make_project(tmp_path / "p", classes=[{"name": c, "templates": f"templates/{c}"} for c in CLASSES],
                        classify={"lambda": 0.6})
    from lrihar.annotate.pipeline import annotate
    from lrihar.project import Project

    project = Project.open(root)
    annotate(project, [str(images)])
    return project


def load_gt(path: Path) -> list[dict]:
    """Annotated images of a hands-dev set (``hands: null`` means not annotated)."""
    return [im for im in json.loads((path / "gt.json").read_text())["images"] if im["hands"] is not None]
