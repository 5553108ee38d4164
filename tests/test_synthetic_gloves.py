"""Synthetic work gloves: the image function, and the extra training images train-detector adds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from detector_fixtures import FAST, ColourBoxDetector, annotated_project, draw_frames
from lrihar.boxes import box_iou
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.train.synthetic_gloves import (
    GLOVES,
    add_synthetic_gloves,
    copies_for,
    glove_image,
    glove_masks,
    landmarks_fit,
)

# A hand in a unit square, MediaPipe's 21 landmarks: wrist at the bottom, fingers up.
_HAND = np.array([
    (0.50, 0.95), (0.34, 0.86), (0.22, 0.74), (0.12, 0.62), (0.04, 0.52),  # wrist, thumb
    (0.34, 0.55), (0.32, 0.35), (0.31, 0.20), (0.30, 0.06),  # index
    (0.49, 0.52), (0.49, 0.30), (0.49, 0.15), (0.49, 0.02),  # middle
    (0.63, 0.55), (0.65, 0.35), (0.66, 0.21), (0.67, 0.09),  # ring
    (0.76, 0.60), (0.80, 0.45), (0.83, 0.34), (0.85, 0.24),  # pinky
])


def _landmarks(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    xy = _HAND * (x2 - x1, y2 - y1) + (x1, y1)
    return np.hstack([xy, np.zeros((21, 1))]).astype(np.float32)


def _photo(seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """A 200 × 220 textured photo with a skin-coloured hand at x 40-110, y 30-170, its landmarks,
    and a box that reaches well past the hand on the right (to x 190)."""
    import cv2

    rng = np.random.default_rng(seed)
    image = rng.integers(40, 110, (200, 220, 3), dtype=np.uint8)
    lms = _landmarks(40, 30, 110, 170)
    pts = np.round(lms[:, :2]).astype(np.int32)
    cv2.fillPoly(image, [pts[[0, 1, 2, 5, 9, 13, 17]]], (224, 172, 140))
    for a, b in ((1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12), (13, 14),
                 (14, 15), (15, 16), (17, 18), (18, 19), (19, 20)):
        cv2.line(image, tuple(pts[a]), tuple(pts[b]), (224, 172, 140), 9)
    return image, lms, (36.0, 26.0, 190.0, 176.0)


def test_gloves_change_only_the_hands_pixels_and_keep_the_boxes():
    image, lms, box = _photo()
    before = image.copy()
    out = glove_image(image, [box], [lms], seed=1)
    assert np.array_equal(image, before)  # the input is left alone
    assert out.shape == image.shape and out.dtype == np.uint8
    alpha = glove_masks(image.shape, [box], [lms])
    assert np.array_equal(out[alpha == 0], image[alpha == 0])  # outside the mask: byte-identical
    x1, y1, x2, y2 = (int(v) for v in box)
    outside = np.ones(image.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert not alpha[outside].any() and np.array_equal(out[outside], image[outside])  # box untouched
    changed = np.abs(out.astype(int) - image.astype(int)).max(axis=2) > 12
    assert changed[alpha > 0.5].mean() > 0.8  # inside the glove really changed
    # every changed pixel lies inside the box: the box still bounds the hand (IoU 1 with itself)
    ys, xs = np.nonzero(out.astype(int) != image.astype(int))[:2]
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2


def test_same_seed_same_pixels_other_seed_other_pixels():
    image, lms, box = _photo()
    a = glove_image(image, [box], [lms], seed=7)
    assert np.array_equal(a, glove_image(image, [box], [lms], seed=7))
    assert not np.array_equal(a, glove_image(image, [box], [lms], seed=8))
    # the glove may be forced; its texture and jitter still follow the seed
    b = glove_image(image, [box], [lms], seed=7, glove="black-nitrile")
    assert not np.array_equal(a, b) and np.array_equal(b, glove_image(image, [box], [lms], seed=7,
                                                                       glove="black-nitrile"))
    with pytest.raises(ValueError, match="unknown glove"):
        glove_image(image, [box], [lms], glove="velvet")


def test_with_landmarks_the_mask_follows_the_hand_not_the_box():
    image, lms, box = _photo()
    far = (100, 165)  # (y, x): inside the box and its ellipse, ~50 px right of the hand's hull
    hull_x = lms[:, 0].max()
    assert far[1] - hull_x > 40
    with_hand = glove_image(image, [box], [lms], seed=2, glove="orange-coated")
    assert np.array_equal(with_hand[far], image[far])
    assert glove_masks(image.shape, [box], [lms])[far] == 0
    centre = (100, 75)  # the middle of the palm
    assert np.abs(with_hand[centre].astype(int) - image[centre].astype(int)).max() > 12
    # without landmarks the glove is an ellipse inside the box, which reaches that pixel
    ellipse = glove_image(image, [box], [None], seed=2, glove="orange-coated")
    assert np.abs(ellipse[far].astype(int) - image[far].astype(int)).max() > 12
    # landmarks that no longer fit their box (a person moved it) count as none
    moved = (150.0, 20.0, 215.0, 190.0)
    assert not landmarks_fit(moved, lms) and landmarks_fit(box, lms)
    assert np.array_equal(glove_masks(image.shape, [moved], [lms]), glove_masks(image.shape, [moved], [None]))


def test_every_glove_of_the_palette_paints_and_keeps_the_hands_shading():
    image, lms, box = _photo()
    inside = glove_masks(image.shape, [box], [lms]) > 0.99
    for glove in GLOVES:
        out = glove_image(image, [box], [lms], seed=3, glove=glove.name)
        assert np.abs(out[inside].astype(int) - image[inside].astype(int)).max() > 12, glove.name
    # a fold (a darker band across the palm) is still darker in the glove
    folded = image.copy()
    folded[95:101, 50:100] = (folded[95:101, 50:100] * 0.6).astype(np.uint8)
    out = glove_image(folded, [box], [lms], seed=3, glove="yellow-leather").astype(float).mean(axis=2)
    assert out[95:101, 60:90].mean() < 0.9 * out[80:90, 60:90].mean()


def test_copies_for_a_fraction_is_seeded_by_name():
    names = [f"frame{i}" for i in range(400)]
    assert {copies_for(n, 2) for n in names} == {2} and {copies_for(n, 0) for n in names} == {0}
    half = [copies_for(n, 1.5, seed=4) for n in names]
    assert set(half) == {1, 2} and 0.4 < half.count(2) / len(half) < 0.6
    assert half == [copies_for(n, 1.5, seed=4) for n in names]


def test_add_to_a_yolo_split_without_landmarks_uses_the_label_boxes(tmp_path):
    boxes = draw_frames(tmp_path / "images" / "train", 3)
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    for name, these in boxes.items():
        lines = [f"0 {(a + c) / 192:.6f} {(b + d) / 160:.6f} {(c - a) / 96:.6f} {(d - b) / 80:.6f}"
                 for a, b, c, d in these]
        (labels / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    made = add_synthetic_gloves(tmp_path / "images" / "train", labels, tmp_path / "images" / "g",
                                tmp_path / "labels" / "g", copies=2, seed=1)
    assert made.frames == 3 and made.images == 6
    for name in boxes:
        stem = Path(name).stem
        for k in (1, 2):
            assert (tmp_path / "images" / "g" / f"{stem}-glove{k}.jpg").is_file()
            assert (tmp_path / "labels" / "g" / f"{stem}-glove{k}.txt").read_bytes() == \
                (labels / f"{stem}.txt").read_bytes()


# -- the YOLO set train-detector builds --------------------------------------------------------


class LandmarkBoxDetector(ColourBoxDetector):
    """The colour detector's boxes, with hand landmarks laid into each box (as MediaPipe stores
    them), except on the frames named in ``bare_boxes`` (no landmarks, like another detector)."""

    name = "landmark-boxes"

    def __init__(self, without: set[int] = frozenset()) -> None:
        super().__init__()
        self.without, self.calls = without, 0

    def detect_batch(self, images):
        out = super().detect_batch(images)
        for dets in out:
            if self.calls not in self.without:
                dets.data["landmarks"] = np.array([_landmarks(*b) for b in dets.xyxy], np.float32
                                                  ).reshape(-1, 21, 3)
            self.calls += 1
        return out


def _lines(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def _yolo_xyxy(rows: list[list[float]]) -> np.ndarray:
    return np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for _, cx, cy, w, h in rows])


def test_train_set_gets_one_glove_copy_per_bare_hand_frame_and_val_none(tmp_path):
    from lrihar.review.edits import add_frame_box
    from lrihar.train.detector import DetectorTrainConfig, _export_project, check_yolo_data

    draw_frames(tmp_path / "frames", 12)
    project = annotated_project(tmp_path / "p", tmp_path / "frames", LandmarkBoxDetector(without={3, 7}))
    # a person draws a box on a frame the detector found empty: no landmarks, not a source
    empty = tmp_path / "frames" / "frame99.png"
    from PIL import Image

    Image.fromarray(np.full((80, 96, 3), 60, np.uint8)).save(empty)
    from lrihar.annotate.pipeline import annotate

    annotate(project, [str(tmp_path / "frames")], detector=LandmarkBoxDetector())
    uri, index = next((u, r.index) for u, _, r in project.store.frames() if r.name and "frame99" in r.name)
    source_id = project.store.db.execute("SELECT id FROM sources WHERE uri=?", (uri,)).fetchone()[0]
    add_frame_box(project.store, (source_id, index), (10, 10, 40, 40), "hand", reviewer="ann")

    data = _export_project(project, tmp_path / "set", DetectorTrainConfig(synthetic_gloves=1))
    root = data.parent
    doc = yaml.safe_load(data.read_text())
    assert doc["train"] == ["images/train", "images/synthetic-gloves"] and doc["val"] == "images/val"
    train = sorted(p.stem for p in (root / "images" / "train").glob("*.jpg"))
    gloves = sorted(p.stem for p in (root / "images" / "synthetic-gloves").glob("*.jpg"))
    rows = {}
    from lrihar.crops import frame_stem

    for r in project.store.detections():
        rows.setdefault(frame_stem(r), []).append(r)
    eligible = [s for s in train if any(r.landmarks for r in rows[s])]
    assert 0 < len(eligible) < len(train)  # the frames without landmarks and the drawn box are left out
    assert gloves == [f"{s}-glove1" for s in eligible]  # exactly one copy each
    for stem in eligible:
        source = root / "labels" / "train" / f"{stem}.txt"
        copy = root / "labels" / "synthetic-gloves" / f"{stem}-glove1.txt"
        assert copy.read_bytes() == source.read_bytes()  # identical label lines
        a, b = _yolo_xyxy(_lines(source)), _yolo_xyxy(_lines(copy))
        assert np.allclose(np.diag(box_iou(a, b)), 1.0)
    assert not any("glove" in p.name for p in (root / "images" / "val").iterdir())  # never in val
    assert not any("glove" in p.name for p in (root / "labels" / "val").iterdir())
    manifest = json.loads((root / "manifest.json").read_text())["synthetic_gloves"]
    assert manifest["images"] == manifest["frames"] == len(eligible) == manifest["eligible_frames"]
    info = check_yolo_data(data)
    assert info["_synthetic"] == len(eligible) and info["_images"]["train"] == len(train) + len(eligible)

    # 0: the set is what it always was
    plain = _export_project(project, tmp_path / "plain", DetectorTrainConfig(synthetic_gloves=0))
    assert yaml.safe_load(plain.read_text())["train"] == "images/train"
    assert not (tmp_path / "plain" / "images" / "synthetic-gloves").exists()


def test_one_source_validates_on_the_real_training_images_only(tmp_path):
    from lrihar.train.detector import DetectorTrainConfig, _export_project, _start

    draw_frames(tmp_path / "frames", 1)
    project = annotated_project(tmp_path / "p", tmp_path / "frames", LandmarkBoxDetector())
    data = _export_project(project, tmp_path / "set", DetectorTrainConfig(synthetic_gloves=2))
    doc = yaml.safe_load(data.read_text())
    assert doc["val"] == "images/train" and doc["train"] == ["images/train", "images/synthetic-gloves"]
    summary = _start(DetectorTrainConfig(), tmp_path / "run", data)
    assert summary.val_is_train and summary.synthetic_gloves == 2
    assert summary.images == {"train": 3, "val": 1}


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="needs the [train] extra")
def test_train_detector_trains_on_the_gloves_and_records_them(tmp_path):
    from lrihar.artifacts import read_record

    draw_frames(tmp_path / "frames", 6)
    project = annotated_project(tmp_path / "p", tmp_path / "frames", LandmarkBoxDetector())
    code = main(["train-detector", "-p", str(project.root), "--arch", "yolo11n", "--epochs", "1", "--imgsz",
                 str(FAST["imgsz"]), "--batch", "4", "--workers", "0", "--no-plots", "--name", "g",
                 "--synthetic-gloves", "1"])
    assert code == 0
    record = read_record(project.root / "models" / "detector" / "g")
    assert record["summary"]["status"] == "done" and record["config"]["synthetic_gloves"] == 1
    n = record["summary"]["synthetic_gloves"]
    assert n == len(list((project.root / "models/detector/g/data/images/synthetic-gloves").glob("*.jpg"))) > 0
    [run] = [r for r in project.store.runs() if r["command"] == "train-detector"]
    assert json.loads(run["stats"])["synthetic_gloves"] == n


# -- bad values: exit 2, the field named -------------------------------------------------------


def test_bad_synthetic_gloves_values_are_refused(tmp_path, capsys):
    from lrihar.train.detector import DetectorTrainConfig

    for bad in (-1, float("nan"), 21, "two", True):
        with pytest.raises(BadInputError, match="--synthetic-gloves"):
            DetectorTrainConfig(synthetic_gloves=bad)
    draw_frames(tmp_path / "frames", 2)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    root = str(project.root)
    assert main(["train-detector", "-p", root, "--synthetic-gloves", "-1"]) == 2
    assert "--synthetic-gloves" in capsys.readouterr().err
    project_file = project.root / "lrihar.yaml"
    original = yaml.safe_load(project_file.read_text())
    project_file.write_text(yaml.safe_dump({**original, "train_detector": {"synthetic_gloves": -0.5}}))
    assert main(["train-detector", "-p", root]) == 2
    assert "train_detector.synthetic_gloves" in capsys.readouterr().err
    project_file.write_text(yaml.safe_dump({**original, "train_detector": {"synthetic_gloves": 1}}))
    assert main(["train-detector", "-p", root, "--data", str(tmp_path / "set" / "data.yaml")]) == 2
    assert "--synthetic-gloves: made from the project's boxes" in capsys.readouterr().err
    assert not (project.root / "models" / "detector").exists() or not any(
        p for p in (project.root / "models" / "detector").iterdir() if not p.name.startswith("."))
