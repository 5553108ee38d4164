"""``lrihar evaluate``: the project's stored detections and labels against ground truth.

Detection: stored frames are matched to ground-truth images by file name (a video frame by
``<video>#frame=N`` or its export name, :func:`frame_names`); eq. 3 / eq. 4 at each T_IoU plus
precision / recall / F1 at 0.5, AP50 and mAP50-95, and eq. 3 / eq. 4 per ground-truth class
(:func:`scores_by_class`) and per source, to see where the detector falls short.
Classification: each stored box is matched to the ground-truth box it overlaps most (IoU ≥ 0.5,
highest score first, one to one); its automatic label is compared with the ground-truth class
(a ground-truth class the project does not have is NG), where some ground-truth classes are the
project's. Where a person reviewed labels in the store, those serve as truth too. Confusion
matrices are made per inspection post and for the whole line.
Work owed: with the same matching, the missed hands, false boxes and wrong labels left on the
checked frames feed the cost table; the frames with the most of them feed the report's pictures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.boxes import box_iou
from lrihar.classes import NG
from lrihar.dump import frame_file_name
from lrihar.evaluate.confusion import Confusion
from lrihar.evaluate.groundtruth import GroundTruth
from lrihar.evaluate.metrics import DetectionScores, detection_scores, standard_metrics
from lrihar.lines import class_folders
from lrihar.review.interchange import frame_names  # the one rule, shared with `lrihar import`
from lrihar.store import DetectionRow, Store

LINE = "(line)"
# A stored box and a ground-truth box are the same object at IoU >= 0.5 (COCO's usual threshold):
# below it a person would redraw the box. Used for labels and for the work still owed.
MATCH_IOU = 0.5


@dataclass(frozen=True)
class _Matched:
    """A stored frame whose ground-truth image was found: its source, boxes and truth's path."""

    uri: str
    kind: str
    post: str
    rec: Any
    rows: list[DetectionRow]
    path: str


def _matched_frames(store: Store, gt: GroundTruth, uris: set[str] | None = None) -> list[_Matched]:
    """Every stored frame (``uris``: of these sources) that is a ground-truth image, in store
    order, with its stored boxes (rejected ones left out)."""
    full = gt.by_name()
    posts = _post_of(store)
    rows: dict[tuple[str, int], list[DetectionRow]] = defaultdict(list)
    for row in store.detections():
        rows[(row.source_uri, row.frame_index)].append(row)
    out = []
    for uri, kind, rec in store.frames():
        if uris is not None and uri not in uris:
            continue
        path = next((full[n] for n in frame_names(uri, rec.index, rec.name) if n in full), None)
        if path is not None:
            out.append(_Matched(uri, kind, posts.get(uri, LINE), rec, rows.get((uri, rec.index), []), path))
    return out


def _xyxy(rows: list[DetectionRow]) -> np.ndarray:
    return np.array([r.xyxy for r in rows], float).reshape(-1, 4)


def detection_report(store: Store, gt: GroundTruth, ious=(0.3, 0.4), uris: set[str] | None = None,
                     ) -> dict[str, Any]:
    """Detection metrics over the stored frames that are ground-truth images (``uris``: of these
    sources only): eq. 3 / eq. 4 and the standard figures over them all, and eq. 3 / eq. 4 per
    ground-truth class (``by_class``, see :func:`scores_by_class`) and per source (``by_source``);
    ``no_ground_truth_box``: the images showing no hand and the (false) boxes on them, which
    count in the overall accuracy but in no class's."""
    frames = _matched_frames(store, gt, uris)
    if not frames:
        return {"matched_images": 0, "ground_truth_images": len(gt.images),
                "note": "no ground-truth image is among the project's frames (matched by file name)"}
    preds = [_xyxy(f.rows) for f in frames]
    scores = [np.array([r.score for r in f.rows], float) for f in frames]
    gts = [gt.boxes[f.path] for f in frames]
    out: dict[str, Any] = {"matched_images": len(frames), "ground_truth_images": len(gt.images),
                           "predictions": int(sum(len(p) for p in preds)),
                           "ground_truth_boxes": int(sum(len(g) for g in gts))}
    out["paper"] = {str(t): detection_scores(preds, gts, t).as_dict() for t in ious}
    out["standard"] = standard_metrics(preds, scores, gts)
    out["by_class"] = scores_by_class(preds, gts, [gt.labels[f.path] for f in frames],
                                      gt.classes, ious)
    empty = [k for k, g in enumerate(gts) if not len(g)]  # in no class's accuracy: all their boxes false
    out["no_ground_truth_box"] = {"images": len(empty), "predictions": int(sum(len(preds[k]) for k in empty))}
    by_source: dict[str, list[int]] = defaultdict(list)
    for k, f in enumerate(frames):
        by_source[f.uri].append(k)
    out["by_source"] = {}
    for uri, ks in by_source.items():
        p, g = [preds[k] for k in ks], [gts[k] for k in ks]
        out["by_source"][uri] = {"kind": frames[ks[0]].kind, "post": frames[ks[0]].post, "images": len(ks),
                                 "ground_truth_boxes": int(sum(len(b) for b in g)),
                                 "predictions": int(sum(len(b) for b in p)),
                                 "paper": {str(t): detection_scores(p, g, t).as_dict() for t in ious}}
    return out


def scores_by_class(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], labels: Sequence[Sequence[str]],
                    classes: Sequence[str] = (), ious=(0.3, 0.4)) -> dict[str, dict[str, Any]]:
    """Eq. 3 / eq. 4 per ground-truth class, for class-agnostic detections (``preds[k]``, ``gts[k]``
    and ``labels[k]``: image k's boxes and its truth's classes).

    Recall of class c: eq. 3 over the ground-truth boxes of class c. Each box is judged as in
    the overall figure, by its best IoU with any detection of its image; that does not depend on
    the image's other ground-truth boxes, so matching against all of them and then taking the
    boxes of class c gives the same hits, and the classes' hits add up to the overall ones.
    Accuracy of class c: a detection has no class, so eq. 4 is taken over the images holding a
    box of class c: the share of their detections whose best IoU with any ground-truth box of
    the image (of any class) is at least T_IoU. An image holding two classes counts for both.
    Classes in the order of ``classes``, then any other label; a class with no box on these images
    is left out. Each entry: ``boxes`` and ``images`` (the n behind the rates) and per T_IoU the
    :class:`~lrihar.evaluate.metrics.DetectionScores` (``gt_*`` the class's boxes, ``pred_*`` the
    detections on its images).
    """
    present = list(dict.fromkeys(c for image in labels for c in image))
    out: dict[str, dict[str, Any]] = {}
    for c in [*(c for c in classes if c in present), *(c for c in present if c not in classes)]:
        ks = [k for k, image in enumerate(labels) if c in image]
        mine = [gts[k][[label == c for label in labels[k]]] for k in ks]
        p, g = [preds[k] for k in ks], [gts[k] for k in ks]
        paper = {}
        for t in ious:
            recall = detection_scores(p, mine, t)  # the class's boxes, against every detection
            accuracy = detection_scores(p, g, t)  # the detections of its images, against all truth
            paper[str(t)] = DetectionScores(t, recall.recall, accuracy.accuracy, recall.gt_hit,
                                            recall.gt_total, accuracy.pred_hit, accuracy.pred_total).as_dict()
        out[c] = {"boxes": int(sum(len(m) for m in mine)), "images": len(ks),
                  "predictions": int(sum(len(x) for x in p)), "paper": paper}
    return out


def _post_of(store: Store) -> dict[str, str]:
    return {uri: post or LINE for uri, post in store.db.execute("SELECT uri, post FROM sources")}


def match_boxes(preds: np.ndarray, scores: Sequence[float], gts: np.ndarray,
                iou_min: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one (prediction, ground truth) pairs: highest score first takes the free
    ground-truth box it overlaps most, if that IoU is at least ``iou_min``."""
    iou = box_iou(preds, gts)
    pairs: list[tuple[int, int]] = []
    if not iou.size:
        return pairs
    taken: set[int] = set()
    for i in np.argsort([-s for s in scores], kind="stable"):
        free = iou[i].copy()
        free[list(taken)] = -1.0
        j = int(np.argmax(free))
        if free[j] >= iou_min:
            taken.add(j)
            pairs.append((int(i), j))
    return pairs


@dataclass(frozen=True)
class FrameCheck:
    """One stored frame against its ground-truth image (boxes matched at :data:`MATCH_IOU`)."""

    post: str
    path: str
    status: str
    rows: list[DetectionRow]
    gt_boxes: np.ndarray
    gt_labels: list[str]
    pairs: list[tuple[int, int]]
    image_file: bool = True  # False: a video frame (``path`` is ``video#frame=N``), no picture drawn

    @property
    def missed(self) -> list[int]:
        """Ground-truth boxes no stored box matches: a person must draw them."""
        hit = {j for _, j in self.pairs}
        return [j for j in range(len(self.gt_boxes)) if j not in hit]

    @property
    def false(self) -> list[int]:
        """Stored boxes matching no ground-truth box: a person must delete them."""
        hit = {i for i, _ in self.pairs}
        return [i for i in range(len(self.rows)) if i not in hit]


def check_frames(store: Store, gt: GroundTruth, uris: set[str] | None = None) -> list[FrameCheck]:
    """Every stored frame (``uris``: of these sources) that is a ground-truth image (see
    :func:`frame_names`), with its boxes matched."""
    checks = []
    for f in _matched_frames(store, gt, uris):
        pairs = match_boxes(_xyxy(f.rows), [r.score for r in f.rows], gt.boxes[f.path])
        checks.append(FrameCheck(f.post, frame_file_name(f.uri, f.rec.index, f.rec.name), f.rec.status,
                                 f.rows, gt.boxes[f.path], gt.labels[f.path], pairs, f.rec.name is not None))
    return checks


def project_classes(project) -> list[str]:
    """The project's classes, then every other label stored: no labelled box is left out."""
    from lrihar.project import project_classes as resolve

    return resolve(project.config, project.store, every_label=True)


def labels_checkable(gt: GroundTruth | None, classes: Sequence[str]) -> bool:
    """Ground-truth classes can judge labels only where some of them are the project's."""
    return gt is not None and bool(set(gt.classes) & set(classes))


def _truth(gt_label: str, classes: Sequence[str]) -> str:
    return gt_label if gt_label in classes else NG  # an action the project does not know is NG


def work_owed(checks: list[FrameCheck], classes: Sequence[str], checkable: bool) -> dict[str, dict[str, Any]]:
    """Per post, what a person must still do on the checked frames: images needing any box fix
    (boxes to draw, boxes to delete) and, where ground truth has the project's classes, labels to
    correct (a matched box whose current label is not its true class, or that has none)."""
    out: dict[str, dict[str, Any]] = {}
    for c in checks:
        o = out.setdefault(c.post, {"frames_checked": 0, "action_checked": 0, "with_hands": 0,
                                    "images_to_fix": 0, "boxes_to_draw": 0, "boxes_to_delete": 0,
                                    "crops_checked": 0, "relabels": 0, "labels_checked": checkable})
        o["frames_checked"] += 1
        o["action_checked"] += c.status == "action"
        o["with_hands"] += len(c.gt_boxes) > 0
        missed, false = len(c.missed), len(c.false)
        o["images_to_fix"] += bool(missed or false)
        o["boxes_to_draw"] += missed
        o["boxes_to_delete"] += false
        if checkable:
            o["crops_checked"] += len(c.pairs)
            o["relabels"] += sum(c.rows[i].action != _truth(c.gt_labels[j], classes) for i, j in c.pairs)
    return out


def worst_frames(checks: list[FrameCheck], n: int = 6) -> list[dict[str, Any]]:
    """The ``n`` image frames with the most misses plus false boxes (ties by file name), for
    pictures (a video frame is not drawn: its picture would need the video decoded again)."""
    bad = sorted((c for c in checks if c.image_file and (c.missed or c.false)),
                 key=lambda c: (-(len(c.missed) + len(c.false)), Path(c.path).name, c.path))
    out = []
    for c in bad[:n]:
        missed, false = set(c.missed), set(c.false)
        out.append({"post": c.post, "name": Path(c.path).name, "path": c.path,
                    "gt": c.gt_boxes.round(1).tolist(), "gt_labels": c.gt_labels,
                    "missed": [j in missed for j in range(len(c.gt_boxes))],
                    "pred": [[round(v, 1) for v in r.xyxy] for r in c.rows],
                    "pred_labels": [r.action for r in c.rows],
                    "false": [i in false for i in range(len(c.rows))]})
    return out


def classification_pairs(store: Store, gt: GroundTruth | None, classes: Sequence[str] = (),
                         checks: list[FrameCheck] | None = None) -> dict[str, list[tuple[str, str]]]:
    """(truth, automatic label) per post, from ground truth and from reviewed labels."""
    posts = _post_of(store)
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    labels = store.labels()
    seen: set[int] = set()
    if labels_checkable(gt, classes):
        for c in checks if checks is not None else check_frames(store, gt):
            for i, j in c.pairs:
                lab = labels.get(c.rows[i].id)
                if lab is not None:
                    pairs[c.post].append((_truth(c.gt_labels[j], classes), lab["auto_label"] or lab["label"]))
                    seen.add(c.rows[i].id)
    # Reviewed labels vs what the matcher said; boxes a person drew were never matched: left out.
    reviewed = {i: v for i, v in labels.items()
                if v["provenance"] == "corrected" and v["auto_label"] is not None and i not in seen}
    if reviewed:
        uri_of = dict(store.db.execute("SELECT d.id, s.uri FROM detections d JOIN sources s "
                                       "ON s.id = d.source_id").fetchall())
        for det_id, v in reviewed.items():
            pairs[posts.get(uri_of[det_id], LINE)].append((v["label"], v["auto_label"]))
    return pairs


def confusions(store: Store, gt: GroundTruth | None, classes: list[str],
               checks: list[FrameCheck] | None = None, posts: list[str] | None = None,
               ) -> dict[str, Confusion]:
    """One confusion matrix per post with truth available (``posts``: these only), plus all of
    them together."""
    pairs = classification_pairs(store, gt, classes, checks)
    if posts is not None:
        pairs = {post: p for post, p in pairs.items() if post in posts}
    out = {post: Confusion.from_labels([t for t, _ in p], [a for _, a in p], classes)
           for post, p in sorted(pairs.items())}
    if len(out) > 1 or (out and LINE not in out):
        everything = [x for p in pairs.values() for x in p]
        out[LINE] = Confusion.from_labels([t for t, _ in everything], [a for _, a in everything], classes)
    return out


def evaluate_project(project, gt: GroundTruth | None = None, ious=(0.3, 0.4),
                     rates=None, posts_per_line: int = 20, posts: list[str] | None = None) -> dict[str, Any]:
    """Every figure of ``lrihar evaluate``: detection, classification, annotation cost; ``posts``
    (``--line`` / ``--post``): only the frames of these posts, with their classes."""
    from lrihar.classify.templates import discover_templates
    from lrihar.errors import BadInputError
    from lrihar.evaluate.cost import CostRates, annotation_cost
    from lrihar.lines import project_layout, source_uris_at

    store = project.store
    layout = project_layout(project.config)
    classes = project_classes(project)
    uris = None
    if posts is not None:
        uris = source_uris_at(store, posts)
        named = layout.classes(posts)
        classes = [*named, *(c for c in classes if c not in named)]
    # Posts with their own templates: each post's folders, a folder that posts share counted once.
    views = [project.config] if layout.uniform else [layout.config_for(group[0])
                                                     for group in layout.groups(posts or list(layout.posts))]
    templates: set[Path] = set()
    for view in views:
        try:
            templates |= {f.path for f in discover_templates(class_folders(view))}
        except BadInputError:  # no templates (yet): none picked by a person
            continue
    n_templates = len(templates)
    out: dict[str, Any] = {"project": str(project.root), "counts": store.counts()}
    if posts is not None:
        out["posts"] = posts
    checks = check_frames(store, gt, uris) if gt is not None else None
    owed = None
    if gt is not None:
        out["detection"] = detection_report(store, gt, ious, uris)
        out["detection"]["worst_frames"] = worst_frames(checks)
        owed = work_owed(checks, classes, labels_checkable(gt, classes))
    conf = confusions(store, gt, classes, checks, posts)
    out["classification"] = {post: {"classes": c.classes, "counts": c.counts.tolist(), **c.summary()}
                             for post, c in conf.items()}
    out["cost"] = annotation_cost(store, len(classes), n_templates, rates or CostRates(), posts_per_line,
                                  owed, layout, posts)
    return out
