"""Round 2 (``relabel``): each given arm's own YOLO re-annotates the frames nobody corrected, as
the arm ``<arm>+self``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bootstrap.plan import DEFAULT_POINT, GRID_A, PLAN, SELF, _boxes, _label_quality, _load_plan, _write_arm
from bootstrap.scoring import _point
from bootstrap.training import _export, _import_weights

RULES = ("union", "replace")


def _merge(current: np.ndarray, found: np.ndarray, rule: str, iou: float = 0.5) -> np.ndarray:
    """A frame's round-2 boxes: ``union`` adds the detector's boxes that overlap no current box at
    IoU >= ``iou``; ``replace`` takes the detector's boxes alone."""
    from lrihar.boxes import box_iou

    current, found = _boxes(current), _boxes(found)
    if rule == "replace":
        return found
    overlap = box_iou(found, current)
    new = found[overlap.max(axis=1) < iou] if overlap.shape[1] else found
    return np.concatenate([current, new])


def _arm_labels(plan: dict, arm: str, truth: dict[str, dict]) -> dict[str, list]:
    """A round-1 arm's labels by file, as ``prepare`` built them."""
    fixed = set(plan["arms"][arm]["corrected"])
    return {n: truth[n]["hands"] if n in fixed else plan["offline_train"][n] for n in truth}


def _class_recall(labels: dict[str, list], train: list[dict]) -> dict:
    """Eq. 3 / 4 of labels against the train half's truth, with the recall of each hand class."""
    return _point([_boxes(labels[Path(e["file"]).name]) for e in train], [_boxes(e["hands"]) for e in train],
                  [list(e["hand_classes"]) for e in train])


def relabel(work: Path, weights: list[Path], arms: list[str], confidence: float = 0.5,
            rule: str = "replace") -> dict:
    """The paper's second turn: each arm's own YOLO re-annotates the frames nobody corrected.

    Writes the arm ``<arm>+self`` as ``prepare`` writes its arms: the corrected frames keep their
    ground truth, every other frame gets its offline-default boxes merged with the YOLO boxes at
    ``confidence`` (NMS IoU 0.7, the backend's default) by ``rule``; both rules are measured.
    """
    from lrihar.evaluate.run_sweep import DetectorSpec, predict_once
    from lrihar.evaluate.sweep import keep

    plan = _load_plan(work)
    if rule not in RULES:
        raise SystemExit(f"--rule: {rule!r}; choose from {', '.join(RULES)}")
    unknown = [a for a in arms if a not in plan["arms"] or a.endswith(SELF)]
    if unknown:
        raise SystemExit(f"--arms: {unknown[0]!r} is not a round-1 arm; choose from "
                         f"{', '.join(a for a in plan['arms'] if not a.endswith(SELF))}")
    for arm in arms:  # before anything is written
        if (work / "arms" / (arm + SELF) / "run").exists():
            raise SystemExit(f"{work / 'arms' / (arm + SELF) / 'run'}: {arm + SELF} is trained already; "
                             f"remove {work / 'arms' / (arm + SELF)} to relabel it again")
    for folder in weights:
        _import_weights(work, folder)
    src = Path(plan["dataset"])
    by_file = {e["file"]: e for e in json.loads((src / "gt.json").read_text())["images"]}
    train = [by_file[f] for f in plan["split"]["train"]]
    paths = [str(src / e["file"]) for e in train]
    offline = plan["offline_train"]
    truth = {Path(e["file"]).name: e for e in train}
    for arm in arms:
        new_arm = arm + SELF
        if not (work / "arms" / arm / "run" / "weights" / "best.pt").is_file():
            raise SystemExit(f"{arm}: no trained weights; pass the `train --collect` folder with "
                             f"{arm}.pt as --weights")
        onnx = _export(work, arm)
        t0 = time.perf_counter()
        preds = predict_once(DetectorSpec("yolo", str(onnx)), paths, float(GRID_A.min()), 0.0,
                             cache=work / "arms" / arm / "train-predictions.json")
        found = {Path(e["file"]).name: p.xyxy[keep(p, "score-nms", confidence, DEFAULT_POINT[1])]
                 for e, p in zip(train, preds, strict=True)}
        fixed = set(plan["arms"][arm]["corrected"])
        by_rule = {r: {name: (truth[name]["hands"] if name in fixed
                              else _merge(np.asarray(offline[name], float), found[name], r).round(2).tolist())
                       for name in truth} for r in RULES}
        entry = _write_arm(work, new_arm, by_rule[rule], fixed, offline, train)
        entry.update({"round": 2, "from_arm": arm, "rule": rule, "confidence": confidence,
                      "nms_iou": DEFAULT_POINT[1], "predict_seconds": round(time.perf_counter() - t0, 1),
                      "label_quality_by_rule": {r: _label_quality(by_rule[r], train) for r in RULES},
                      "label_recall_by_class": {a: _class_recall(labels, train) for a, labels in (
                          (arm, _arm_labels(plan, arm, truth)), (new_arm, by_rule[rule]))}})
        plan["arms"][new_arm] = entry
        (work / PLAN).write_text(json.dumps(plan, indent=1) + "\n")
        for r, q in entry["label_quality_by_rule"].items():
            mark = " (written)" if r == rule else " " * 10
            print(f"  {new_arm:16s} rule {r:7s}{mark}  labels vs truth "
                  f"@0.3: recall {q['0.3']['recall']:.3f} accuracy {q['0.3']['accuracy']:.3f}")
        print(f"{new_arm}: set {entry['images']} images / {entry['boxes']} boxes "
              f"({arm}: {plan['arms'][arm]['images']} / {plan['arms'][arm]['boxes']}); label recall @0.3 "
              + ", ".join(f"{a} gloved {c['0.3']['recall_gloved_hand']:.3f} "
                          f"bare {c['0.3']['recall_bare_hand']:.3f}"
                          for a, c in entry["label_recall_by_class"].items()), flush=True)
    return plan
