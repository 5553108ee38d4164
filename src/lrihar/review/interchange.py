"""Round trips with the labelling tools people already use: Label Studio, CVAT, COCO.

Export writes the frames that hold detections as JPEG (``images/``) plus pre-annotations:
Label Studio tasks with ``predictions`` and a labelling config, or a CVAT-for-images 1.1 XML.
Frame files are named from their source and frame index, so an import finds each image's
stored frame again by file name whatever URL or folder the tool used.

Import matches the tool's boxes on each frame to the stored ones (IoU ≥ 0.5, one to one):
a matched box takes the tool's label (and its corners if they moved); a tool box with no stored
match is added as a manual box; a stored box the tool no longer has is marked wrong. All of it
is one transaction, logged as review actions of reviewer ``import:<tool>``. Unknown images or
labels are listed and nothing is changed unless ``allow_unknown`` skips them.

Every box must be four finite numbers with ordered corners and a valid class name; it is then
clipped to its frame as the review page clips a drawn box (:func:`lrihar.review.actions.clip_box`).
A bad record (named by task / image / annotation) stops the whole import before anything is stored.
"""

from __future__ import annotations

import json
import reprlib
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from lrihar.crops import frame_stem, iter_frames
from lrihar.errors import BadInputError
from lrihar.evaluate.metrics import box_iou
from lrihar.naming import check_class_name
from lrihar.project import Project
from lrihar.review import actions
from lrihar.review.actions import box_numbers, finite_number
from lrihar.store import DetectionRow

NG = "NG"
TOOLS = ("labelstudio", "cvat", "coco")


@dataclass
class ImportSummary:
    """What an import changed (or would have, with the problems that stopped it)."""

    images: int = 0
    relabelled: int = 0
    moved: int = 0
    confirmed: int = 0
    added: int = 0
    rejected: int = 0
    unknown_images: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)


def _classes(project: Project) -> list[str]:
    return project.classes


def _write_frames(project: Project, out: Path) -> list[tuple[str, list, tuple[int, int]]]:
    """Frame JPEGs with their stored (non-rejected) detections: [(file name, rows, (w, h))]."""
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for rows, image in iter_frames(project.store):
        name = f"{frame_stem(rows[0])}.jpg"
        Image.fromarray(image).save(out / "images" / name, quality=95)
        frames.append((name, rows, (image.shape[1], image.shape[0])))
    if not frames:
        raise BadInputError("nothing to export: the project has no readable detections")
    return frames


def export_labelstudio(project: Project, out: Path, image_url: str = "/data/local-files/?d=images/") -> Path:
    """``tasks.json`` (with predictions) and ``labeling-config.xml`` for Label Studio."""
    classes = [*_classes(project), NG]
    tasks = []
    for name, rows, (w, h) in _write_frames(project, out):
        result = []
        for r in rows:
            x1, y1, x2, y2 = r.xyxy
            result.append({
                "id": f"d{r.id}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": w, "original_height": h, "image_rotation": 0,
                "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w,
                          "height": 100 * (y2 - y1) / h, "rotation": 0,
                          "rectanglelabels": [r.action or NG]},
                "score": r.action_score if r.action_score is not None else r.score,
            })
        frame = f"{rows[0].source_uri}#{rows[0].frame_index}"
        tasks.append({"data": {"image": image_url + name, "lrihar_frame": frame},
                      "predictions": [{"model_version": "lrihar", "result": result}]})
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1) + "\n")
    labels = "\n".join(f'    <Label value="{_xml_escape(c)}"/>' for c in classes)
    (out / "labeling-config.xml").write_text(
        f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">\n'
        f"{labels}\n  </RectangleLabels>\n</View>\n")
    return out / "tasks.json"


def export_cvat(project: Project, out: Path) -> Path:
    """``annotations.xml`` in CVAT for images 1.1, beside the frame images."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    meta = ET.SubElement(ET.SubElement(root, "meta"), "task")
    labels = ET.SubElement(meta, "labels")
    for c in [*_classes(project), NG]:
        ET.SubElement(ET.SubElement(labels, "label"), "name").text = c
    for i, (name, rows, (w, h)) in enumerate(_write_frames(project, out)):
        img = ET.SubElement(root, "image", id=str(i), name=name, width=str(w), height=str(h))
        for r in rows:
            x1, y1, x2, y2 = r.xyxy
            ET.SubElement(img, "box", label=r.action or NG, source="auto", occluded="0", z_order="0",
                          xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}")
    ET.indent(root)
    path = out / "annotations.xml"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# -- import -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolBox:
    """One box of a tool's export: pixel corners as the tool gave them (four finite numbers,
    ordered), its label (a valid class name) and the record it came from, for messages."""

    xyxy: tuple[float, float, float, float]
    label: str
    record: str


@dataclass(frozen=True)
class _JsonConstant:
    """``NaN`` / ``Infinity`` / ``-Infinity`` in a JSON file (Python's json reads them; JSON has
    no such numbers): kept as this marker, so the record that holds one is refused by name."""

    text: str

    def __repr__(self) -> str:
        return self.text


class _Problems:
    """Bad records of one file, collected so the user sees them together; nothing is imported
    while there is one."""

    def __init__(self, path: Path) -> None:
        self.path, self.items = path, []

    @contextmanager
    def record(self, where: str) -> Iterator[None]:
        """Note (rather than raise) what is wrong with the record parsed in this block."""
        try:
            yield
        except BadInputError as exc:  # already names the record
            self.items.append(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            self.items.append(f"{where}: {exc}")

    def check(self) -> None:
        if self.items:
            more = f"; ... and {len(self.items) - 10} more" if len(self.items) > 10 else ""
            raise BadInputError(f"{self.path}: nothing imported; {len(self.items)} bad record(s): "
                                + "; ".join(self.items[:10]) + more
                                + ". Fix them in the tool (or the file) and import again.")


def _load_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_JsonConstant)
    except RecursionError:
        raise BadInputError(f"{path}: not a {what} (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: not a {what} ({exc.__class__.__name__}: {exc})") from None


def _field(obj: object, *keys: str) -> Any:
    """``obj[k1][k2]...`` of parsed JSON; ValueError naming the first missing field."""
    for i, key in enumerate(keys):
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"field {'.'.join(keys[:i + 1])!r} is missing")
        obj = obj[key]
    return obj


def _has(obj: object, key: str) -> bool:
    return isinstance(obj, dict) and key in obj


def _list(value: object, field_name: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{field_name} is not a list")
    return value


def _text(value: object, field_name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field_name} {reprlib.repr(value)} is not a text")
    return value


def _ordered(xyxy: tuple[float, float, float, float], where: str) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = xyxy
    if not (x2 > x1 and y2 > y1):
        raise BadInputError(f"{where}: the box is inverted or empty (x1, y1, x2, y2 = "
                            f"{x1:g}, {y1:g}, {x2:g}, {y2:g})")
    return xyxy


def _name_from_url(url: str) -> str:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    path = query["d"][0] if "d" in query else parsed.path
    return Path(unquote(path)).name


def parse_labelstudio(path: Path) -> dict[str, list[ToolBox]]:
    """Image file name -> boxes from a Label Studio JSON export.

    Only tasks a person annotated count (their latest annotation); tasks still holding just
    our predictions were not reviewed and are left alone.
    """
    tasks = _load_json(path, "Label Studio JSON export")
    if not isinstance(tasks, list):
        raise BadInputError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    problems, out = _Problems(path), {}
    for i, task in enumerate(tasks):
        with problems.record(f"task {i}"):
            name = _name_from_url(_text(_field(task, "data", "image"), "data.image"))
            annotations = [a for a in _list(task.get("annotations") or [], "annotations")
                           if not (isinstance(a, dict) and a.get("was_cancelled"))]
            if not annotations:  # nobody looked at this task: its predictions are not a review
                continue
            boxes = out[name] = []
            for j, r in enumerate(_list(_field(annotations[-1], "result"), "annotations[-1].result")):
                where = f"task {i} ({name!r}) result {j}" + (f" id {r['id']!r}" if _has(r, "id") else "")
                with problems.record(where):
                    if r.get("type") == "rectanglelabels":
                        boxes.append(_labelstudio_box(r, where))
    problems.check()
    return out


def _labelstudio_box(r: dict, where: str) -> ToolBox:
    """A rectangle in percent of the image -> pixels."""
    v = _field(r, "value")
    w, h = (finite_number(_field(r, k), where) for k in ("original_width", "original_height"))
    if w <= 0 or h <= 0:
        raise BadInputError(f"{where}: original_width and original_height must be positive")
    x, y, bw, bh = box_numbers([_field(v, k) for k in ("x", "y", "width", "height")], where)
    labels = _field(v, "rectanglelabels")
    if not isinstance(labels, list) or not labels:
        raise BadInputError(f"{where}: value.rectanglelabels must be a list with the label")
    xyxy = _ordered((x * w / 100, y * h / 100, (x + bw) * w / 100, (y + bh) * h / 100), where)
    return ToolBox(xyxy, check_class_name(labels[0], where), where)


CVAT_CORNERS = ("xtl", "ytl", "xbr", "ybr")


def parse_cvat(path: Path) -> dict[str, list[ToolBox]]:
    """Image file name -> boxes from a CVAT-for-images 1.1 XML (parsed with defusedxml)."""
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    try:
        root = SafeET.parse(path).getroot()
    except (OSError, ValueError, ET.ParseError, DefusedXmlException) as exc:
        raise BadInputError(f"{path}: not a CVAT for images 1.1 XML "
                            f"({exc.__class__.__name__}: {exc})") from None
    if root.tag != "annotations":
        raise BadInputError(f"{path}: not a CVAT for images 1.1 XML (root element is not <annotations>)")
    problems, out = _Problems(path), {}
    for i, img in enumerate(root.iter("image")):
        with problems.record(f"image {i}"):
            name = Path(_text(img.attrib.get("name"), "attribute name")).name
            boxes = out[name] = []
            for j, b in enumerate(img.iter("box")):
                where = f"image {name!r} box {j}"
                with problems.record(where):
                    x1, y1, x2, y2 = (_number_text(b.attrib.get(k), k, where) for k in CVAT_CORNERS)
                    label = check_class_name(b.attrib.get("label"), where)
                    boxes.append(ToolBox(_ordered((x1, y1, x2, y2), where), label, where))
    problems.check()
    return out


def _number_text(text: str | None, attribute: str, where: str) -> float:
    if text is None:
        raise BadInputError(f"{where}: attribute {attribute} is missing")
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"{where}: {attribute} {reprlib.repr(text)} is not a number") from None
    return finite_number(value, f"{where}: {attribute}")


def parse_coco(path: Path) -> dict[str, list[ToolBox]]:
    """Image file name -> boxes from a COCO detection JSON."""
    doc = _load_json(path, "COCO detection JSON")
    try:
        categories, images, annotations = (_field(doc, k) for k in ("categories", "images", "annotations"))
        if not all(isinstance(x, list) for x in (categories, images, annotations)):
            raise ValueError("categories, images and annotations must be lists")
    except ValueError as exc:
        raise BadInputError(f"{path}: not a COCO detection JSON ({exc})") from None
    problems = _Problems(path)
    cats, names = {}, {}
    for i, c in enumerate(categories):
        with problems.record(f"category {i}"):
            cats[_field(c, "id")] = _field(c, "name")  # checked as a class name where a box uses it
    for i, im in enumerate(images):
        with problems.record(f"image {i}"):
            names[_field(im, "id")] = Path(_text(_field(im, "file_name"), "file_name")).name
    out: dict[str, list[ToolBox]] = {n: [] for n in names.values()}
    for i, a in enumerate(annotations):
        where = f"annotation {i}" + (f" id {a['id']!r}" if _has(a, "id") else "")
        with problems.record(where):
            image_id, category_id = _field(a, "image_id"), _field(a, "category_id")
            if image_id not in names:
                raise ValueError(f"image_id {reprlib.repr(image_id)} is not among the images")
            if category_id not in cats:
                raise ValueError(f"category_id {reprlib.repr(category_id)} is not among the categories")
            where = f"{where} ({names[image_id]!r})"
            x, y, w, h = box_numbers(_field(a, "bbox"), where)
            out[names[image_id]].append(ToolBox(_ordered((x, y, x + w, y + h), where),
                                                check_class_name(cats[category_id], where), where))
    problems.check()
    return out


PARSERS = {"labelstudio": parse_labelstudio, "cvat": parse_cvat, "coco": parse_coco}


def import_corrections(project: Project, path: str | Path, tool: str, allow_unknown: bool = False,
                       match_iou: float = 0.5) -> ImportSummary:
    """Apply a tool's corrected export to the store (all or nothing); see the module doc."""
    if tool not in PARSERS:
        raise BadInputError(f"--from: unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    imported = PARSERS[tool](path)
    store = project.store
    classes = _classes(project)
    frames: dict[str, DetectionRow] = {}
    for row in store.detections(include_rejected=True):
        frames.setdefault(f"{frame_stem(row)}.jpg", row)
    summary = ImportSummary(images=len(imported))
    summary.unknown_images = sorted(n for n in imported if n not in frames)
    summary.unknown_labels = sorted({b.label for boxes in imported.values() for b in boxes
                                     if b.label not in (*classes, NG)})
    if (summary.unknown_images or summary.unknown_labels) and not allow_unknown:
        raise BadInputError(
            f"{path}: nothing imported. "
            + (f"Images not in the project: {', '.join(summary.unknown_images[:10])}. "
               if summary.unknown_images else "")
            + (f"Labels not in the project ({', '.join(classes)}, NG): {', '.join(summary.unknown_labels)}. "
               if summary.unknown_labels else "")
            + "Fix the file, add the classes to the project, or pass --allow-unknown to skip them.")
    # Every box as the review page would store it (clipped to its frame), before anything is written.
    problems, clipped = _Problems(path), {}
    for name, boxes in sorted(imported.items()):
        if name in frames:
            frame, kept = frames[name], clipped.setdefault(name, [])
            for b in boxes:
                if b.label in (*classes, NG):
                    with problems.record(b.record):
                        kept.append((actions.clip_box(b.xyxy, frame.width, frame.height, b.record), b.label))
    problems.check()
    stored = defaultdict(list)
    for row in store.detections():
        stored[(row.source_uri, row.frame_index)].append(row)
    reviewer = f"import:{tool}"
    with store.transaction() as db:
        action_id = actions.next_action_id(db)

        def log(kind: str, det_id: int, before: dict | None) -> None:
            actions.log_change(db, action_id, reviewer, None, kind, det_id, before, actions.state(db, det_id))

        for name, boxes in clipped.items():
            rows = stored.get((frames[name].source_uri, frames[name].frame_index), [])
            _apply_frame(db, rows, boxes, match_iou, summary, log)
    return summary


def _apply_frame(db, rows, boxes, match_iou, summary: ImportSummary, log) -> None:
    iou = box_iou(np.array([r.xyxy for r in rows], float), np.array([b for b, _ in boxes], float))
    taken_rows: set[int] = set()
    matched: dict[int, int] = {}
    # highest IoU pairs first, one to one
    for flat in np.argsort(-iou, axis=None) if iou.size else []:
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < match_iou:
            break
        if i in taken_rows or j in matched:
            continue
        taken_rows.add(int(i))
        matched[int(j)] = int(i)
    for j, (box, label) in enumerate(boxes):
        if j in matched:
            row = rows[matched[j]]
            before = actions.state(db, row.id)
            if iou[matched[j], j] < 0.95:
                actions.set_box(db, row.id, box)
                summary.moved += 1
            if before["label"] != label:
                summary.relabelled += 1
            else:
                summary.confirmed += 1
            actions.set_label(db, row.id, label)
            log("import", row.id, before)
        else:
            if not rows:
                continue  # a frame the project holds only as rejected boxes: nothing to attach to
            log("add", actions.insert_manual_box(db, rows[0].id, box, label), None)
            summary.added += 1
    for i, row in enumerate(rows):
        if i not in taken_rows:
            before = actions.state(db, row.id)
            actions.reject(db, row.id)
            log("wrong", row.id, before)
            summary.rejected += 1
