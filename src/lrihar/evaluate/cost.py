"""Annotation cost (paper Table 3): what a person touched with lrihar vs annotating by hand.

Manual baseline, per inspection post, with the paper's rates as defaults: boxing the detector's
training images at 4 h per 500 images, and labelling classifier crops at 24 h per 200 crops per
class. With lrihar a person only picks the templates and reviews what the matcher got wrong:
the images and crops they touched (reviewed labels, corrected boxes, templates) are costed at the
same rates; the review page's measured time (AT, idle gaps capped) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrihar.store import Store


@dataclass(frozen=True)
class CostRates:
    """Seconds per item for a person; defaults from the paper."""

    seconds_per_detector_image: float = 4 * 3600 / 500
    crops_per_class_manual: int = 200
    hours_per_class_set: float = 24.0

    def seconds_per_crop(self, n_classes: int) -> float:
        return self.hours_per_class_set * 3600 / (self.crops_per_class_manual * max(n_classes, 1))


def _per_post(store: Store, sql: str) -> dict[str, int]:
    return {post or "(line)": n for post, n in store.db.execute(sql)}


def annotation_cost(store: Store, n_classes: int, n_templates: int, rates: CostRates = CostRates(),
                    posts_per_line: int = 20) -> dict[str, Any]:
    """Table 3 per post and for a line of ``posts_per_line`` posts like the average one."""
    images = _per_post(store, "SELECT s.post, COUNT(*) FROM frames f JOIN sources s ON s.id = f.source_id"
                              " WHERE f.status = 'action' GROUP BY s.post")
    crops = _per_post(store, "SELECT s.post, COUNT(*) FROM detections d JOIN sources s ON"
                             " s.id = d.source_id GROUP BY s.post")
    touched_crops = _per_post(store, "SELECT s.post, COUNT(*) FROM labels l JOIN detections d ON"
                                     " d.id = l.detection_id JOIN sources s ON s.id = d.source_id"
                                     " WHERE l.provenance = 'corrected' GROUP BY s.post")
    # A detector image was touched when a person fixed a box on it: marked one wrong, moved or
    # drew one (review page or a tool import).
    touched_images = _per_post(store, "SELECT s.post, COUNT(DISTINCT d.source_id || ':' || d.frame_index)"
                                      " FROM review_log r JOIN detections d ON d.id = r.detection_id"
                                      " JOIN sources s ON s.id = d.source_id WHERE r.undone = 0 AND"
                                      " r.action IN ('wrong', 'box', 'add') GROUP BY s.post")
    crop_s = rates.seconds_per_crop(n_classes)
    posts = sorted(set(images) | set(crops)) or ["(line)"]
    rows = []
    for post in posts:
        manual_images = images.get(post, 0)
        manual_crops = min(crops.get(post, 0), rates.crops_per_class_manual * max(n_classes, 1))
        ours_images = touched_images.get(post, 0)
        ours_crops = touched_crops.get(post, 0) + n_templates // max(len(posts), 1)
        manual_h = (manual_images * rates.seconds_per_detector_image + manual_crops * crop_s) / 3600
        ours_h = (ours_images * rates.seconds_per_detector_image + ours_crops * crop_s) / 3600
        rows.append({
            "post": post, "detector_images_manual": manual_images, "detector_images_lrihar": ours_images,
            "classifier_crops_manual": manual_crops, "classifier_crops_lrihar": ours_crops,
            "hours_manual": round(manual_h, 2), "hours_lrihar": round(ours_h, 2),
            "saved": round(1 - ours_h / manual_h, 4) if manual_h else 0.0,
        })
    mean_manual = sum(r["hours_manual"] for r in rows) / len(rows)
    mean_ours = sum(r["hours_lrihar"] for r in rows) / len(rows)
    seconds, sessions = store.db.execute("SELECT COALESCE(SUM(seconds), 0), COUNT(*) FROM review_sessions"
                                         ).fetchone()
    return {
        "rates": {"seconds_per_detector_image": rates.seconds_per_detector_image,
                  "seconds_per_crop": round(crop_s, 2)},
        "posts": rows,
        "line": {"posts": posts_per_line, "hours_manual": round(mean_manual * posts_per_line, 1),
                 "hours_lrihar": round(mean_ours * posts_per_line, 1),
                 "saved": round(1 - mean_ours / mean_manual, 4) if mean_manual else 0.0},
        "measured_review": {"sessions": sessions, "hours": round(seconds / 3600, 3)},
    }
