"""What ``score`` writes: the Markdown tables, and the results JSON where ``--results`` puts it."""

from __future__ import annotations

import json
from pathlib import Path

from bootstrap.plan import IOUS


def _write_elsewhere(path: Path, result: dict) -> Path:
    from lrihar.versions import machine_info

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "detector_bootstrap", "machine": machine_info(), **result},
                               indent=2) + "\n")
    return path


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(out: dict) -> str:
    """Three tables: the default confidence, the best point at accuracy >= 90 % (optimistic), and the
    cross-validated confidence."""
    boxes = out["split"]["test_boxes"]
    lines = [f"Held-out half: {out['split']['test_images']} photos, {boxes['gloved_hand']} gloved + "
             f"{boxes['bare_hand']} bare hands. R = eq. 3 recall, A = eq. 4 accuracy, in %.", "",
             "At the default confidence (yolo 0.25, NMS IoU 0.7; mediapipe-hands as `lrihar annotate` "
             "runs it):",
             "", "| arm | corrected | train set (img / boxes) | train labels R / A @0.3 | R @0.3 | A @0.3 | "
             "gloved R @0.3 | bare R @0.3 | R @0.4 | A @0.4 |", "|---|---|---|---|---|---|---|---|---|---|"]
    o = out["offline_default"]["default"]
    lines.append(f"| offline default (mediapipe-hands) | – | – | – | {_pct(o['0.3']['recall'])} | "
                 f"{_pct(o['0.3']['accuracy'])} | {_pct(o['0.3']['recall_gloved_hand'])} | "
                 f"{_pct(o['0.3']['recall_bare_hand'])} | {_pct(o['0.4']['recall'])} | "
                 f"{_pct(o['0.4']['accuracy'])} |")
    for arm, a in out["arms"].items():
        d, q = a["default"], a["train_labels_vs_truth"]["0.3"]
        lines.append(f"| YOLO on {arm} | {a['corrected_frames']} ({a['corrected_were_empty']} empty) | "
                     f"{a['train_set']['images']} / {a['train_set']['boxes']} | {_pct(q['recall'])} / "
                     f"{_pct(q['accuracy'])} | {_pct(d['0.3']['recall'])} | {_pct(d['0.3']['accuracy'])} | "
                     f"{_pct(d['0.3']['recall_gloved_hand'])} | {_pct(d['0.3']['recall_bare_hand'])} | "
                     f"{_pct(d['0.4']['recall'])} | {_pct(d['0.4']['accuracy'])} |")
    lines += ["", "Best recall at accuracy ≥ 90 % in an offline sweep (confidence × NMS IoU), the point "
              "chosen on the held-out half itself (optimistic):", "",
              "| arm | T_IoU | confidence | NMS IoU | R | A | gloved R | bare R |",
              "|---|---|---|---|---|---|---|---|"]
    rows = [("offline default (mediapipe-hands, approximate)", out["offline_default"]["best_at_90"])]
    rows += [(f"YOLO on {arm}", a["best_at_90"]) for arm, a in out["arms"].items()]
    for name, best in rows:
        for t in map(str, IOUS):
            b = best.get(t)
            if b is None:
                lines.append(f"| {name} | {t} | – | – | no point reaches 90 % | | | |")
            else:
                lines.append(f"| {name} | {t} | {b['confidence']:.2f} | {b['nms_iou']:.1f} | "
                             f"{_pct(b['recall'])} | {_pct(b['accuracy'])} | "
                             f"{_pct(b['recall_gloved_hand'])} | {_pct(b['recall_bare_hand'])} |")
    lines += ["", "The confidence a user would deploy, chosen on other labelled images than those scored: "
              "best recall at accuracy ≥ 90 % (NMS IoU fixed at 0.7) on a random half of the held-out "
              "photos, scored on the other half; mean over 2 × 20 splits (the targets are judged here):", "",
              "| arm | T_IoU | confidence: mean (range) | R | A | gloved R | bare R | lowest fold A |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, a in out["arms"].items():
        for t in map(str, IOUS):
            c = a["cross_validated"][t]
            lines.append(f"| YOLO on {arm} | {t} | {c['confidence_mean']:.2f} ({c['confidence_min']:.2f}-"
                         f"{c['confidence_max']:.2f}) | {_pct(c['recall'])} | {_pct(c['accuracy'])} | "
                         f"{_pct(c['recall_gloved_hand'])} | {_pct(c['recall_bare_hand'])} | "
                         f"{_pct(c['accuracy_min'])} |")
    return "\n".join(lines) + "\n"
