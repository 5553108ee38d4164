"""``lrihar export``: the established dataset as YOLO (detector), ImageFolder (classifier) or COCO.

What goes in: every detection a person did not reject (boxes a person drew included, moved boxes
at their corrected corners). A *hand* set (YOLO's default; COCO's on a project with no action
labels yet) has one class, ``hand``, and needs no labels at all. An *actions* set uses each box's
current label (a person's correction wins over the matcher's), NG only with ``include_ng``.
Detector sets may add a seeded share of the frames the detector found empty, as background
images with empty label files. Frames are written as JPEG once; label files, annotation JSON and
data.yaml come from supervision's dataset writers.
Class names are data (data.yaml, COCO categories, the manifest), never paths as given: ImageFolder
class folders are made file-safe, and every written path is checked to lie inside ``out``.
The split is by source (see :mod:`lrihar.dataset.split`); a manifest lists counts per class and
split. The same store, options and seed give the same bytes.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.boxes import crop
from lrihar.classes import HAND, NG
from lrihar.crops import FrameRef, frame_stem, iter_frames, read_frames
from lrihar.dataset.split import SPLITS, check_fractions, split_groups
from lrihar.errors import BadInputError
from lrihar.naming import safe_file_name
from lrihar.paths import inside
from lrihar.project import Project
from lrihar.sources import SourceError
from lrihar.store import DetectionRow
from lrihar.versions import package_versions

FORMATS = ("yolo", "imagefolder", "coco")
CLASS_SCHEMES = (HAND, "actions")
_BACKGROUND = None  # the split's stratum for a frame with no box (never a class name)


@dataclass
class ExportSummary:
    """What was written."""

    out: str
    format: str
    scheme: str = HAND
    classes: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    negatives: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    skipped_unlabelled: int = 0
    errors: list[SourceError] = field(default_factory=list)


def _group_of(kind: str, uri: str, name: str | None) -> str:
    # Stills of an image folder are independent; frames of a video or a stream (even when kept
    # as JPEG files) are near-duplicates, so they stay together with their source.
    return name if kind == "images" and name else uri


def _has_action(row: DetectionRow) -> bool:
    # "hand" (what a person calls a box in a project with no action classes) is no action either
    return row.action not in (None, NG, HAND)


def class_scheme(fmt: str, scheme: str | None, rows: list[DetectionRow]) -> str:
    """``hand`` or ``actions`` for this export: ``scheme`` as given, checked against the format,
    or by default ``hand`` for YOLO, ``actions`` for ImageFolder, and for COCO ``actions`` once
    some box carries an action label (else ``hand``)."""
    if scheme is None:
        if fmt == "coco":
            return "actions" if any(_has_action(r) for r in rows) else HAND
        return HAND if fmt == "yolo" else "actions"
    if scheme not in CLASS_SCHEMES:
        raise BadInputError(f"--classes: use 'hand' (one class, a hand detector set) or 'actions' "
                            f"(one class per action), not {scheme!r}")
    if fmt == "imagefolder" and scheme == HAND:
        raise BadInputError("--classes hand: an ImageFolder set is cut into action classes; for a hand "
                            "detector set use -f yolo or -f coco")
    return scheme


def check_negatives(fraction: float, fmt: str) -> float:
    """``fraction`` if it is a share (0-1) of the empty frames usable for ``fmt``, else
    :class:`BadInputError`."""
    if not 0 <= fraction <= 1:  # NaN fails too
        raise BadInputError(f"--negatives: give the share of empty frames to add, from 0 to 1, "
                            f"not {fraction}")
    if fraction and fmt == "imagefolder":
        raise BadInputError("--negatives: frames without a box only go into detector sets (-f yolo or "
                            "-f coco), not into ImageFolder crops")
    return float(fraction)


def negative_frames(project: Project, boxed: set[tuple[str, int]], fraction: float,
                    seed: int, uris: set[str] | None = None) -> list[tuple[str, FrameRef]]:
    """A seeded ``fraction`` (rounded) of the frames the detector found empty and that hold no box
    now, as (source kind, frame), in store order (``uris``: of these sources only). Frames of a
    live stream with no box were never kept, so they cannot be read again and are not candidates."""
    pool = [(kind, FrameRef(uri, rec.index, rec.name)) for uri, kind, rec in project.store.frames()
            if rec.status == "empty" and (uri, rec.index) not in boxed and (uris is None or uri in uris)
            and not (kind == "stream" and rec.name is None)]
    picked = random.Random(seed).sample(range(len(pool)), int(fraction * len(pool) + 0.5))
    return [pool[i] for i in sorted(picked)]


def check_out_folder(out: str | Path) -> Path:
    """``out`` as a path if an export may write there (absent, or an empty folder), else
    :class:`BadInputError` saying why; shared by every ``lrihar export`` format."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise BadInputError(f"{out}: is a file, not a folder; export into a new (or empty) folder")
        if out.is_dir() and any(out.iterdir()):
            raise BadInputError(f"{out}: not empty; export into a new folder so nothing is overwritten")
    except OSError as exc:
        raise BadInputError(f"{out}: cannot be read ({exc.strerror or exc})") from None
    return out


def make_folder(out: Path) -> None:
    """Create the export folder (and its parents), or :class:`BadInputError` naming it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"{out}: cannot create the export folder ({exc.strerror or exc})") from None


def class_folder_names(classes: list[str]) -> dict[str, str]:
    """Class name -> its ImageFolder folder name (:func:`~lrihar.naming.safe_file_name`).

    Refused when two classes would share a folder (also when only letter case differs, which
    merges them on Windows and macOS file systems), since that would mix their crops.
    """
    folders = {name: safe_file_name(name) for name in classes}
    seen: dict[str, str] = {}
    for name, folder in folders.items():
        other = seen.setdefault(folder.casefold(), name)
        if other != name:
            raise BadInputError(f"classes {other!r} and {name!r} would share the folder {folder!r}; "
                                "rename one of them")
    return folders


def export_dataset(project: Project, out: str | Path, fmt: str = "yolo",
                   fractions: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0,
                   include_ng: bool = False, yolo_classes: str | None = None, padding: float = 0.0,
                   jpeg_quality: int = 95, negatives: float = 0.0,
                   posts: list[str] | None = None) -> ExportSummary:
    """Write the dataset to ``out`` (which must be empty or absent).

    Args:
        yolo_classes: ``hand`` or ``actions`` for YOLO and COCO (the CLI's ``--classes``); None
            picks by format (see :func:`class_scheme`).
        include_ng: also export boxes labelled NG (actions sets; a hand set has them anyway:
            an NG box is still a hand).
        negatives: share (0-1) of the empty frames to add as background images (detector sets).
        posts: only the frames of these posts (``--line`` / ``--post``); their classes are the
            set's. None: every frame.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    negatives = check_negatives(negatives, fmt)
    fractions = check_fractions(fractions)
    out = check_out_folder(out)
    store = project.store
    boxes = list(store.detections())
    at = None
    if posts is not None:
        from lrihar.lines import source_uris_at

        at = source_uris_at(store, posts)
        boxes = [r for r in boxes if r.source_uri in at]
    scheme = class_scheme(fmt, yolo_classes, boxes)
    if scheme == HAND:
        rows, skipped, classes = boxes, 0, [HAND]
        if not rows:
            raise BadInputError("nothing to export: the project holds no box that is not marked wrong "
                                "(run `lrihar annotate`, or draw boxes in `lrihar review`)")
    else:
        skipped = sum(1 for r in boxes if r.action is None)
        rows = [r for r in boxes if r.action is not None and (include_ng or r.action != NG)]
        if not rows:
            raise BadInputError(
                "nothing to export as action classes: no labelled detections (run `lrihar classify`, "
                "or label boxes in `lrihar review`); for a hand detector set, which needs no labels, "
                "use `-f yolo --yolo-classes hand`")
        if posts is None:
            classes = project.classes
        else:
            from lrihar.lines import project_layout

            classes = project_layout(project.config).classes(posts)
        classes += sorted({r.action for r in rows} - set(classes) - {NG})
        if include_ng:
            classes.append(NG)
    label_of: Callable[[DetectionRow], str] = (lambda r: HAND) if scheme == HAND else (lambda r: r.action)
    empty = negative_frames(project, {(r.source_uri, r.frame_index) for r in boxes}, negatives, seed, at)
    groups: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        groups[_group_of(r.source_kind, r.source_uri, r.frame_name)][label_of(r)] += 1
    empty_groups = {ref: _group_of(kind, ref.source_uri, ref.frame_name) for kind, ref in empty}
    for group in empty_groups.values():
        groups[group][_BACKGROUND] += 1  # spread background images over the splits like a class
    assignment = split_groups(groups, fractions, seed)
    split_of_row = {r.id: assignment[_group_of(r.source_kind, r.source_uri, r.frame_name)] for r in rows}
    summary = ExportSummary(str(out), fmt, scheme, classes, skipped_unlabelled=skipped)
    writer_class = _CropWriter if fmt == "imagefolder" else _DetectionWriter
    writer = writer_class(out, fmt, classes, jpeg_quality, padding, label_of)
    make_folder(out)
    for frame_rows, image in iter_frames(store, summary.errors, only=set(split_of_row)):
        writer.add(split_of_row[frame_rows[0].id], frame_rows[0], frame_rows, image)
    for ref, image in read_frames((ref for _, ref in empty), summary.errors):
        writer.add(assignment[empty_groups[ref]], ref, [], image)
    writer.finish()
    for split in SPLITS:
        summary.counts[split] = dict(sorted(Counter(label_of(r) for r in rows
                                                    if split_of_row[r.id] == split).items()))
        summary.sources[split] = sorted({r.source_uri for r in rows if split_of_row[r.id] == split}
                                        | {ref.source_uri for ref in empty_groups
                                           if assignment[empty_groups[ref]] == split})
        summary.images[split] = writer.images[split]
        summary.negatives[split] = writer.negatives[split]
    manifest = {
        "format": fmt, "classes": writer.classes, "split": dict(zip(SPLITS, fractions, strict=True)),
        "seed": seed, "include_ng": include_ng, "padding": padding, "counts": summary.counts,
        "images": summary.images, "sources": summary.sources, "skipped_unlabelled": skipped,
        "negatives": {"fraction": negatives, "images": summary.negatives},
        "lrihar": package_versions().get("lrihar"),
        "project": project.config.model_dump(mode="json", by_alias=True),
    }
    if posts is not None:  # not keyed when unfiltered, so such a manifest stays as it was
        manifest["posts"] = posts
    if isinstance(writer, _CropWriter):  # class -> folder, as folder names are made file-safe
        manifest["folders"] = writer.folders
    inside(out, out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return summary


class _DetectionWriter:
    """Frames as JPEG under images/<split>/, then supervision writes YOLO labels or COCO JSON."""

    def __init__(self, out: Path, fmt: str, classes: list[str], quality: int, padding: float,
                 label_of: Callable[[DetectionRow], str]) -> None:
        self.out, self.fmt, self.classes, self.quality, self.label_of = out, fmt, classes, quality, label_of
        self.images: Counter = Counter()
        self.negatives: Counter = Counter()
        self.annotations: dict[str, dict[str, object]] = {s: {} for s in SPLITS}

    def add(self, split: str, frame: DetectionRow | FrameRef, rows: list[DetectionRow],
            image: np.ndarray) -> None:
        """One frame and its boxes (none: a background image with an empty label file)."""
        import supervision as sv
        from PIL import Image

        path = inside(self.out, self.out / "images" / split / f"{frame_stem(frame)}.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=self.quality)
        ids = [self.classes.index(self.label_of(r)) for r in rows]
        self.annotations[split][str(path)] = sv.Detections(
            xyxy=np.array([r.xyxy for r in rows], dtype=float).reshape(-1, 4),
            class_id=np.array(ids, dtype=int))
        self.images[split] += 1
        self.negatives[split] += not rows

    def finish(self) -> None:
        import supervision as sv

        for split in SPLITS:
            ann = self.annotations[split]
            ds = sv.DetectionDataset(classes=self.classes, images=sorted(ann), annotations=ann)
            if self.fmt == "yolo":
                labels = inside(self.out, self.out / "labels" / split)
                labels.mkdir(parents=True, exist_ok=True)
                ds.as_yolo(annotations_directory_path=str(labels))
            else:
                path = inside(self.out, self.out / f"{split}.json")
                ds.as_coco(annotations_path=str(path))
                _tidy_coco(path, f"images/{split}/")
        if self.fmt == "yolo":
            import yaml

            # No absolute "path": ultralytics then resolves the splits from this file's folder,
            # so the set can be moved and two exports of the same data are byte-identical.
            # Class names are data here, not paths: written as they are.
            data = {"train": "images/train", "val": "images/val", "test": "images/test",
                    "names": dict(enumerate(self.classes))}
            inside(self.out, self.out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


class _CropWriter:
    """Crops per class: <split>/<class folder>/<frame>_<id>.jpg (torchvision ImageFolder layout);
    class folders are named by :func:`class_folder_names`."""

    def __init__(self, out: Path, fmt: str, classes: list[str], quality: int, padding: float,
                 label_of: Callable[[DetectionRow], str]) -> None:
        self.out, self.classes, self.quality, self.padding = out, classes, quality, padding
        self.label_of = label_of
        self.folders = class_folder_names(classes)
        self.images: Counter = Counter()
        self.negatives: Counter = Counter()  # always empty: crops need a box

    def _folder(self, split: str, name: str) -> Path:
        folder = inside(self.out, self.out / split / self.folders[name])
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, split: str, frame: DetectionRow | FrameRef, rows: list[DetectionRow],
            image: np.ndarray) -> None:
        from PIL import Image

        for row in rows:
            cut = crop(image, row.xyxy, self.padding)
            if not cut.size:
                continue
            name = f"{frame_stem(row)}_{row.id}.jpg"
            path = inside(self.out, self._folder(split, self.label_of(row)) / name)
            Image.fromarray(cut).save(path, quality=self.quality)
            self.images[split] += 1

    def finish(self) -> None:
        for split in SPLITS:  # every class folder exists in every split, even if empty
            for name in self.classes:
                self._folder(split, name)


def _tidy_coco(path: Path, prefix: str) -> None:
    """supervision stamps a CC BY 4.0 licence on every image (the user's data carries no such
    licence) and the export time as ``date_captured`` (wrong, and it breaks byte-identical
    exports): drop both; make ``file_name`` resolve from the JSON's folder; sort keys."""
    doc = json.loads(path.read_text())
    doc.pop("licenses", None)
    for image in doc.get("images", []):
        image.pop("license", None)
        image.pop("date_captured", None)
        image["file_name"] = prefix + image["file_name"]
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
