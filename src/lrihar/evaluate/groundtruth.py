"""Ground truth from a COCO JSON file or a YOLO dataset folder: boxes, classes and image sizes.

Only the annotation files are read: COCO sizes come from the JSON, YOLO sizes from each image's
header (no pixels decoded). Image files need not exist until something wants their pixels
(``lrihar sweep`` runs a detector on them: :meth:`GroundTruth.require_images`), so a COCO file
whose images live elsewhere still evaluates a project, matched to its frames by file name.

Example:
    >>> gt = load_ground_truth("gt/coco.json")  # doctest: +SKIP
    >>> gt.boxes[gt.images[0]], gt.sizes[gt.images[0]]  # doctest: +SKIP
    (array([[ 10.,  20., 110., 220.]]), (640, 480))
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.errors import BadInputError
from lrihar.sources import IMAGE_SUFFIXES

MAX_LISTED = 5  # problems named in one error message; the rest are counted


@dataclass(frozen=True)
class GroundTruth:
    """Boxes per image: ``boxes[path]`` is (N, 4) xyxy in pixels, ``labels[path]`` their class
    names, ``sizes[path]`` the image's (width, height). ``path`` is where the image should be;
    it may not exist."""

    images: list[str]
    boxes: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    classes: list[str]
    sizes: dict[str, tuple[int, int]]
    source: str = ""

    def by_name(self) -> dict[str, str]:
        """Image file name -> full path (to match stored frames by name)."""
        return {Path(p).name: p for p in self.images}

    def require_images(self, paths: Iterable[str] | None = None) -> None:
        """Raise a clear error unless every image (or each of ``paths``) exists as a file."""
        require_files(self.images if paths is None else paths, self.source)


def require_files(paths: Iterable[str], source: str) -> None:
    """Raise :class:`BadInputError` naming the first missing image of ground truth ``source``."""
    paths = list(paths)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise BadInputError(
            f"{source}: {len(missing)} of {len(paths)} ground-truth images not found (first: "
            f"{missing[0]}); the detector needs their pixels. Give --images DIR, the folder the "
            "ground truth's file names are relative to.")


def load_ground_truth(gt: str | Path, images: str | Path | None = None) -> GroundTruth:
    """Read ``gt``: a COCO JSON file (image paths relative to its folder, or to ``images``) or a
    YOLO dataset folder / ``data.yaml`` (with ``images/`` and ``labels/``).

    Raises:
        BadInputError: the file or folder is missing, not in either format, or a record in it is
            invalid (the message names the file and the records).
    """
    gt = Path(gt)
    if not gt.exists():
        raise BadInputError(f"{gt}: ground truth not found (a COCO .json or a YOLO dataset folder)")
    truth = load_coco(gt, images) if gt.suffix.lower() == ".json" else load_yolo(gt, images)
    if not truth.images:
        raise BadInputError(f"{gt}: no annotated images found")
    return truth


# -- COCO -----------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _where(kind: str, index: int, record: Any) -> str:
    rid = record.get("id") if isinstance(record, dict) else None
    return f"{kind}[{index}]" + (f" (id {rid!r})" if rid is not None else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _image_problem(image: Any) -> str | None:
    if not isinstance(image, dict):
        return f"must be an object, got {_short(image)}"
    if not _is_id(image.get("id")):
        return f"'id' must be an integer or a string, got {_short(image.get('id'))}"
    name = image.get("file_name")
    if not isinstance(name, str) or not name.strip():
        return f"'file_name' must be a non-empty string, got {_short(name)}"
    for key in ("width", "height"):
        if not _is_number(image.get(key)) or image[key] <= 0:
            return f"'{key}' must be a positive number, got {_short(image.get(key))}"
    return None


def _annotation_problem(ann: Any, image_ids: set, category_ids: set) -> str | None:
    if not isinstance(ann, dict):
        return f"must be an object, got {_short(ann)}"
    if not _is_id(ann.get("image_id")) or ann["image_id"] not in image_ids:
        return f"'image_id' {_short(ann.get('image_id'))} is not the id of any image"
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"'bbox' must be 4 finite numbers [x, y, width, height], got {_short(bbox)}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"'bbox' has a negative width or height: {_short(bbox)}"
    if not _is_id(ann.get("category_id")) or ann["category_id"] not in category_ids:
        return f"'category_id' {_short(ann.get('category_id'))} is not the id of any category"
    return None


def _raise_problems(path: Path, problems: list[str], what: str) -> None:
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise BadInputError(f"{path}: invalid {what}: {listed}{more}. Fix these records and rerun.")


def load_coco(path: Path, images: str | Path | None = None) -> GroundTruth:
    """COCO detection ground truth from the JSON alone; crowd annotations (``iscrowd: 1``, a
    region of many objects) are left out, as COCO's own evaluation ignores them."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read ground truth ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: cannot read ground truth: a COCO file is a JSON object with "
                            "'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise BadInputError(f"{path}: cannot read ground truth: '{key}' must be a list, "
                                f"got {_short(doc.get(key))}")
    problems = []
    names: dict[Any, str] = {}
    for i, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            problems.append(f"{_where('categories', i, cat)}: needs an 'id' and a 'name' string")
        elif cat["id"] in names:
            problems.append(f"{_where('categories', i, cat)}: the id is used twice")
        else:
            names[cat["id"]] = cat["name"]
    _raise_problems(path, problems, "categories")

    root = Path(images) if images else Path(path).parent
    keys: dict[Any, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for i, image in enumerate(doc["images"]):
        problem = _image_problem(image)
        if problem is None and image["id"] in keys:
            problem = "the id is used twice"
        if problem is None and str(root / image["file_name"]) in sizes:
            problem = f"file_name {image['file_name']!r} is used by another image too"
        if problem is not None:
            problems.append(f"{_where('images', i, image)}: {problem}")
            continue
        key = str(root / image["file_name"])
        keys[image["id"]] = key
        sizes[key] = (round(image["width"]), round(image["height"]))
    _raise_problems(path, problems, "images")

    boxes: dict[str, list[list[float]]] = {k: [] for k in sizes}
    labels: dict[str, list[str]] = {k: [] for k in sizes}
    image_ids, category_ids = set(keys), set(names)
    for i, ann in enumerate(doc["annotations"]):
        problem = _annotation_problem(ann, image_ids, category_ids)
        if problem is not None:
            problems.append(f"{_where('annotations', i, ann)}: {problem}")
            continue
        if ann.get("iscrowd"):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        boxes[keys[ann["image_id"]]].append([x, y, x + w, y + h])
        labels[keys[ann["image_id"]]].append(names[ann["category_id"]])
    _raise_problems(path, problems, "annotations")
    classes = list(dict.fromkeys(names.values()))
    return GroundTruth(list(sizes), {k: np.array(v, float).reshape(-1, 4) for k, v in boxes.items()},
                       labels, classes, sizes, str(path))


# -- YOLO -----------------------------------------------------------------------------------------

def _yolo_config(data_yaml: Path) -> tuple[list[str], bool]:
    """(class names by index, whether rows carry pose keypoints after the box)."""
    import yaml

    try:
        doc = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"{data_yaml}: cannot read ground truth ({exc.__class__.__name__}: {exc})"
                            ) from None
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        names = [names[k] for k in sorted(names)] if sorted(names) == list(range(len(names))) else None
    if not isinstance(names, list) or not names:
        raise BadInputError(f"{data_yaml}: cannot read ground truth: 'names' must list the classes "
                            "(a list, or a mapping 0: name, 1: name, ...)")
    return [str(n) for n in names], "kpt_shape" in doc


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; as lrihar reads the image
    (no EXIF rotation), so boxes line up with stored frames."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable image header ({exc.__class__.__name__}: {exc})") from None


def _yolo_row(tokens: list[str], n_classes: int, pose: bool) -> tuple[int, list[float]] | str:
    """(class index, normalised xyxy) of one label row, or what is wrong with it."""
    try:
        values = [float(t) for t in tokens[1:]]
        cls = int(tokens[0])
    except ValueError:
        return f"not numbers: {' '.join(tokens)[:60]!r}"
    if not 0 <= cls < n_classes:
        return f"class {cls} is not in data.yaml's {n_classes} names"
    if not all(math.isfinite(v) for v in values):
        return "a value is not finite"
    if pose or len(values) in (4, 5):  # box, box + confidence, box + keypoints
        if len(values) < 4:
            return f"needs 5 values (class cx cy w h), got {len(tokens)}"
        cx, cy, w, h = values[:4]
        if w < 0 or h < 0:
            return "negative width or height"
        return cls, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(values) >= 6:  # a polygon x1 y1 x2 y2 ... (an odd count ends with a confidence)
        xy = np.array(values[: len(values) // 2 * 2]).reshape(-1, 2)
        return cls, [*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist()]
    return f"needs 5 values (class cx cy w h) or a polygon, got {len(tokens)}"


def load_yolo(gt: Path, images: str | Path | None = None) -> GroundTruth:
    """A YOLO dataset: ``data.yaml`` names, ``labels/<same relative path>.txt`` per image under
    ``images/`` (or ``images``), sub-folders included; an image without a label file has no boxes."""
    data_yaml = gt if gt.suffix.lower() in (".yaml", ".yml") else gt / "data.yaml"
    if not data_yaml.is_file():
        raise BadInputError(f"{gt}: cannot read ground truth: not a .json file and no {data_yaml.name} "
                            "(a YOLO dataset folder holds data.yaml, images/ and labels/)")
    classes, pose = _yolo_config(data_yaml)
    base = data_yaml.parent
    image_dir, label_dir = Path(images) if images else base / "images", base / "labels"
    if not image_dir.is_dir():
        raise BadInputError(f"{image_dir}: images folder of the YOLO ground truth not found")
    problems, boxes, labels, sizes = [], {}, {}, {}
    for path in sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        label_file = label_dir / path.relative_to(image_dir).with_suffix(".txt")
        if not label_file.is_file():
            label_file = label_dir / f"{path.stem}.txt"  # labels/ kept flat
        w, h = _image_size(path)
        rows = []
        if label_file.is_file():
            for n, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = _yolo_row(line.split(), len(classes), pose)
                    if isinstance(row, str):
                        problems.append(f"{label_file} line {n}: {row}")
                    else:
                        rows.append(row)
        key = str(path)
        sizes[key] = (w, h)
        boxes[key] = np.array([r[1] for r in rows], float).reshape(-1, 4) * [w, h, w, h]
        labels[key] = [classes[r[0]] for r in rows]
    _raise_problems(gt, problems, "label rows")
    return GroundTruth(list(sizes), boxes, labels, classes, sizes, str(gt))
