"""``lrihar evaluate``: the project's stored detections and labels against ground truth.

Detection: stored frames are matched to ground-truth images by file name; eq. 3 / eq. 4 at each
T_IoU plus precision / recall / F1 at 0.5, AP50 and mAP50-95.
Classification: each stored box is matched to the ground-truth box it overlaps most (IoU ≥ 0.5,
highest score first, one to one); its automatic label is compared with the ground-truth class.
Where a person reviewed labels in the store, those serve as truth too. Confusion matrices are
made per inspection post and for the whole line.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.evaluate.confusion import Confusion
from lrihar.evaluate.groundtruth import GroundTruth
from lrihar.evaluate.metrics import box_iou, detection_scores, standard_metrics
from lrihar.store import DetectionRow, Store

LINE = "(line)"


def _rows_by_image(store: Store) -> dict[str, list[DetectionRow]]:
    out: dict[str, list[DetectionRow]] = defaultdict(list)
    for row in store.detections():
        if row.frame_name:
            out[Path(row.frame_name).name].append(row)
    return out


def _stored_image_names(store: Store) -> set[str]:
    return {Path(rec.name).name for _, _, rec in store.frames() if rec.name}


def detection_report(store: Store, gt: GroundTruth, ious=(0.3, 0.4)) -> dict[str, Any]:
    """Detection metrics over the ground-truth images that the project processed."""
    rows = _rows_by_image(store)
    stored = _stored_image_names(store)
    full = gt.by_name()
    names = [n for n in full if n in stored]
    if not names:
        return {"matched_images": 0, "ground_truth_images": len(gt.images),
                "note": "no ground-truth image is among the project's frames (matched by file name)"}
    preds = [np.array([r.xyxy for r in rows.get(n, [])], float).reshape(-1, 4) for n in names]
    scores = [np.array([r.score for r in rows.get(n, [])], float) for n in names]
    gts = [gt.boxes[full[n]] for n in names]
    out: dict[str, Any] = {"matched_images": len(names), "ground_truth_images": len(gt.images),
                           "predictions": int(sum(len(p) for p in preds)),
                           "ground_truth_boxes": int(sum(len(g) for g in gts))}
    out["paper"] = {str(t): detection_scores(preds, gts, t).as_dict() for t in ious}
    out["standard"] = standard_metrics(preds, scores, gts)
    return out


def _post_of(store: Store) -> dict[str, str]:
    return {uri: post or LINE for uri, post in store.db.execute("SELECT uri, post FROM sources")}


def classification_pairs(store: Store, gt: GroundTruth | None) -> dict[str, list[tuple[str, str]]]:
    """(truth, automatic label) per post, from ground truth and from reviewed labels."""
    posts = _post_of(store)
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    labels = store.labels()
    seen: set[int] = set()
    if gt is not None and len(set(gt.classes)) > 1:
        full = gt.by_name()
        for name, rows in _rows_by_image(store).items():
            if name not in full:
                continue
            rows = [r for r in rows if r.id in labels]
            g = gt.boxes[full[name]]
            if not rows or not len(g):
                continue
            iou = box_iou(np.array([r.xyxy for r in rows]), g)
            taken: set[int] = set()
            for i in np.argsort([-r.score for r in rows]):
                free = iou[i].copy()
                free[list(taken)] = -1.0  # one prediction per ground-truth box
                j = int(np.argmax(free))
                if free[j] >= 0.5:
                    taken.add(j)
                    lab = labels[rows[i].id]
                    pairs[posts.get(rows[i].source_uri, LINE)].append(
                        (gt.labels[full[name]][j], lab["auto_label"] or lab["label"]))
                    seen.add(rows[i].id)
    # Reviewed labels vs what the matcher said; boxes a person drew were never matched: left out.
    reviewed = {i: v for i, v in labels.items()
                if v["provenance"] == "corrected" and v["auto_label"] is not None and i not in seen}
    if reviewed:
        uri_of = dict(store.db.execute("SELECT d.id, s.uri FROM detections d JOIN sources s "
                                       "ON s.id = d.source_id").fetchall())
        for det_id, v in reviewed.items():
            pairs[posts.get(uri_of[det_id], LINE)].append((v["label"], v["auto_label"]))
    return pairs


def confusions(store: Store, gt: GroundTruth | None, classes: list[str]) -> dict[str, Confusion]:
    """One confusion matrix per post with truth available, plus the whole line."""
    pairs = classification_pairs(store, gt)
    out = {post: Confusion.from_labels([t for t, _ in p], [a for _, a in p], classes)
           for post, p in sorted(pairs.items())}
    if len(out) > 1 or (out and LINE not in out):
        everything = [x for p in pairs.values() for x in p]
        out[LINE] = Confusion.from_labels([t for t, _ in everything], [a for _, a in everything], classes)
    return out


def evaluate_project(project, gt: GroundTruth | None = None, ious=(0.3, 0.4),
                     rates=None, posts_per_line: int = 20) -> dict[str, Any]:
    """Every figure of ``lrihar evaluate``: detection, classification, annotation cost."""
    from lrihar.classify.templates import class_folders, discover_templates
    from lrihar.errors import BadInputError
    from lrihar.evaluate.cost import CostRates, annotation_cost

    store = project.store
    classes = [c.name for c in project.config.classes]
    try:
        n_templates = len(discover_templates(class_folders(project.config)))
    except BadInputError:
        n_templates = 0
    out: dict[str, Any] = {"project": str(project.root), "counts": store.counts()}
    if gt is not None:
        out["detection"] = detection_report(store, gt, ious)
    conf = confusions(store, gt, classes)
    out["classification"] = {post: {"classes": c.classes, "counts": c.counts.tolist(), **c.summary()}
                             for post, c in conf.items()}
    out["cost"] = annotation_cost(store, max(len(classes), 1), n_templates, rates or CostRates(),
                                  posts_per_line)
    return out
