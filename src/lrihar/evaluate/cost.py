"""Annotation cost (paper Table 3): a person's work with lrihar vs annotating by hand.

By hand, per inspection post, at the paper's rates unless told otherwise: boxing each detector
image at 4 h per 500 images (28.8 s), labelling classifier crops at 24 h per 200 crops per class.
The images are those lrihar found hands on or, on frames checked against ground truth, those
where the truth shows a hand; the crops are their boxes, at most 200 per class (as the paper).

With lrihar, at the same rates, two parts:

* **done**: what a person touched so far: images where they fixed a box (marked one wrong, moved
  or drew one), labels they set or confirmed, and the templates they picked.
* **still owed**, known only where ground truth was given (boxes matched one to one at IoU 0.5):
  each checked image that still needs any box fix (a missed hand to draw, a false box to delete)
  at the per-image rate, because a person opens the image and fixes all of its boxes at once;
  each matched box whose label is not its true class (or that has none) at the per-crop rate,
  where the ground truth has the project's classes.

A saving is claimed only for a post checked in full: every stored frame is a ground-truth image
and the labels could be judged (or the project has no classes). Elsewhere the table shows the
work done so far and the measured review time, and no saving: none was earned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrihar.store import Store

LINE = "(line)"
_POST = " FROM {} JOIN sources s ON s.id = {}.source_id {} GROUP BY s.post"


@dataclass(frozen=True)
class CostRates:
    """Seconds per item for a person; defaults from the paper."""

    seconds_per_detector_image: float = 4 * 3600 / 500
    crops_per_class_manual: int = 200
    hours_per_class_set: float = 24.0

    def seconds_per_crop(self, n_classes: int) -> float:
        return self.hours_per_class_set * 3600 / (self.crops_per_class_manual * max(n_classes, 1))


def _per_post(store: Store, what: str, table: str, alias: str, where: str = "") -> dict[str, int]:
    sql = f"SELECT s.post, {what}" + _POST.format(f"{table} {alias}", alias, where)
    return {post or LINE: n for post, n in store.db.execute(sql)}


def _not_earned(owed: dict | None, o: dict | None, frames: int, n_classes: int) -> str | None:
    """Why no saving can be claimed for a post, or None when it was checked in full."""
    if owed is None:
        return "nothing checked against ground truth"
    if o is None:
        return "no frame of this post is a ground-truth image"
    if o["frames_checked"] < frames:
        return f"only {o['frames_checked']} of {frames} frames checked against ground truth"
    if n_classes and not o["labels_checked"]:
        return "labels not checked: the ground truth has none of the project's classes"
    return None


def annotation_cost(store: Store, n_classes: int, n_templates: int, rates: CostRates = CostRates(),
                    posts_per_line: int = 20, owed: dict[str, dict[str, Any]] | None = None,
                    ) -> dict[str, Any]:
    """Table 3 per post and for a line of ``posts_per_line`` posts like the average one.

    Args:
        store: the project store.
        n_classes: the project's classes (0: a detector-only project, no classifier work).
        n_templates: template crops picked by a person.
        rates: seconds per item.
        posts_per_line: posts of the line the table extrapolates to.
        owed: per post, the work ground truth shows is still to do
            (:func:`lrihar.evaluate.project_eval.work_owed`); None where no ground truth was given.
    """
    frames = _per_post(store, "COUNT(*)", "frames", "f")
    action = _per_post(store, "COUNT(*)", "frames", "f", "WHERE f.status = 'action'")
    boxes = _per_post(store, "COUNT(*)", "detections", "d", "WHERE d.rejected = 0")
    corrected = _per_post(store, "COUNT(*)", "detections", "d",
                          "JOIN labels l ON l.detection_id = d.id WHERE l.provenance = 'corrected'")
    # A detector image was touched when a person fixed a box on it: marked one wrong, moved or
    # drew one (review page or a tool import).
    fixed = _per_post(store, "COUNT(DISTINCT d.frame_index || ':' || d.source_id)", "detections", "d",
                      "JOIN review_log r ON r.detection_id = d.id WHERE r.undone = 0 AND"
                      " r.action IN ('wrong', 'box', 'add')")
    image_s, crop_s = rates.seconds_per_detector_image, rates.seconds_per_crop(n_classes)
    cap = rates.crops_per_class_manual * n_classes
    posts = sorted(set(frames) | set(boxes)) or [LINE]
    rows, exact = [], []  # exact: unrounded (manual, lrihar) hours, for the line's figures
    for post in posts:
        checked = (owed or {}).get(post)
        o = checked or {}  # a post nobody checked owes nothing that is known
        images_manual = action.get(post, 0) - o.get("action_checked", 0) + o.get("with_hands", 0)
        crops_manual = min(boxes.get(post, 0) + o.get("boxes_to_draw", 0) - o.get("boxes_to_delete", 0), cap)
        done_images = fixed.get(post, 0)
        done_crops = corrected.get(post, 0) + (n_templates // len(posts) if n_classes else 0)
        owed_crops = o.get("relabels", 0) if n_classes else 0
        hours_manual = (images_manual * image_s + crops_manual * crop_s) / 3600
        hours_done = (done_images * image_s + done_crops * crop_s) / 3600
        hours_owed = (o.get("images_to_fix", 0) * image_s + owed_crops * crop_s) / 3600
        why = _not_earned(owed, checked, frames.get(post, 0), n_classes)
        earned = why is None and hours_manual > 0
        exact.append((hours_manual, hours_done + hours_owed))
        rows.append({
            "post": post, "frames": frames.get(post, 0), "frames_checked": o.get("frames_checked", 0),
            "detector_images_manual": images_manual, "classifier_crops_manual": crops_manual,
            "detector_images_done": done_images, "classifier_crops_done": done_crops,
            "detector_images_owed": o.get("images_to_fix", 0), "boxes_to_draw": o.get("boxes_to_draw", 0),
            "boxes_to_delete": o.get("boxes_to_delete", 0), "relabels_owed": owed_crops,
            "hours_manual": round(hours_manual, 2), "hours_done": round(hours_done, 2),
            "hours_owed": round(hours_owed, 2) if checked else None,
            "hours_lrihar": round(hours_done + hours_owed, 2) if why is None else None,
            "saved": round(1 - (hours_done + hours_owed) / hours_manual, 4) if earned else None,
            "not_earned": why,
        })
    complete = all(r["hours_lrihar"] is not None for r in rows)
    mean_manual = sum(m for m, _ in exact) / len(rows)
    mean_ours = sum(o for _, o in exact) / len(rows)
    seconds, sessions = store.db.execute("SELECT COALESCE(SUM(seconds), 0), COUNT(*) FROM review_sessions"
                                         ).fetchone()
    actions = store.counts()["review_actions"]
    return {
        "rates": {"seconds_per_detector_image": image_s, "seconds_per_crop": round(crop_s, 2)},
        "checked": "nothing" if owed is None else "all" if complete else "part",
        "posts": rows,
        "line": {"posts": posts_per_line, "hours_manual": round(mean_manual * posts_per_line, 1),
                 "hours_lrihar": round(mean_ours * posts_per_line, 1) if complete else None,
                 "saved": round(1 - mean_ours / mean_manual, 4) if complete and mean_manual else None},
        "done": {"hours": round(sum(r["hours_done"] for r in rows), 2),
                 "detector_images": sum(r["detector_images_done"] for r in rows),
                 "classifier_crops": sum(r["classifier_crops_done"] for r in rows)},
        "measured_review": {"sessions": sessions, "hours": round(seconds / 3600, 3), "actions": actions},
    }
