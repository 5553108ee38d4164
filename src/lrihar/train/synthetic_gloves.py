"""Synthetic work gloves: bare hands the offline detector found, recoloured and retextured.

MediaPipe finds bare hands well and gloved ones poorly, so a detector trained on its boxes sees
few gloves. :func:`glove_image` turns each hand of a photo into a glove-like one: its outline
(palm polygon and fingers as thick strokes from the 21 landmarks, inside their convex hull
dilated by half a finger; without landmarks an ellipse inside the box) is painted in a work
glove's colour and texture (:data:`GLOVES`: knit, leather, coated) times the hand's own
luminance, so its shape, folds and shading stay, with a soft edge. Pixels outside that outline
are left byte for byte, the boxes are the same boxes, and the same seed gives the same pixels.
:func:`add_synthetic_gloves` writes such copies of a YOLO split's images with their label files.

numpy, OpenCV and Pillow only (no torch), so a data-only machine can build the images.

Example:
    >>> out = glove_image(image, [(40, 30, 120, 140)], [landmarks], seed=3)  # doctest: +SKIP
    >>> add_synthetic_gloves(Path("set/images/train"), Path("set/labels/train"),
    ...                      Path("set/images/gloves"), Path("set/labels/gloves"), copies=1)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import shutil
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.sources import IMAGE_SUFFIXES

TEXTURES = ("knit", "leather", "coated")


@dataclass(frozen=True)
class Glove:
    """One glove of the palette: its base colour (RGB 0-255) and surface."""

    name: str
    rgb: tuple[int, int, int]
    texture: str


GLOVES: tuple[Glove, ...] = (
    Glove("white-knit", (232, 232, 224), "knit"),
    Glove("grey-knit", (142, 143, 146), "knit"),
    Glove("charcoal-knit", (64, 64, 68), "knit"),
    Glove("yellow-leather", (214, 174, 74), "leather"),
    Glove("tan-leather", (188, 148, 100), "leather"),
    Glove("brown-leather", (114, 76, 48), "leather"),
    Glove("black-nitrile", (30, 30, 34), "coated"),
    Glove("blue-nitrile", (40, 80, 170), "coated"),
    Glove("light-blue-nitrile", (100, 152, 214), "coated"),
    Glove("green-coated", (48, 124, 66), "coated"),
    Glove("orange-coated", (230, 106, 30), "coated"),
    Glove("red-coated", (174, 32, 34), "coated"),
)
"""Work-glove colours and surfaces a synthetic glove is drawn from (uniformly)."""

SYNTHETIC_SUFFIX = "-glove"
"""A synthetic copy of ``<stem>.jpg`` is ``<stem>-glove<k>.jpg`` (k = 1, 2, ...)."""

# MediaPipe's 21 hand landmarks: 0 wrist, 1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky.
_PALM = (0, 1, 2, 5, 9, 13, 17)
_BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12),
          (13, 14), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20), (0, 5), (0, 17), (5, 9), (9, 13),
          (13, 17))


@dataclass(frozen=True)
class Hand:
    """One hand of an image: its box (pixels) and, where known, its 21 landmarks (pixels, x y [z])."""

    xyxy: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None


def landmarks_fit(xyxy: Sequence[float], landmarks: object) -> bool:
    """Whether ``landmarks`` (21 × 2 or 3, pixels) describe the hand in box ``xyxy``: at least 80 %
    of them inside the box grown by 10 % per side, spanning at least a quarter of its area. A box
    a person moved keeps its old landmarks; those no longer fit and the box gets an ellipse."""
    if landmarks is None:
        return False
    points = np.asarray(landmarks, dtype=float)
    if points.ndim != 2 or points.shape[0] != 21 or points.shape[1] < 2 or not np.isfinite(points).all():
        return False
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return False
    xs, ys = points[:, 0], points[:, 1]
    inside = (xs >= x1 - 0.1 * w) & (xs <= x2 + 0.1 * w) & (ys >= y1 - 0.1 * h) & (ys <= y2 + 0.1 * h)
    span = (min(xs.max(), x2) - max(xs.min(), x1)) * (min(ys.max(), y2) - max(ys.min(), y1))
    return bool(inside.mean() >= 0.8 and span >= 0.25 * w * h)


def _region(xyxy: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box's pixels as integer (x0, y0, x1, y1), clipped to the image; None if empty."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    x0, y0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    x3, y3 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    return (x0, y0, x3, y3) if x3 > x0 and y3 > y0 else None


def _finger_width(points: np.ndarray) -> float:
    """A gloved finger's width: the knuckle spacing (index-middle-ring-pinky), a little thicker."""
    knuckles = points[[5, 9, 13, 17]]
    spacing = float(np.linalg.norm(np.diff(knuckles, axis=0), axis=1).mean())
    palm = float(np.linalg.norm(points[9] - points[0]))
    return max(2.0, 1.15 * max(spacing, 0.2 * palm))


def _hand_size(hand: Hand, fits: bool) -> float:
    """Palm length in pixels (the scale of textures and edges)."""
    if fits:
        points = np.asarray(hand.landmarks, dtype=float)[:, :2]
        return max(4.0, float(np.linalg.norm(points[9] - points[0])))
    x1, y1, x2, y2 = hand.xyxy
    return max(4.0, 0.4 * max(x2 - x1, y2 - y1))


def _binary_mask(hand: Hand, fits: bool, region: tuple[int, int, int, int]) -> np.ndarray:
    """The hand's outline (uint8 0/1) in the box region's coordinates."""
    import cv2

    x0, y0, x3, y3 = region
    h, w = y3 - y0, x3 - x0
    mask = np.zeros((h, w), np.uint8)
    if not fits:
        x1, y1, x2, y2 = (float(v) for v in hand.xyxy)
        centre = (round((x1 + x2) / 2 - x0), round((y1 + y2) / 2 - y0))
        axes = (max(1, round(0.42 * (x2 - x1))), max(1, round(0.45 * (y2 - y1))))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
        return mask
    points = np.asarray(hand.landmarks, dtype=float)[:, :2] - (x0, y0)
    finger = _finger_width(points)
    pts = np.round(points).astype(np.int32)
    cv2.fillPoly(mask, [pts[list(_PALM)]], 1)
    for a, b in _BONES:
        thick = finger * (1.15 if a <= 4 and b <= 4 else 1.0)  # the thumb is thicker
        cv2.line(mask, tuple(pts[a]), tuple(pts[b]), 1, thickness=max(1, round(thick)), lineType=cv2.LINE_8)
    # a short cuff past the wrist, away from the middle knuckle, cut square to the arm and ending
    # inside the box (else the box's edge would cut it)
    axis = points[0] - points[9]
    length = float(np.linalg.norm(axis))
    cuff_end = points[0]
    if length > 1:
        unit = axis / length
        room = [(lim - points[0][i]) / unit[i] for i, lim in ((0, 0.0), (0, w - 1.0), (1, 0.0), (1, h - 1.0))
                if abs(unit[i]) > 1e-6 and (lim - points[0][i]) / unit[i] > 0]
        reach = max(0.0, min([0.35 * length, *room]) - 1)
        half = 0.8 * finger * np.array([-unit[1], unit[0]])
        cuff_end = points[0] + reach * unit
        corners = np.array([points[0] + half, points[0] - half, cuff_end - half, cuff_end + half])
        cv2.fillConvexPoly(mask, np.round(corners).astype(np.int32), 1)
    # never beyond the landmarks' convex hull grown by half a finger (and the cuff)
    hull = np.zeros_like(mask)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.vstack([pts, np.round(cuff_end).astype(np.int32)[None]])), 1)
    grow = max(1, round(finger / 2 + 1))
    hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask & hull


def hand_alpha(hand: Hand, region: tuple[int, int, int, int]) -> np.ndarray:
    """The glove's opacity (float32 0-1) over the box region: the outline with a soft edge; 0
    exactly where a pixel keeps its value. Depends only on the hand, never on a seed."""
    import cv2

    fits = landmarks_fit(hand.xyxy, hand.landmarks)
    mask = _binary_mask(hand, fits, region).astype(np.float32)
    sigma = max(0.6, 0.01 * _hand_size(hand, fits))
    k = 2 * math.ceil(2.5 * sigma) + 1
    alpha = cv2.GaussianBlur(mask, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
    alpha = np.clip((alpha - 0.02) / 0.96, 0.0, 1.0)  # a clean support: tails below 2 % cut to 0
    return alpha.astype(np.float32)


def glove_masks(shape: tuple[int, ...], boxes: Sequence[Sequence[float]],
                landmarks: Sequence[object | None] | None = None) -> np.ndarray:
    """The opacity (float32 H × W, 0-1) :func:`glove_image` paints with, all hands together;
    0 wherever a pixel is left as it was (always outside every box)."""
    height, width = shape[:2]
    out = np.zeros((height, width), np.float32)
    for hand in _hands(boxes, landmarks):
        region = _region(hand.xyxy, width, height)
        if region is not None:
            x0, y0, x3, y3 = region
            out[y0:y3, x0:x3] = np.maximum(out[y0:y3, x0:x3], hand_alpha(hand, region))
    return out


def _hands(boxes: Sequence[Sequence[float]], landmarks: Sequence[object | None] | None) -> list[Hand]:
    boxes = [tuple(float(v) for v in b) for b in boxes]
    if landmarks is not None and len(landmarks) != len(boxes):
        raise ValueError(f"{len(landmarks)} landmark sets for {len(boxes)} boxes")
    lms = list(landmarks) if landmarks is not None else [None] * len(boxes)
    return [Hand(b, None if lm is None else np.asarray(lm, dtype=float))
            for b, lm in zip(boxes, lms, strict=True)]


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian noise smoothed at ``sigma`` pixels, scaled to unit standard deviation."""
    import cv2

    n = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0.3:
        # smooth a coarse grid and resize: cheap for large sigmas
        step = max(1, int(sigma / 2))
        small = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2)).astype(np.float32)
        s = sigma / step
        k = 2 * math.ceil(3 * s) + 1
        small = cv2.GaussianBlur(small, (k, k), s, borderType=cv2.BORDER_REFLECT)
        n = cv2.resize(small, (shape[1] + 2 * step, shape[0] + 2 * step),
                       interpolation=cv2.INTER_CUBIC)[step:step + shape[0], step:step + shape[1]]
    std = float(n.std())
    return n / std if std > 1e-6 else n


def _texture(rng: np.random.Generator, kind: str, shape: tuple[int, int], size: float,
             angle: float) -> np.ndarray:
    """A multiplicative surface pattern around 1 (float32) for the region."""
    h, w = shape
    if kind == "knit":
        period = max(2.0, size / rng.uniform(18.0, 30.0))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u = xx * math.cos(angle) + yy * math.sin(angle)  # across the wales (columns of stitches)
        v = -xx * math.sin(angle) + yy * math.cos(angle)  # along them
        # rows of V-shaped loops: each column's course shifts with the loop's side
        col = np.cos(2 * np.pi * u / period)
        course = np.cos(2 * np.pi * (v / (0.8 * period) + 0.5 * np.abs(np.sin(np.pi * u / period))))
        pattern = 0.55 * col + 0.45 * course
        fuzz = _noise(rng, shape, 0.6)
        return 1 + rng.uniform(0.10, 0.18) * pattern + 0.05 * fuzz + 0.05 * _noise(rng, shape, size / 3)
    if kind == "leather":
        return (1 + rng.uniform(0.08, 0.15) * _noise(rng, shape, size / 4)
                + 0.05 * _noise(rng, shape, size / 14) + 0.015 * _noise(rng, shape, 0.7))
    return 1 + 0.02 * _noise(rng, shape, 0.8) + 0.03 * _noise(rng, shape, size / 5)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def _paint(rng: np.random.Generator, crop: np.ndarray, alpha: np.ndarray, glove: Glove, hand: Hand,
           fits: bool, blur: float) -> np.ndarray:
    """The glove layer (float32 0-255, H × W × 3) for one hand's region."""
    import cv2

    size = _hand_size(hand, fits)
    lum = _luminance(crop.astype(np.float32)) / 255.0
    smooth = {"knit": 0.04, "leather": 0.03, "coated": 0.06}[glove.texture] * size  # drop skin pores
    if smooth > 0.5:
        k = 2 * math.ceil(2.5 * smooth) + 1
        lum = 0.35 * lum + 0.65 * cv2.GaussianBlur(lum, (k, k), smooth, borderType=cv2.BORDER_REFLECT)
    inside = alpha > 0.5
    level = float(np.median(lum[inside])) if inside.any() else float(lum.mean())
    shade = lum / max(level, 0.04)
    # The outline is a glove's, a little wider than the hand: its rim holds background, whose
    # luminance would draw a dark or bright outline. Shading is kept as it varies within a band
    # around the smoothed shading of the hand's core (pixels half a finger inside the outline).
    radius = max(1, round(0.12 * size))
    core = cv2.erode(inside.astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))).astype(np.float32)
    if core.sum() < 4:
        core = inside.astype(np.float32)
    spread = max(1.0, 0.25 * size)
    k = 2 * math.ceil(2.5 * spread) + 1
    weight = cv2.GaussianBlur(core, (k, k), spread, borderType=cv2.BORDER_CONSTANT)
    local = cv2.GaussianBlur(shade * core, (k, k), spread, borderType=cv2.BORDER_CONSTANT)
    local = np.where(weight > 1e-4, local / np.maximum(weight, 1e-4), 1.0)
    soft_core = cv2.GaussianBlur(core, (2 * radius + 1, 2 * radius + 1), 0)
    band = 0.08 + 0.22 * soft_core  # the rim follows the core; the core keeps its folds
    shade = local + np.clip(shade - local, -band, band)
    shade = shade * (0.88 + 0.12 * soft_core)  # a rounded glove darkens a little towards its edge
    shade = np.clip(1 + rng.uniform(0.85, 1.25) * (shade - 1), 0.12, 2.2)
    angle = rng.uniform(0, math.pi)
    if fits:
        points = np.asarray(hand.landmarks, dtype=float)
        d = points[9, :2] - points[0, :2]
        angle = math.atan2(d[1], d[0]) + math.pi / 2  # knit columns run along the fingers
    tex = _texture(rng, glove.texture, alpha.shape, size, angle)
    if glove.texture in ("knit", "leather") and rng.random() < 0.5:  # work gloves get dirty
        tex = tex * (1 - rng.uniform(0.05, 0.25) * np.clip(_noise(rng, alpha.shape, size / 3), 0, None))
    colour = np.asarray(glove.rgb, np.float32) * rng.uniform(0.85, 1.12) * rng.uniform(0.97, 1.03, 3)
    colour = colour + rng.uniform(0, 0.3) * (colour.mean() - colour)  # worn: a little faded
    layer = colour[None, None, :] * (shade * tex)[..., None]
    if glove.texture == "coated":  # glossy: highlights where the hand's shading is brightest
        gloss = rng.uniform(0.25, 0.6) * np.clip((shade - 1.05) / 0.5, 0, 1) ** 2
        layer = layer + (255 - layer) * gloss[..., None]
    if blur > 0.3:
        k = 2 * math.ceil(2.5 * blur) + 1
        layer = cv2.GaussianBlur(layer, (k, k), blur, borderType=cv2.BORDER_REFLECT)
    return np.clip(layer, 0, 255)


def glove_image(image: np.ndarray, boxes: Sequence[Sequence[float]],
                landmarks: Sequence[object | None] | None = None, seed: int = 0,
                glove: str | None = None, blur: float | None = None) -> np.ndarray:
    """``image`` (RGB uint8, H × W × 3) with every hand in ``boxes`` turned into a work glove.

    Args:
        image: the photo; not changed.
        boxes: the hands' boxes (x1, y1, x2, y2 in pixels); they stay the boxes of the result.
        landmarks: per box its 21 landmarks in pixels (MediaPipe's order), or None; landmarks that
            do not fit their box (:func:`landmarks_fit`) count as none. With them the glove covers
            the hand's outline; without, an ellipse inside the box.
        seed: picks the glove, its colour jitter, texture and blur; the same seed gives the same
            pixels.
        glove: a :data:`GLOVES` name for every hand (default: drawn from the palette; a second
            hand wears the same glove three times in four).
        blur: Gaussian blur of the glove layer in pixels (default drawn from 0-0.8).

    Returns:
        A new image: pixels where :func:`glove_masks` is 0 (outside every box, always) are the
        input's bytes.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"glove_image needs an RGB uint8 image (H x W x 3), not {image.dtype} {image.shape}")
    by_name = {g.name: g for g in GLOVES}
    if glove is not None and glove not in by_name:
        raise ValueError(f"unknown glove {glove!r}; choose from {', '.join(by_name)}")
    rng = np.random.default_rng(seed)
    first = by_name[glove] if glove else GLOVES[int(rng.integers(len(GLOVES)))]
    out = image.copy()
    height, width = image.shape[:2]
    for i, hand in enumerate(_hands(boxes, landmarks)):
        wear = first if glove or i == 0 or rng.random() < 0.75 else GLOVES[int(rng.integers(len(GLOVES)))]
        sigma = float(rng.uniform(0, 0.8)) if blur is None else float(blur)
        region = _region(hand.xyxy, width, height)
        if region is None:
            continue
        x0, y0, x3, y3 = region
        alpha = hand_alpha(hand, region)
        if not alpha.any():
            continue
        crop = out[y0:y3, x0:x3]
        layer = _paint(rng, crop, alpha, wear, hand, landmarks_fit(hand.xyxy, hand.landmarks), sigma)
        a = alpha[..., None]
        mixed = np.clip(np.rint(a * layer + (1 - a) * crop.astype(np.float32)), 0, 255).astype(np.uint8)
        out[y0:y3, x0:x3] = np.where(a > 0, mixed, crop)
    return out


def copies_for(stem: str, copies: float, seed: int = 0) -> int:
    """How many synthetic copies the image ``stem`` gets: ``copies`` rounded down, plus one more
    for a seeded share (the fraction) of the images, chosen by name (independent of order)."""
    whole = math.floor(copies)
    share = copies - whole
    if share <= 0:
        return whole
    draw = np.random.default_rng([seed, zlib.crc32(stem.encode()), 1 << 20]).random()
    return whole + int(draw < share)


def _copy_seed(seed: int, stem: str, k: int) -> int:
    return int(np.random.default_rng([seed, zlib.crc32(stem.encode()), k]).integers(2**31))


def _boxes_from_labels(label: Path, width: int, height: int) -> list[Hand]:
    hands = []
    for line in label.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        hands.append(Hand(((cx - bw / 2) * width, (cy - bh / 2) * height,
                           (cx + bw / 2) * width, (cy + bh / 2) * height)))
    return hands


@dataclass
class SyntheticGloves:
    """What :func:`add_synthetic_gloves` wrote."""

    frames: int = 0
    images: int = 0
    files: list[str] = field(default_factory=list)


def add_synthetic_gloves(images_dir: Path, labels_dir: Path, out_images: Path, out_labels: Path,
                         copies: float, seed: int = 0, hands: Mapping[str, Sequence[Hand]] | None = None,
                         quality: int = 95) -> SyntheticGloves:
    """Write synthetic-glove copies of a YOLO split's images, each with its source's label file.

    Args:
        images_dir, labels_dir: the split (``images/train``, ``labels/train``).
        out_images, out_labels: where the copies go (``<stem>-glove<k>.jpg`` and ``.txt``); keep
            ultralytics' rule that ``labels`` replaces the path's last ``images``.
        copies: copies per image (a fraction: see :func:`copies_for`).
        seed: with the image's name and k, the seed of each copy.
        hands: image stem -> its hands (boxes in pixels, landmarks); images not named here are
            skipped. None: every image with a label file, its hands from the label lines
            (no landmarks, so ellipses).
        quality: JPEG quality of the copies.
    """
    from PIL import Image

    summary = SyntheticGloves()
    if copies <= 0:
        return summary
    sources = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in sources:
        label = Path(labels_dir) / f"{path.stem}.txt"
        if not label.is_file() or (hands is not None and path.stem not in hands):
            continue
        n = copies_for(path.stem, copies, seed)
        if not n:
            continue
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        these = list(hands[path.stem]) if hands is not None else _boxes_from_labels(label, rgb.shape[1],
                                                                                     rgb.shape[0])
        if not these:
            continue
        out_images.mkdir(parents=True, exist_ok=True)
        out_labels.mkdir(parents=True, exist_ok=True)
        boxes = [h.xyxy for h in these]
        lms = [h.landmarks for h in these]
        for k in range(1, n + 1):
            name = f"{path.stem}{SYNTHETIC_SUFFIX}{k}"
            gloved = glove_image(rgb, boxes, lms, seed=_copy_seed(seed, path.stem, k))
            Image.fromarray(gloved).save(out_images / f"{name}.jpg", quality=quality)
            shutil.copyfile(label, out_labels / f"{name}.txt")
            summary.files.append(f"{name}.jpg")
            summary.images += 1
        summary.frames += 1
    return summary
