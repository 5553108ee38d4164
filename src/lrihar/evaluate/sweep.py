"""Threshold sweeps without re-running the model (paper Fig. 7).

The detector runs once per image at the lowest thresholds of the grid and every box keeps its
scores; each grid point then re-thresholds those boxes offline:

* ``box-text`` (Grounding DINO): keep a box when ``score > box_threshold`` and
  ``text_score > text_threshold``, exactly what the detector keeps when run at that pair.
* ``score-nms`` (every other backend, YOLO later): keep boxes with ``score > confidence``, then
  class-agnostic NMS at ``nms_iou`` (1.0 = none). Exact for detectors whose boxes do not depend
  on the threshold (OWLv2, YOLO); for mediapipe-hands the palm threshold also decides which
  hands the landmark model looks at, so the offline sweep approximates a rerun.

Example:
    >>> rows = sweep(preds, gts, "box-text", grid, grid, ious=(0.3, 0.4))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.csv_cells import SafeDictWriter
from lrihar.evaluate.metrics import detection_scores

KINDS = {"box-text": ("box_threshold", "text_threshold"), "score-nms": ("confidence", "nms_iou")}


def sweep_kind(backend: str) -> str:
    """Which pair of thresholds a backend is swept over."""
    return "box-text" if backend == "grounding-dino" else "score-nms"


def default_grid(kind: str, axis: int) -> np.ndarray:
    """10 values per axis: 0.05…0.95 for thresholds, 0.1…1.0 for NMS IoU."""
    if kind == "score-nms" and axis == 1:
        return np.round(np.arange(0.1, 1.0001, 0.1), 2)
    return np.round(np.arange(0.05, 0.96, 0.1), 2)


@dataclass(frozen=True)
class ImagePredictions:
    """Every box the detector returned at the lowest thresholds, with its scores."""

    xyxy: np.ndarray
    score: np.ndarray
    text_score: np.ndarray | None = None

    @classmethod
    def from_detections(cls, dets) -> ImagePredictions:
        text = dets.data.get("text_score") if dets.data else None
        return cls(np.asarray(dets.xyxy, float).reshape(-1, 4),
                   np.asarray(dets.confidence, float),
                   None if text is None else np.asarray(text, float))

    def to_json(self) -> dict:
        return {"xyxy": self.xyxy.round(3).tolist(), "score": self.score.round(6).tolist(),
                "text_score": None if self.text_score is None else self.text_score.round(6).tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ImagePredictions:
        return cls(np.asarray(d["xyxy"], float).reshape(-1, 4), np.asarray(d["score"], float),
                   None if d["text_score"] is None else np.asarray(d["text_score"], float))


def keep(pred: ImagePredictions, kind: str, a: float, b: float) -> np.ndarray:
    """Indices of the boxes kept at thresholds (a, b)."""
    if kind == "box-text":
        text = pred.text_score if pred.text_score is not None else pred.score
        return np.flatnonzero((pred.score > a) & (text > b))
    idx = np.flatnonzero(pred.score > a)
    if len(idx) < 2 or b >= 1.0:
        return idx
    import supervision as sv

    boxes = np.concatenate([pred.xyxy[idx], pred.score[idx, None]], axis=1)
    return idx[sv.box_non_max_suppression(boxes, iou_threshold=b)]


def sweep(preds: Sequence[ImagePredictions], gts: Sequence[np.ndarray], kind: str,
          grid_a: Sequence[float], grid_b: Sequence[float],
          ious: Sequence[float] = (0.3, 0.4)) -> list[dict]:
    """Eq. 3 recall and eq. 4 accuracy at every grid point and T_IoU."""
    names = KINDS[kind]
    rows = []
    for a, b in itertools.product(grid_a, grid_b):
        kept = [p.xyxy[keep(p, kind, a, b)] for p in preds]
        for t in ious:
            s = detection_scores(kept, gts, t)
            rows.append({names[0]: float(a), names[1]: float(b), "iou": float(t),
                         "recall": s.recall, "accuracy": s.accuracy,
                         "predictions": s.pred_total, "ground_truth": s.gt_total})
    return rows


def best_pair(rows: list[dict], iou: float, accuracy_floor: float) -> dict | None:
    """Highest recall with accuracy ≥ the floor at ``iou`` (ties: higher accuracy)."""
    ok = [r for r in rows if r["iou"] == iou and r["accuracy"] >= accuracy_floor and r["predictions"]]
    return max(ok, key=lambda r: (r["recall"], r["accuracy"])) if ok else None


def write_csv(rows_by_model: dict[str, list[dict]], path: Path) -> Path:
    """One row per model × grid point × T_IoU; threshold columns named per model kind."""
    fields = ["model", "threshold_1_name", "threshold_1", "threshold_2_name", "threshold_2", "iou",
              "recall", "accuracy", "predictions", "ground_truth"]
    with path.open("w", newline="") as f:
        writer = SafeDictWriter(f, fieldnames=fields)
        writer.writeheader()
        for model, rows in rows_by_model.items():
            for r in rows:
                a, b = (k for k in r if k not in ("iou", "recall", "accuracy", "predictions", "ground_truth"))
                writer.writerow({"model": model, "threshold_1_name": a, "threshold_1": r[a],
                                 "threshold_2_name": b, "threshold_2": r[b], "iou": r["iou"],
                                 "recall": round(r["recall"], 5), "accuracy": round(r["accuracy"], 5),
                                 "predictions": r["predictions"], "ground_truth": r["ground_truth"]})
    return path


def plot_surfaces(rows_by_model: dict[str, list[dict]], metric: str, iou: float,
                  out_stem: Path) -> list[Path]:
    """A 3-D surface of ``metric`` over the two thresholds, one colour per model (PNG + SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig = plt.figure(figsize=(7.5, 6), dpi=110)
    ax = fig.add_subplot(projection="3d")
    colours = plt.get_cmap("tab10").colors
    handles, axis_names = [], set()
    for (model, rows), colour in zip(rows_by_model.items(), itertools.cycle(colours)):
        rows = [r for r in rows if r["iou"] == iou]
        if not rows:
            continue
        a_name, b_name = (k for k in rows[0] if k not in ("iou", "recall", "accuracy", "predictions",
                                                         "ground_truth"))
        axis_names.add((a_name, b_name))
        a_vals = sorted({r[a_name] for r in rows})
        b_vals = sorted({r[b_name] for r in rows})
        z = np.full((len(b_vals), len(a_vals)), np.nan)
        for r in rows:
            z[b_vals.index(r[b_name]), a_vals.index(r[a_name])] = r[metric]
        xx, yy = np.meshgrid(a_vals, b_vals)
        ax.plot_surface(xx, yy, z, color=colour, alpha=0.65, edgecolor=colour, linewidth=0.3)
        handles.append(Patch(color=colour, label=model))
    firsts = " / ".join(sorted({a for a, _ in axis_names}))
    seconds = " / ".join(sorted({b for _, b in axis_names}))
    ax.set_xlabel(f"threshold 1 ({firsts})")
    ax.set_ylabel(f"threshold 2 ({seconds})")
    ax.set_zlabel(metric)
    ax.set_zlim(0, 1)
    ax.set_title(f"{metric} at T_IoU = {iou}")
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
