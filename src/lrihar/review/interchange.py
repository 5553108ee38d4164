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
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from lrihar.crops import frame_stem, iter_frames
from lrihar.errors import BadInputError
from lrihar.evaluate.metrics import box_iou
from lrihar.project import Project
from lrihar.review import actions

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
    return [c.name for c in project.config.classes]


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
def _name_from_url(url: str) -> str:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    path = query["d"][0] if "d" in query else parsed.path
    return Path(unquote(path)).name


def parse_labelstudio(path: Path) -> dict[str, list[tuple[list[float], str]]]:
    """Image file name -> [(xyxy in pixels, label)] from a Label Studio JSON export.

    Only tasks a person annotated count (their latest annotation); tasks still holding just
    our predictions were not reviewed and are left alone.
    """
    try:
        tasks = json.loads(path.read_text())
        out: dict[str, list] = {}
        for task in tasks:
            name = _name_from_url(task["data"]["image"])
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            if not annotations:  # nobody looked at this task: its predictions are not a review
                continue
            boxes = []
            for r in annotations[-1]["result"]:
                if r.get("type") != "rectanglelabels":
                    continue
                v, w, h = r["value"], r["original_width"], r["original_height"]
                x1, y1 = v["x"] * w / 100, v["y"] * h / 100
                boxes.append(([x1, y1, x1 + v["width"] * w / 100, y1 + v["height"] * h / 100],
                              v["rectanglelabels"][0]))
            out[name] = boxes
        return out
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadInputError(f"{path}: not a Label Studio JSON export "
                            f"({exc.__class__.__name__}: {exc})") from None


def parse_cvat(path: Path) -> dict[str, list[tuple[list[float], str]]]:
    """Image file name -> boxes from a CVAT-for-images 1.1 XML (parsed with defusedxml)."""
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    try:
        root = SafeET.parse(path).getroot()
        out = {}
        for img in root.iter("image"):
            out[Path(img.attrib["name"]).name] = [
                ([float(b.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr")], b.attrib["label"])
                for b in img.iter("box")]
        if root.tag != "annotations":
            raise ValueError("root element is not <annotations>")
        return out
    except (OSError, ValueError, KeyError, ET.ParseError, DefusedXmlException) as exc:
        raise BadInputError(f"{path}: not a CVAT for images 1.1 XML "
                            f"({exc.__class__.__name__}: {exc})") from None


def parse_coco(path: Path) -> dict[str, list[tuple[list[float], str]]]:
    """Image file name -> boxes from a COCO detection JSON."""
    try:
        doc = json.loads(path.read_text())
        cats = {c["id"]: c["name"] for c in doc["categories"]}
        names = {im["id"]: Path(im["file_name"]).name for im in doc["images"]}
        out: dict[str, list] = {n: [] for n in names.values()}
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            out[names[a["image_id"]]].append(([x, y, x + w, y + h], cats[a["category_id"]]))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: not a COCO detection JSON ({exc.__class__.__name__}: {exc})") from None


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
    frames: dict[str, tuple[int, int]] = {}
    for row in store.detections(include_rejected=True):
        frames.setdefault(f"{frame_stem(row)}.jpg", (row.source_uri, row.frame_index))
    summary = ImportSummary(images=len(imported))
    summary.unknown_images = sorted(n for n in imported if n not in frames)
    summary.unknown_labels = sorted({lab for boxes in imported.values() for _, lab in boxes
                                     if lab not in (*classes, NG)})
    if (summary.unknown_images or summary.unknown_labels) and not allow_unknown:
        raise BadInputError(
            f"{path}: nothing imported. "
            + (f"Images not in the project: {', '.join(summary.unknown_images[:10])}. "
               if summary.unknown_images else "")
            + (f"Labels not in the project ({', '.join(classes)}, NG): {', '.join(summary.unknown_labels)}. "
               if summary.unknown_labels else "")
            + "Fix the file, add the classes to the project, or pass --allow-unknown to skip them.")
    stored = defaultdict(list)
    for row in store.detections():
        stored[(row.source_uri, row.frame_index)].append(row)
    reviewer = f"import:{tool}"
    with store.transaction() as db:
        action_id = actions.next_action_id(db)

        def log(kind: str, det_id: int, before: dict | None) -> None:
            actions.log_change(db, action_id, reviewer, None, kind, det_id, before, actions.state(db, det_id))

        for name, boxes in sorted(imported.items()):
            if name not in frames:
                continue
            boxes = [(b, lab) for b, lab in boxes if lab in (*classes, NG)]
            rows = stored.get(frames[name], [])
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
