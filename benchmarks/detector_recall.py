"""Recall (eq. 3) and accuracy (eq. 4) of the offline default detector on the real dev sets.

Compares, in one run and on the same images:
  * ``bare``: a plain ``mediapipe.solutions.hands.Hands`` call (static mode, detection confidence
    0.3, boxes = landmark min/max padded 10 %), the baseline named in the issue;
  * ``lrihar``: ``mediapipe-hands`` exactly as ``lrihar annotate`` runs it (project defaults,
    through the store), and a few single-idea variants of the detector options.

Usage: python benchmarks/detector_recall.py [--quick]   -> benchmarks/results/detector_recall.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, load_gt, write_result
from lrihar.evaluate.metrics import detection_scores
from lrihar.sources import read_image

DATASETS = ("gloves_roboflow", "mmpose_hands")
IOUS = (0.3, 0.4)

VARIANTS = {
    "no extra views": {"zoom_out": 1.0},
    "zoom_out 1.5 (default)": {},
    "zoom_out 2.0": {"zoom_out": 2.0},
    "zoom_out 1.5 + flip": {"flip": True},
    "zoom_out 1.5 + tiles 2": {"tiles": 2},
    "landmark_threshold 0.2": {"landmark_threshold": 0.2},
    "box_threshold 0.1": {"box_threshold": 0.1},
}


def bare_mediapipe(images: list[np.ndarray]) -> list[np.ndarray]:
    from mediapipe.python.solutions import hands as mp_hands

    out = []
    with mp_hands.Hands(static_image_mode=True, max_num_hands=4,
                        min_detection_confidence=0.3) as hands:
        for img in images:
            h, w = img.shape[:2]
            boxes = []
            for lm in hands.process(img).multi_hand_landmarks or []:
                xs = np.array([p.x for p in lm.landmark]) * w
                ys = np.array([p.y for p in lm.landmark]) * h
                dx, dy = 0.1 * np.ptp(xs), 0.1 * np.ptp(ys)
                boxes.append([xs.min() - dx, ys.min() - dy, xs.max() + dx, ys.max() + dy])
            out.append(np.array(boxes).reshape(-1, 4))
    return out


def via_annotate(folder: Path, files: list[str]) -> list[np.ndarray]:
    """Run `lrihar annotate` on the image folder and read the boxes back from the store."""
    from lrihar.annotate.pipeline import annotate
    from lrihar.project import Project, init_project

    with tempfile.TemporaryDirectory() as tmp:
        init_project(tmp)
        project = Project.open(tmp)
        annotate(project, [str(folder / "images")])
        by_name: dict[str, list] = {}
        for row in project.store.detections():
            by_name.setdefault(Path(row.frame_name).name, []).append(row.xyxy)
        project.store.close()
    return [np.array(by_name.get(Path(f).name, [])).reshape(-1, 4) for f in files]


def direct(images: list[np.ndarray], options: dict) -> list[np.ndarray]:
    from lrihar.models.detectors import create_detector

    detector = create_detector("mediapipe-hands", **options)
    return [detector(img).xyxy for img in images]


def score(preds: list[np.ndarray], gts: list[np.ndarray], seconds: float,
          box_classes: list[list[str]] | None = None) -> dict:
    out = {"ms_per_image": round(1000 * seconds / len(gts), 1)}
    for t in IOUS:
        s = detection_scores(preds, gts, t)
        out[f"recall@{t}"] = round(s.recall, 4)
        out[f"accuracy@{t}"] = round(s.accuracy, 4)
    if box_classes:  # recall per kind of hand (gloves set: gloved_hand / bare_hand)
        from lrihar.evaluate.metrics import best_ious

        hits: dict[str, list[int]] = {}
        for p, g, classes in zip(preds, gts, box_classes, strict=True):
            _, per_gt = best_ious(p, g)
            for ok, c in zip(per_gt >= IOUS[0] - 1e-9, classes, strict=True):
                hits.setdefault(c, [0, 0])
                hits[c][0] += int(ok)
                hits[c][1] += 1
        out[f"recall@{IOUS[0]}_by_class"] = {c: round(h / n, 4) for c, (h, n) in sorted(hits.items())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Only bare and lrihar, no variants.")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for dataset in DATASETS:
        entries = load_gt(dataset)
        files = [im["file"] for im in entries]
        images = [read_image(HANDS_DEV / dataset / f) for f in files]
        gts = [np.array(im["hands"], dtype=float).reshape(-1, 4) for im in entries]
        box_classes = [im["hand_classes"] for im in entries] if "hand_classes" in entries[0] else None
        rows: dict[str, dict] = {}
        runs: dict[str, tuple] = {"bare": (bare_mediapipe, images),
                                  "lrihar annotate": (via_annotate, HANDS_DEV / dataset, files)}
        if not args.quick:
            for name, options in VARIANTS.items():
                runs[name] = (direct, images, options)
        for name, (fn, *fn_args) in runs.items():
            start = time.perf_counter()
            preds = fn(*fn_args)
            rows[name] = score(preds, gts, time.perf_counter() - start, box_classes)
            print(f"{dataset:16s} {name:26s} {rows[name]}", flush=True)
        results[dataset] = {"images": len(entries), "boxes": int(sum(len(g) for g in gts)), "runs": rows}
    target = results["gloves_roboflow"]["runs"]["lrihar annotate"]
    verdict = {"target": "recall@0.3 >= 0.85 at accuracy@0.3 >= 0.90 on gloves_roboflow",
               "met": target["recall@0.3"] >= 0.85 and target["accuracy@0.3"] >= 0.90}
    print(verdict)
    print("wrote", write_result("detector_recall", {"datasets": results, "verdict": verdict}))


if __name__ == "__main__":
    main()
