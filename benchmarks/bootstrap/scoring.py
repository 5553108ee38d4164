"""``score``: every trained arm and the offline default on the held-out half, at the default,
the best (optimistic) and the cross-validated operating point; the issue's targets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from _common import write_result
from bootstrap.plan import (
    ACCURACY_FLOOR,
    CLASSES,
    DATASET,
    DEFAULT_POINT,
    GRID_A,
    GRID_B,
    IMGSZ,
    IOUS,
    SELF,
    SHARES,
    _boxes,
    _load_plan,
    _read_json,
)
from bootstrap.report import _write_elsewhere, markdown
from bootstrap.training import _export, _import_weights


def _point(kept: list[np.ndarray], gts: list[np.ndarray], classes: list[list[str]]) -> dict:
    """Eq. 3 / 4 at each T_IoU, and the recall of each hand class."""
    from lrihar.evaluate.metrics import detection_scores

    out = {}
    for t in IOUS:
        s = detection_scores(kept, gts, t)
        row = {"recall": round(s.recall, 4), "accuracy": round(s.accuracy, 4), "predictions": s.pred_total}
        for c in CLASSES:
            gc = [g[np.array([x == c for x in cl], bool)] if len(g) else g
                  for g, cl in zip(gts, classes, strict=True)]
            row[f"recall_{c}"] = round(detection_scores(kept, gc, t).recall, 4)
        out[str(t)] = row
    return out


def _sweep_scores(preds, gts, classes, default: tuple[float, float] | None) -> dict:
    """The default point (if any) and the best-recall point at accuracy >= the floor, per T_IoU."""
    from lrihar.evaluate.sweep import best_pair, keep, sweep

    rows = sweep(preds, gts, "score-nms", GRID_A, GRID_B, IOUS)
    out: dict = {}
    if default is not None:
        a, b = default
        out["default"] = {"confidence": a, "nms_iou": b,
                          **_point([p.xyxy[keep(p, "score-nms", a, b)] for p in preds], gts, classes)}
    out["best_at_90"] = {}
    for t in IOUS:
        best = best_pair(rows, t, ACCURACY_FLOOR)
        if best is None:
            out["best_at_90"][str(t)] = None
            continue
        a, b = best["confidence"], best["nms_iou"]
        scores = _point([p.xyxy[keep(p, "score-nms", a, b)] for p in preds], gts, classes)[str(t)]
        out["best_at_90"][str(t)] = {"confidence": a, "nms_iou": b, **scores}
    return out


def _cross_validated(preds, gts, classes, nms_iou: float = DEFAULT_POINT[1], repeats: int = 20,
                     seed: int = 0) -> dict:
    """The confidence a user would deploy, chosen on other labelled images than those scored.

    Each repeat splits the images at random into two halves; the confidence with the best recall
    at accuracy >= the floor (sweep over ``GRID_A`` at NMS IoU ``nms_iou``) is chosen on one half
    and scored on the other, both ways. NMS stays on (the backend's 0.7) because with NMS off eq. 4
    counts duplicate boxes on one hand as hits. Per T_IoU: the mean over the 2 x ``repeats`` folds
    of recall, accuracy and each hand class's recall, the chosen confidence (mean, range), the
    lowest fold accuracy, and how many folds fell back to the default confidence.
    """
    from lrihar.evaluate.sweep import best_pair, keep, sweep

    rng = np.random.default_rng(seed)
    n = len(preds)
    folds: dict[str, list[dict]] = {str(t): [] for t in IOUS}
    fallbacks = dict.fromkeys(folds, 0)
    for _ in range(repeats):
        order = rng.permutation(n)
        halves = (order[: n // 2], order[n // 2:])
        for pick, judge in (halves, halves[::-1]):
            rows = sweep([preds[i] for i in pick], [gts[i] for i in pick], "score-nms", GRID_A,
                         np.array([nms_iou]), IOUS)
            scored: dict[float, dict] = {}  # one scoring per confidence, shared by the T_IoUs
            for iou in IOUS:
                t, best = str(iou), best_pair(rows, iou, ACCURACY_FLOOR)
                # No confidence reaches the floor on this half: a user would keep the default.
                conf = DEFAULT_POINT[0] if best is None else best["confidence"]
                fallbacks[t] += best is None
                if conf not in scored:
                    kept = [preds[i].xyxy[keep(preds[i], "score-nms", conf, nms_iou)] for i in judge]
                    scored[conf] = _point(kept, [gts[i] for i in judge], [classes[i] for i in judge])
                folds[t].append({"confidence": conf, **scored[conf][t]})
    out: dict = {"nms_iou": nms_iou, "repeats": repeats, "folds": 2 * repeats, "seed": seed}
    for t, rows in folds.items():
        conf = np.array([r["confidence"] for r in rows])
        out[t] = {"confidence_mean": round(float(conf.mean()), 4), "confidence_min": float(conf.min()),
                  "confidence_max": float(conf.max()),
                  **{k: round(float(np.mean([r[k] for r in rows])), 4)
                     for k in ("recall", "accuracy", *(f"recall_{c}" for c in CLASSES))},
                  "accuracy_min": round(min(r["accuracy"] for r in rows), 4),
                  "folds_below_floor": sum(r["accuracy"] < ACCURACY_FLOOR for r in rows),
                  "folds_at_default_confidence": fallbacks[t]}
    return out


def heldout(plan: dict) -> tuple[list[dict], list[str], list[np.ndarray], list[list[str]]]:
    """The held-out half: its ground-truth entries, image paths, boxes and hand classes."""
    src = Path(plan["dataset"])
    by_file = {e["file"]: e for e in json.loads((src / "gt.json").read_text())["images"]}
    test = [by_file[f] for f in plan["split"]["test"]]
    paths = [str(src / e["file"]) for e in test]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} held-out images missing under {src} (e.g. {missing[0]})")
    return test, paths, [_boxes(e["hands"]) for e in test], [list(e["hand_classes"]) for e in test]


def score(work: Path, weights: list[Path] | None = None, results: Path | None = None) -> dict:
    """Score the offline default and every trained arm on the held-out half; JSON + Markdown."""
    from lrihar.evaluate.run_sweep import DetectorSpec, predict_once
    from lrihar.evaluate.sweep import ImagePredictions

    plan = _load_plan(work)
    for folder in weights or []:
        _import_weights(work, folder)
    test, paths, gts, classes = heldout(plan)
    out: dict = {"dataset": DATASET, "seed": plan["seed"], "imgsz": IMGSZ, "ious": list(IOUS),
                 "accuracy_floor": ACCURACY_FLOOR,
                 "split": {"train_images": len(plan["split"]["train"]), "test_images": len(test),
                           "test_boxes": {c: sum(x == c for cl in classes for x in cl) for c in CLASSES}},
                 "grid": {"confidence": GRID_A.tolist(), "nms_iou": GRID_B.tolist()}}
    default = [_boxes(plan["offline_heldout"]["default"][Path(e["file"]).name]) for e in test]
    sweep_preds = [ImagePredictions.from_json(d) for d in plan["offline_heldout"]["sweep"]]
    offline = {"default": {"note": "lrihar annotate with the project defaults",
                           **_point(default, gts, classes)},
               **_sweep_scores(sweep_preds, gts, classes, None)}
    offline["best_at_90_note"] = ("re-thresholding the palm score offline approximates a rerun for "
                                  "mediapipe-hands (the palm threshold also decides which hands get "
                                  "landmarks)")
    out["offline_default"] = offline
    out["arms"] = {}
    for arm, info in plan["arms"].items():
        run = work / "arms" / arm / "run"
        record = _read_json(run / "lrihar-train.json")
        summary, config = record.get("summary", {}), record.get("config", {})
        status = summary.get("status")
        if not (run / "weights" / "best.pt").is_file() or status not in (None, "done"):
            # None: weights imported from elsewhere without their record
            print(f"{arm}: {'not trained' if status is None else f'training {status}'}, left out")
            continue
        onnx = _export(work, arm)
        t0 = time.perf_counter()
        preds = predict_once(DetectorSpec("yolo", str(onnx)), paths, float(GRID_A.min()), 0.0,
                             cache=work / "arms" / arm / "heldout-predictions.json")
        out["arms"][arm] = {
            "corrected_frames": len(info["corrected"]), "corrected_were_empty": info["corrected_were_empty"],
            "train_set": {"images": info["images"], "boxes": info["boxes"]},
            "train_labels_vs_truth": info["label_quality"],
            "training": {"epochs": config.get("epochs"), "epochs_done": summary.get("epochs_done"),
                         "device": config.get("device"), "seconds": summary.get("seconds"),
                         "status": summary.get("status")},
            "predict_seconds": round(time.perf_counter() - t0, 1),
            **_sweep_scores(preds, gts, classes, DEFAULT_POINT),
            "cross_validated": _cross_validated(preds, gts, classes)}
        print(f"{arm}: scored", flush=True)
    out["targets"] = _targets(out)
    out["markdown"] = markdown(out)
    (work / "results.md").write_text(out["markdown"])
    print(out["markdown"])
    path = write_result("detector_bootstrap", out) if results is None else _write_elsewhere(results, out)
    print("wrote", path, "and", work / "results.md")
    return out


def _targets(out: dict) -> dict:
    """The issue's targets for suggest-20 (and suggest-20+self), judged at the cross-validated point;
    also given at the default confidence and at the sweep's (optimistic) best point."""
    arms = out["arms"]
    if "suggest-20" not in arms:
        return {}
    res: dict = {"goal": "suggest-20: recall >= 0.85 at accuracy >= 0.90, gloved recall >= 0.80, "
                         "and suggested frames beat random frames (recall, same K); the same for "
                         "suggest-20+self (round 2) where relabel made it",
                 "judged_at": "cross_validated: the confidence chosen on one random half of the held-out "
                              "images, scored on the other (NMS IoU 0.7), mean over the folds; the "
                              "default and best_at_90 (optimistic) keys are for comparison"}
    for t in map(str, IOUS):
        for arm in ("suggest-20", "suggest-20" + SELF):  # round 1, and round 2 where relabel made it
            if arm not in arms:
                continue
            prefix = "" if arm == "suggest-20" else f"{arm} "  # round 1 keeps its keys
            for where in ("cross_validated", "default", "best_at_90"):
                p = arms[arm].get(where)
                p = p.get(t) if p else None
                res[f"{prefix}{where}@{t}"] = None if p is None else bool(
                    p["recall"] >= 0.85 and p["accuracy"] >= 0.90 and p["recall_gloved_hand"] >= 0.80)
        for share in SHARES:
            for tail in ("", SELF):
                s, r = arms.get(f"suggest-{share}{tail}"), arms.get(f"random-{share}{tail}")
                if not (s and r):
                    continue
                beats = f"suggest-{share}{tail} beats random-{share}{tail} @{t}"
                if "cross_validated" in s and "cross_validated" in r:
                    res[f"{beats} (cross-validated)"] = (
                        s["cross_validated"][t]["recall"] > r["cross_validated"][t]["recall"])
                res[f"{beats} (default)"] = s["default"][t]["recall"] > r["default"][t]["recall"]
                bs, br = s["best_at_90"].get(t), r["best_at_90"].get(t)
                res[f"{beats} (best at 90 %)"] = None if bs is None else bs["recall"] > (
                    br["recall"] if br else 0.0)
    return res
