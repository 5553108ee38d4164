"""``lrihar export``: the established dataset as YOLO (detector), ImageFolder (classifier) or COCO.

What goes in: every detection a person did not reject, with its current label (a person's
correction wins over the matcher's); NG crops only with ``include_ng``. Frames are written as
JPEG once; label files, annotation JSON and data.yaml come from supervision's dataset writers.
Class names are data (data.yaml, COCO categories, the manifest), never paths as given: ImageFolder
class folders are made file-safe, and every written path is checked to lie inside ``out``.
The split is by source (see :mod:`lrihar.dataset.split`); a manifest lists counts per class and
split. The same store, options and seed give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.crops import frame_stem, iter_frames, padded_box
from lrihar.dataset.split import SPLITS, check_fractions, split_groups
from lrihar.errors import BadInputError
from lrihar.naming import safe_file_name
from lrihar.paths import inside
from lrihar.project import Project, package_versions
from lrihar.sources import SourceError
from lrihar.store import DetectionRow

FORMATS = ("yolo", "imagefolder", "coco")
NG = "NG"


@dataclass
class ExportSummary:
    """What was written."""

    out: str
    format: str
    images: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    skipped_unlabelled: int = 0
    errors: list[SourceError] = field(default_factory=list)


def _group_of(row: DetectionRow) -> str:
    # Stills of an image folder are independent; video frames are grouped by their video.
    return row.frame_name if row.frame_name else row.source_uri


def _label_of(row: DetectionRow) -> str | None:
    return row.action


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
                   include_ng: bool = False, yolo_classes: str = "hand", padding: float = 0.0,
                   jpeg_quality: int = 95) -> ExportSummary:
    """Write the dataset to ``out`` (which must be empty or absent)."""
    if fmt not in FORMATS:
        raise BadInputError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if yolo_classes not in ("hand", "actions"):
        raise BadInputError("--yolo-classes: use 'hand' (one class, the paper's detector) or 'actions'")
    fractions = check_fractions(fractions)
    out = check_out_folder(out)
    store = project.store
    rows = list(store.detections())
    skipped = sum(1 for r in rows if _label_of(r) is None)
    rows = [r for r in rows if _label_of(r) is not None and (include_ng or _label_of(r) != NG)]
    if not rows:
        raise BadInputError("nothing to export: no labelled detections (run `lrihar classify`, or review)")
    classes = [c.name for c in project.config.classes]
    classes += sorted({_label_of(r) for r in rows} - set(classes) - {NG})
    if include_ng:
        classes.append(NG)
    groups: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        groups[_group_of(r)][_label_of(r)] += 1
    assignment = split_groups(groups, fractions, seed)
    summary = ExportSummary(str(out), fmt, skipped_unlabelled=skipped)
    written_classes = ["hand"] if fmt == "yolo" and yolo_classes == "hand" else classes
    writer_class = _CropWriter if fmt == "imagefolder" else _DetectionWriter
    writer = writer_class(out, fmt, written_classes, jpeg_quality, padding)
    make_folder(out)
    wanted = {r.id for r in rows}
    for frame_rows, image in iter_frames(store, summary.errors, only=wanted):
        split = assignment[_group_of(frame_rows[0])]
        writer.add(split, frame_rows, image)
    writer.finish()
    for split in SPLITS:
        summary.counts[split] = dict(sorted(Counter(_label_of(r) for r in rows
                                                    if assignment[_group_of(r)] == split).items()))
        summary.sources[split] = sorted({r.source_uri for r in rows if assignment[_group_of(r)] == split})
        summary.images[split] = writer.images[split]
    manifest = {
        "format": fmt, "classes": writer.classes, "split": dict(zip(SPLITS, fractions, strict=True)),
        "seed": seed, "include_ng": include_ng, "padding": padding, "counts": summary.counts,
        "images": summary.images, "sources": summary.sources, "skipped_unlabelled": skipped,
        "lrihar": package_versions().get("lrihar"),
        "project": project.config.model_dump(mode="json", by_alias=True),
    }
    if isinstance(writer, _CropWriter):  # class -> folder, as folder names are made file-safe
        manifest["folders"] = writer.folders
    inside(out, out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return summary


class _DetectionWriter:
    """Frames as JPEG under images/<split>/, then supervision writes YOLO labels or COCO JSON."""

    def __init__(self, out: Path, fmt: str, classes: list[str], quality: int, padding: float) -> None:
        self.out, self.fmt, self.classes, self.quality = out, fmt, classes, quality
        self.images: Counter = Counter()
        self.annotations: dict[str, dict[str, object]] = {s: {} for s in SPLITS}

    def add(self, split: str, rows: list[DetectionRow], image: np.ndarray) -> None:
        import supervision as sv
        from PIL import Image

        path = inside(self.out, self.out / "images" / split / f"{frame_stem(rows[0])}.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=self.quality)
        ids = [0 if self.classes == ["hand"] else self.classes.index(_label_of(r)) for r in rows]
        self.annotations[split][str(path)] = sv.Detections(
            xyxy=np.array([r.xyxy for r in rows], dtype=float), class_id=np.array(ids, dtype=int))
        self.images[split] += 1

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

    def __init__(self, out: Path, fmt: str, classes: list[str], quality: int, padding: float) -> None:
        self.out, self.classes, self.quality, self.padding = out, classes, quality, padding
        self.folders = class_folder_names(classes)
        self.images: Counter = Counter()

    def _folder(self, split: str, name: str) -> Path:
        folder = inside(self.out, self.out / split / self.folders[name])
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, split: str, rows: list[DetectionRow], image: np.ndarray) -> None:
        from PIL import Image

        for row in rows:
            x1, y1, x2, y2 = padded_box(row.xyxy, self.padding, image.shape[1], image.shape[0])
            if x2 <= x1 or y2 <= y1:
                continue
            path = inside(self.out, self._folder(split, _label_of(row)) / f"{frame_stem(row)}_{row.id}.jpg")
            Image.fromarray(image[y1:y2, x1:x2]).save(path, quality=self.quality)
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
