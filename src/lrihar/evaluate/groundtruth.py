"""Ground truth from COCO JSON or a YOLO folder, read with supervision's dataset loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.errors import BadInputError


@dataclass(frozen=True)
class GroundTruth:
    """Boxes per image: ``boxes[path]`` is (N, 4) xyxy, ``labels[path]`` their class names."""

    images: list[str]
    boxes: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    classes: list[str]

    def by_name(self) -> dict[str, str]:
        """Image file name -> full path (to match stored frames by name)."""
        return {Path(p).name: p for p in self.images}


def load_ground_truth(gt: str | Path, images: str | Path | None = None) -> GroundTruth:
    """Read ``gt``: a COCO JSON file (images default to its folder, or ``images``) or a YOLO
    dataset folder / ``data.yaml`` (with ``images/`` and ``labels/``).

    Raises:
        BadInputError: the file or folder is missing or not in either format.
    """
    import supervision as sv

    gt = Path(gt)
    if not gt.exists():
        raise BadInputError(f"{gt}: ground truth not found (a COCO .json or a YOLO dataset folder)")
    try:
        if gt.suffix.lower() == ".json":
            root = Path(images) if images else gt.parent
            ds = sv.DetectionDataset.from_coco(str(root), str(gt))
        else:
            data_yaml = gt if gt.suffix.lower() in (".yaml", ".yml") else gt / "data.yaml"
            base = data_yaml.parent
            ds = sv.DetectionDataset.from_yolo(str(Path(images) if images else base / "images"),
                                               str(base / "labels"), str(data_yaml))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{gt}: cannot read ground truth ({exc.__class__.__name__}: {exc})") from None
    boxes, labels = {}, {}
    for path, _image, dets in ds:
        boxes[path] = dets.xyxy.astype(float).reshape(-1, 4)
        labels[path] = [ds.classes[c] for c in dets.class_id] if dets.class_id is not None else []
    if not boxes:
        raise BadInputError(f"{gt}: no annotated images found")
    return GroundTruth(list(boxes), boxes, labels, list(ds.classes))
