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

Posts add up to their lines (``lines``: the sums of their posts, a saving only where every post
of the line earned one); ``line`` extrapolates the average post to a line of ``posts_per_line``
posts, as the paper's Table 3 does for 20 posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lrihar.store import Store

if TYPE_CHECKING:
    from lrihar.lines import Layout

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
                    layout: Layout | None = None, posts: list[str] | None = None,
                    ) -> dict[str, Any]:
    """Table 3 per post, per line, and for a line of ``posts_per_line`` posts like the average one.

    Args:
        store: the project store.
        n_classes: the project's classes (0: a detector-only project, no classifier work).
        n_templates: template crops picked by a person.
        rates: seconds per item.
        posts_per_line: posts of the line the table extrapolates to.
        owed: per post, the work ground truth shows is still to do
            (:func:`lrihar.evaluate.project_eval.work_owed`); None where no ground truth was given.
        layout: the project's lines and posts: which line each post is on, and a post's own
            classes (then its crop rate and cap are its own); None: one line, ``n_classes`` each.
        posts: only these posts' rows (``--line`` / ``--post``); None: every post stored.
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
    image_s = rates.seconds_per_detector_image
    stored = sorted(set(frames) | set(boxes))
    if posts is not None:
        stored = [p for p in stored if p in posts] or list(posts)
    posts = stored or [LINE]
    own_classes = layout is not None and not layout.uniform
    rows, exact = [], []  # exact: unrounded (manual, done, owed) hours, for the lines' figures
    for post in posts:
        n = n_classes  # a post with classes of its own: its crop rate and cap are its own
        if own_classes and post in layout.posts:  # type: ignore[union-attr]
            n = len(layout.posts[post].classes) or n_classes  # type: ignore[union-attr]
        crop_s, cap = rates.seconds_per_crop(n), rates.crops_per_class_manual * n
        checked = (owed or {}).get(post)
        o = checked or {}  # a post nobody checked owes nothing that is known
        images_manual = action.get(post, 0) - o.get("action_checked", 0) + o.get("with_hands", 0)
        crops_manual = min(boxes.get(post, 0) + o.get("boxes_to_draw", 0) - o.get("boxes_to_delete", 0), cap)
        done_images = fixed.get(post, 0)
        done_crops = corrected.get(post, 0) + (n_templates // len(posts) if n else 0)
        owed_crops = o.get("relabels", 0) if n else 0
        hours_manual = (images_manual * image_s + crops_manual * crop_s) / 3600
        hours_done = (done_images * image_s + done_crops * crop_s) / 3600
        hours_owed = (o.get("images_to_fix", 0) * image_s + owed_crops * crop_s) / 3600
        why = _not_earned(owed, checked, frames.get(post, 0), n)
        earned = why is None and hours_manual > 0
        exact.append((hours_manual, hours_done, hours_owed))
        rows.append({
            "post": post, "line": layout.line_of(None if post == LINE else post) if layout else LINE,
            "frames": frames.get(post, 0), "frames_checked": o.get("frames_checked", 0),
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
    mean_manual = sum(m for m, _, _ in exact) / len(rows)
    mean_ours = sum(d + o for _, d, o in exact) / len(rows)
    seconds, sessions = store.db.execute("SELECT COALESCE(SUM(seconds), 0), COUNT(*) FROM review_sessions"
                                         ).fetchone()
    actions = store.counts()["review_actions"]
    return {
        "rates": {"seconds_per_detector_image": image_s,
                  "seconds_per_crop": round(rates.seconds_per_crop(n_classes), 2)},
        "checked": "nothing" if owed is None else "all" if complete else "part",
        "posts": rows,
        "lines": _per_line(rows, exact),
        "line": {"posts": posts_per_line, "hours_manual": round(mean_manual * posts_per_line, 1),
                 "hours_lrihar": round(mean_ours * posts_per_line, 1) if complete else None,
                 "saved": round(1 - mean_ours / mean_manual, 4) if complete and mean_manual else None},
        "done": {"hours": round(sum(r["hours_done"] for r in rows), 2),
                 "detector_images": sum(r["detector_images_done"] for r in rows),
                 "classifier_crops": sum(r["classifier_crops_done"] for r in rows)},
        "measured_review": {"sessions": sessions, "hours": round(seconds / 3600, 3), "actions": actions},
    }


def _per_line(rows: list[dict[str, Any]], exact: list[tuple[float, float, float]]) -> list[dict[str, Any]]:
    """The posts' figures summed per line (in the order first seen); lrihar's hours and a saving
    only where every post of the line has them (each was checked in full)."""
    grouped: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        grouped.setdefault(row["line"], []).append(i)
    out = []
    for line, idx in grouped.items():
        manual, done, owed = (sum(exact[i][k] for i in idx) for k in range(3))
        complete = all(rows[i]["hours_lrihar"] is not None for i in idx)
        out.append({"line": line, "posts": [rows[i]["post"] for i in idx],
                    "frames": sum(rows[i]["frames"] for i in idx),
                    "frames_checked": sum(rows[i]["frames_checked"] for i in idx),
                    "hours_manual": round(manual, 2), "hours_done": round(done, 2),
                    "hours_lrihar": round(done + owed, 2) if complete else None,
                    "saved": round(1 - (done + owed) / manual, 4) if complete and manual else None})
    return out
