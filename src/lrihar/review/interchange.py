"""Round trips with the labelling tools people already use: Label Studio, CVAT, COCO.

Export writes the frames that hold detections as JPEG (``images/``) plus pre-annotations:
Label Studio tasks with ``predictions`` and a labelling config, or a CVAT-for-images 1.1 XML. Given
a frame list (``lrihar suggest -o``), it writes just those frames, in that order, also the ones
with no box (the hands a detector missed are drawn there).
Frame files are named from their source and frame index, so an import finds each image's
stored frame again by file name whatever URL or folder the tool used. A box the store holds with
no label yet is offered as NG, or as ``hand`` (the detector's class) in a project with no action
classes, whose tool labels are ``hand`` and NG (:func:`lrihar.classes.box_labels`).

An image of the tool's file is a stored frame (:meth:`_StoredFrames.find`, first rule that finds
one): by lrihar's export name; by the frame's original path (an image's file, or a video's frame as
``video#frame=N``), whole or by the most of its last folders and file name (``b/IMG_0012.jpg``,
``line/clip.mp4#frame=120``, a path on another machine); by the file name alone
(:func:`frame_names`, the rule ``lrihar evaluate`` matches ground truth by) where exactly one
stored frame has it. A name that fits two or more frames, or two images that are one frame, stop
the import, naming them.

Import matches the tool's boxes on each stored frame (with boxes or not) to the stored ones
(IoU ≥ 0.5, one to one): a matched box takes the tool's label (and its corners if they moved); a
tool box with no stored match is added as a person's box; a stored box the tool no longer has is
marked wrong; a frame left with no box at all can be marked "no hand" (``empty_checked``). All of
it is one transaction, logged as review actions of reviewer ``import:<tool>`` (so
:func:`lrihar.review.edits.undo_last` reverts it). Unknown images or labels are listed and
nothing is changed unless ``allow_unknown`` skips them.

Every box must be four finite numbers with ordered corners and a valid class name; it is then
clipped to its frame as the review page clips a drawn box (:func:`lrihar.review.edits.clip_box`).
A bad record (named by task / image / annotation) stops the whole import before anything is stored.
"""

from __future__ import annotations

import json
import re
import reprlib
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from lrihar.boxes import box_iou
from lrihar.classes import box_labels, unlabelled_box_label
from lrihar.crops import FrameRef, frame_stem, read_frames
from lrihar.dump import frame_file_name
from lrihar.errors import BadInputError
from lrihar.naming import check_class_name
from lrihar.project import Project
from lrihar.review import edits
from lrihar.review.edits import box_numbers, finite_number
from lrihar.sources import SourceError
from lrihar.store import DetectionRow

TOOLS = ("labelstudio", "cvat", "coco")
_FRAME_SUFFIX = re.compile(r"#frame=(\d+)$")  # a video's frame N, as `lrihar detections` names it


@dataclass
class ImportSummary:
    """What an import changed (or would have, with the problems that stopped it)."""

    images: int = 0
    relabelled: int = 0
    moved: int = 0
    confirmed: int = 0
    added: int = 0
    rejected: int = 0
    checked_empty: int = 0
    unknown_images: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)


def _labels(project: Project) -> tuple[list[str], str]:
    """The labels the tool may give a box (:func:`lrihar.classes.box_labels`: the project's classes
    and NG, or ``hand`` and NG in a project without classes) and the one a box with no label yet
    is pre-annotated with (NG, or ``hand`` without classes)."""
    classes = project.classes
    return box_labels(classes), unlabelled_box_label(classes)


def _write_frames(project: Project, out: Path, frames: Sequence[FrameRef] | None = None,
                  errors: list[SourceError] | None = None
                  ) -> list[tuple[str, FrameRef, list[DetectionRow], tuple[int, int]]]:
    """Frame JPEGs with their stored (non-rejected) detections: [(file name, frame, rows, (w, h))].

    ``frames``: these frames, in this order, with or without boxes (see :func:`load_frame_list`);
    default every frame that holds a box, in store order. Unreadable frames go to ``errors``.
    """
    from PIL import Image

    by_frame: dict[tuple[str, int], list[DetectionRow]] = defaultdict(list)
    for row in project.store.detections():
        by_frame[(row.source_uri, row.frame_index)].append(row)
    if frames is None:
        frames = [FrameRef(r[0].source_uri, r[0].frame_index, r[0].frame_name) for r in by_frame.values()]
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = {}
    for ref, image in read_frames(sorted(frames, key=lambda f: (f.source_uri, f.frame_index)), errors):
        key = (ref.source_uri, ref.frame_index)
        name = f"{frame_stem(ref)}.jpg"
        Image.fromarray(image).save(out / "images" / name, quality=95)
        written[key] = (name, ref, by_frame.get(key, []), (image.shape[1], image.shape[0]))
    if not written:
        raise BadInputError("nothing to export: " + ("none of the listed frames could be read" if frames
                                                      else "the project has no readable detections"))
    return [written[key] for key in dict.fromkeys((f.source_uri, f.frame_index) for f in frames)
            if key in written]


def load_frame_list(project: Project, path: str | Path) -> list[FrameRef]:
    """The stored frames a JSON list names, in its order (repeats once): each item an object with
    ``source`` (the source as stored) and ``frame_index``, as ``lrihar suggest -o`` writes them.
    A bad item or a frame this project does not hold stops it, naming the item."""
    path = Path(path)
    items = _load_json(path, "frame list")
    if not isinstance(items, list) or not items:
        raise BadInputError(f"{path}: not a frame list: expected a non-empty JSON list of "
                            '{"source": ..., "frame_index": N} objects, as `lrihar suggest -o` writes')
    stored = {(uri, rec.index): FrameRef(uri, rec.index, rec.name) for uri, _, rec in project.store.frames()}
    problems, out = _Problems(path, "nothing exported", "Fix the list (or write it again with `lrihar "
                                                        "suggest -p PROJECT -o FILE`)."), {}
    for i, item in enumerate(items):
        with problems.record(f"item {i}"):
            uri, index = _text(_field(item, "source"), "source"), _field(item, "frame_index")
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"frame_index {reprlib.repr(index)} is not a whole number")
            if (uri, index) not in stored:
                raise ValueError(f"frame {index} of {uri!r} is not in this project's store (a list made "
                                 "for another project?)")
            out.setdefault((uri, index), stored[(uri, index)])
    problems.check()
    return list(out.values())


def export_labelstudio(project: Project, out: Path, image_url: str = "/data/local-files/?d=images/",
                       frames: Sequence[FrameRef] | None = None,
                       errors: list[SourceError] | None = None) -> Path:
    """``tasks.json`` (with predictions) and ``labeling-config.xml`` for Label Studio.

    ``frames``: only these, in this order, boxes or not (see :func:`_write_frames`).
    """
    labels, unlabelled = _labels(project)
    tasks = []
    for name, ref, rows, (w, h) in _write_frames(project, out, frames, errors):
        result = []
        for r in rows:
            x1, y1, x2, y2 = r.xyxy
            result.append({
                "id": f"d{r.id}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": w, "original_height": h, "image_rotation": 0,
                "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w,
                          "height": 100 * (y2 - y1) / h, "rotation": 0,
                          "rectanglelabels": [r.action or unlabelled]},
                "score": r.action_score if r.action_score is not None else r.score,
            })
        frame = f"{ref.source_uri}#{ref.frame_index}"
        tasks.append({"data": {"image": image_url + name, "lrihar_frame": frame},
                      "predictions": [{"model_version": "lrihar", "result": result}]})
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1) + "\n")
    offered = "\n".join(f'    <Label value="{_xml_escape(c)}"/>' for c in labels)
    (out / "labeling-config.xml").write_text(
        f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">\n'
        f"{offered}\n  </RectangleLabels>\n</View>\n")
    return out / "tasks.json"


def export_cvat(project: Project, out: Path, frames: Sequence[FrameRef] | None = None,
                errors: list[SourceError] | None = None) -> Path:
    """``annotations.xml`` in CVAT for images 1.1, beside the frame images (``frames``: as for
    :func:`export_labelstudio`)."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    meta = ET.SubElement(ET.SubElement(root, "meta"), "task")
    offered, unlabelled = _labels(project)
    labels = ET.SubElement(meta, "labels")
    for c in offered:
        ET.SubElement(ET.SubElement(labels, "label"), "name").text = c
    for i, (name, _ref, rows, (w, h)) in enumerate(_write_frames(project, out, frames, errors)):
        img = ET.SubElement(root, "image", id=str(i), name=name, width=str(w), height=str(h))
        for r in rows:
            x1, y1, x2, y2 = r.xyxy
            ET.SubElement(img, "box", label=r.action or unlabelled, source="auto", occluded="0", z_order="0",
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
    (or exported) while there is one."""

    def __init__(self, path: Path, outcome: str = "nothing imported",
                 fix: str = "Fix them in the tool (or the file) and import again.") -> None:
        self.path, self.items, self.outcome, self.fix = path, [], outcome, fix

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
            raise BadInputError(f"{self.path}: {self.outcome}; {len(self.items)} bad record(s): "
                                + "; ".join(self.items[:10]) + more + f". {self.fix}")


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
    """The image a Label Studio task names: the path of its URL (or of a local-files URL's ``d``),
    with a video frame's ``#frame=N``."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    path = query["d"][0] if "d" in query else parsed.path
    frame = f"#{parsed.fragment}" if _FRAME_SUFFIX.fullmatch(f"#{parsed.fragment}") else ""
    return unquote(path) + frame


def parse_labelstudio(path: Path) -> dict[str, list[ToolBox]]:
    """Image name (as the task gives it) -> boxes from a Label Studio JSON export.

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
    """Image name (as the file gives it) -> boxes from a CVAT-for-images 1.1 XML (parsed with
    defusedxml)."""
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
            name = _text(img.attrib.get("name"), "attribute name")
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
    """Image name (``file_name``, as given) -> boxes from a COCO detection JSON."""
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
            names[_field(im, "id")] = _text(_field(im, "file_name"), "file_name")
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
MATCHING = ("matched by lrihar's export name, by the frame's file path (whole, or its last folders and "
            "file name), by its file name alone where only one stored frame has it, and a video's "
            "frame as <video>#frame=N")


def import_corrections(project: Project, path: str | Path, tool: str, allow_unknown: bool = False,
                       match_iou: float = 0.5, empty_checked: bool = False) -> ImportSummary:
    """Apply a tool's corrected export to the store (all or nothing); see the module doc.

    ``empty_checked``: an image the file lists with no box marks its frame as holding no hand
    (always so for Label Studio, whose export lists a task only once a person submitted it; CVAT
    and COCO files list every image, looked at or not).
    """
    if tool not in PARSERS:
        raise BadInputError(f"--from: unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    imported = PARSERS[tool](path)
    store = project.store
    allowed, unlabelled = _labels(project)
    frames = _land(path, imported, _StoredFrames(store))
    summary = ImportSummary(images=len(imported))
    summary.unknown_images = sorted(n for n in imported if n not in frames)
    summary.unknown_labels = sorted({b.label for boxes in imported.values() for b in boxes
                                     if b.label not in allowed})
    if (summary.unknown_images or summary.unknown_labels) and not allow_unknown:
        raise BadInputError(
            f"{path}: nothing imported. "
            + (f"Images not in the project ({MATCHING}): {', '.join(summary.unknown_images[:10])}. "
               if summary.unknown_images else "")
            + (f"Labels not in the project ({', '.join(allowed)}): {', '.join(summary.unknown_labels)}. "
               if summary.unknown_labels else "")
            + "Fix the file, add the classes to the project, or pass --allow-unknown to skip them.")
    # Every box as the review page would store it (clipped to its frame), before anything is written.
    problems, clipped = _Problems(path), {}
    for name, boxes in sorted(imported.items()):
        if name in frames:
            frame, kept = frames[name], clipped.setdefault(name, [])
            for b in boxes:
                if b.label in allowed:
                    with problems.record(b.record):
                        kept.append((edits.clip_box(b.xyxy, frame.width, frame.height, b.record), b.label))
    problems.check()
    stored = defaultdict(list)
    for row in store.detections():
        stored[(row.source_uri, row.frame_index)].append(row)
    reviewer = f"import:{tool}"
    with store.transaction() as db:
        action_id = edits.next_action_id(db)

        def log(kind: str, det_id: int, before: dict | None) -> None:
            edits.log_change(db, action_id, reviewer, None, kind, det_id, before, edits.state(db, det_id))

        for name, boxes in clipped.items():
            frame = frames[name]
            rows = stored.get((frame.uri, frame.key[1]), [])
            _apply_frame(db, frame.key, rows, boxes, match_iou, summary, log, unlabelled)
            # The tool's word on the whole frame: a hand clears an earlier "no hand"; no box at all
            # is a person's "no hand" where the file says someone looked.
            empty = not imported[name] and (empty_checked or tool == "labelstudio")
            verdict = None if boxes else "empty" if empty else frame.verdict
            if edits.set_frame_check(db, action_id, reviewer, None, frame.key, verdict):
                summary.checked_empty += verdict == "empty"
    return summary


# -- which stored frame an image of the tool's file is ------------------------------------------
def frame_names(uri: str, index: int, name: str | None) -> list[str]:
    """The file names an image of this stored frame may have outside the store: an image frame's
    file name; a video frame's ``<video file name>#frame=<index>`` (as ``lrihar detections``
    names it); and for both the name lrihar's exports give its picture (Label Studio, CVAT,
    review). ``lrihar evaluate`` matches ground-truth images by these, ``lrihar import`` after
    the export name and the whole path."""
    own = Path(frame_file_name(uri, index, name)).name
    return [own, f"{frame_stem(FrameRef(uri, index, name))}.jpg"]


def _parts(name: str) -> tuple[str, ...]:
    """A name's path parts: ``\\`` is a separator too (a file written on Windows), a video frame's
    ``#frame=0012`` reads as ``#frame=12``."""
    name = _FRAME_SUFFIX.sub(lambda m: f"#frame={int(m.group(1))}", name.strip().replace("\\", "/"))
    return PurePosixPath(name).parts


@dataclass(frozen=True)
class _StoredFrame:
    """A stored frame an import can land on: (source id, frame index), size, source, verdict, and
    its original name (image path, or ``video#frame=N``: :func:`lrihar.dump.frame_file_name`)."""

    key: tuple[int, int]
    uri: str
    width: int
    height: int
    verdict: str | None
    original: str


class _StoredFrames:
    """Every stored frame (with a box or not), found by the name a tool's file gives its image."""

    def __init__(self, store) -> None:
        cur = store.db.execute(
            "SELECT f.source_id, f.frame_index, s.uri, f.name, f.width, f.height, r.verdict FROM frames f"
            " JOIN sources s ON s.id = f.source_id LEFT JOIN frame_reviews r"
            " ON r.source_id = f.source_id AND r.frame_index = f.frame_index ORDER BY s.uri, f.frame_index")
        self.by_export: dict[str, _StoredFrame] = {}
        self.by_file_name: dict[str, list[_StoredFrame]] = defaultdict(list)
        self.parts: dict[tuple[int, int], tuple[str, ...]] = {}
        for sid, index, uri, name, w, h, verdict in cur:
            frame = _StoredFrame((sid, index), uri, w, h, verdict, frame_file_name(uri, index, name))
            own, export = frame_names(uri, index, name)
            self.by_export[export] = frame
            self.by_file_name[own].append(frame)
            self.parts[frame.key] = _parts(frame.original)

    def find(self, name: str) -> list[_StoredFrame]:
        """The frames ``name`` may be, in this order of rules (the first that finds any decides):
        lrihar's export name; the frame's original path, whole; the frames whose path ends in the
        most of the name's last folders and file name (at least one folder: ``images/x.jpg``,
        ``../line/b/x.jpg`` or a path on another machine); the file name alone. One frame: found;
        none: unknown; more: ambiguous."""
        parts = _parts(name)
        if not parts:
            return []
        if parts[-1] in self.by_export:
            return [self.by_export[parts[-1]]]
        same_name = self.by_file_name.get(parts[-1], [])
        whole = [f for f in same_name if self.parts[f.key] == parts]
        if whole:
            return whole
        shared = {f.key: _shared_tail(self.parts[f.key], parts) for f in same_name}
        most = max(shared.values(), default=0)
        return [f for f in same_name if shared[f.key] == most] if most > 1 else same_name


def _shared_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many last parts (file name, then its folders) two paths share."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _land(path: Path, imported: dict[str, list[ToolBox]], stored: _StoredFrames) -> dict[str, _StoredFrame]:
    """The stored frame of each image of the tool's file that has one (see :meth:`_StoredFrames.find`).

    Raises:
        BadInputError: an image name fits two or more stored frames (named with each of them), or
            two images of the file are one stored frame; nothing is imported then.
    """
    found, ambiguous, by_frame = {}, {}, defaultdict(list)
    for name in sorted(imported):
        frames = stored.find(name)
        if len(frames) == 1:
            found[name] = frames[0]
            by_frame[frames[0].key].append(name)
        elif frames:
            ambiguous[name] = frames
    twice = {key: names for key, names in by_frame.items() if len(names) > 1}
    if not (ambiguous or twice):
        return found
    items = [f"{name!r} could be any of {', '.join(f.original for f in frames[:5])}"
             + (f" and {len(frames) - 5} more" if len(frames) > 5 else "")
             for name, frames in ambiguous.items()]
    items += [f"{', '.join(map(repr, names))} are the same frame {found[names[0]].original}"
              for names in twice.values()]
    more = f"; ... and {len(items) - 10} more" if len(items) > 10 else ""
    raise BadInputError(
        f"{path}: nothing imported; {len(items)} image name(s) do not each name one stored frame: "
        + "; ".join(items[:10]) + more + ". Name each image by its full path (as the project stores it) "
        "or by lrihar's export name (`lrihar export DIR -p PROJECT -f labelstudio|cvat` writes them), "
        "and import again.")


def _apply_frame(db, frame: tuple[int, int], rows, boxes, match_iou, summary: ImportSummary, log,
                 unlabelled: str) -> None:
    """Match the tool's ``boxes`` on ``frame`` to its stored live ``rows``; see the module doc. A
    matched box the tool kept as the exports showed it (an unlabelled box as ``unlabelled``) counts
    as confirmed, else as relabelled."""
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
            before = edits.state(db, row.id)
            if iou[matched[j], j] < 0.95:
                edits.set_box(db, row.id, box)
                summary.moved += 1
            if (before["label"] or unlabelled) != label:  # else the tool showed it so, and it stayed
                summary.relabelled += 1
            else:
                summary.confirmed += 1
            edits.set_label(db, row.id, label)
            log("import", row.id, before)
        else:
            log("add", edits.insert_frame_box(db, frame, box, label), None)
            summary.added += 1
    for i, row in enumerate(rows):
        if i not in taken_rows:
            before = edits.state(db, row.id)
            edits.reject(db, row.id)
            log("wrong", row.id, before)
            summary.rejected += 1
