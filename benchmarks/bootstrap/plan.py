"""The bootstrap's constants, the split into two halves, and ``prepare``: each arm's labels and
data.yaml, the shared train images, and the plan (``plan.json``) every later phase reads."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from _common import HANDS_DEV

DATASET = "gloves_roboflow"
IMGSZ = 320
IOUS = (0.3, 0.4)
ACCURACY_FLOOR = 0.9
SHARES = (10, 20)  # % of the train half corrected
ARMS = ("offline", "suggest-10", "suggest-20", "random-10", "random-20", "gt-100")
CLASSES = ("gloved_hand", "bare_hand")
DEFAULT_POINT = (0.25, 0.7)  # the yolo backend's default confidence and NMS IoU
GRID_A = np.round(np.arange(0.05, 0.951, 0.05), 2)
GRID_B = np.round(np.arange(0.1, 1.0001, 0.1), 2)
PLAN = "plan.json"
SELF = "+self"  # relabel's round-2 arm: <arm>+self


def split_halves(entries: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """Two halves, by image: seeded, stratified by the set of hand classes a photo shows."""
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e["file"]):
        strata[tuple(sorted(set(e["hand_classes"])))].append(e)
    rng = random.Random(seed)
    train: list[dict] = []
    test: list[dict] = []
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        half = len(group) // 2 + (len(group) % 2 and len(train) <= len(test))  # keep halves even
        train += group[:half]
        test += group[half:]
    return sorted(train, key=lambda e: e["file"]), sorted(test, key=lambda e: e["file"])


def _boxes(rows) -> np.ndarray:
    return np.asarray(rows, float).reshape(-1, 4)


def _annotate_folder(root: Path, entries: list[dict], src: Path, name: str) -> dict[str, list]:
    """Annotate ``entries`` (linked into one image folder) with the project defaults; boxes by file."""
    from lrihar.annotate.pipeline import annotate
    from lrihar.project import Project, init_project

    folder = root / f"{name}-images"
    folder.mkdir(parents=True)
    for e in entries:
        (folder / Path(e["file"]).name).symlink_to((src / e["file"]).resolve())
    init_project(root / name)
    project = Project.open(root / name)
    annotate(project, [str(folder)])
    boxes: dict[str, list] = {Path(e["file"]).name: [] for e in entries}
    for row in project.store.detections():
        boxes[Path(row.frame_name).name].append([round(v, 2) for v in row.xyxy])
    return boxes


def _suggested(project_root: Path, k: int, out: Path) -> list[dict]:
    """The K frames `lrihar suggest` picks (its JSON), run as a user would run it."""
    from lrihar.cli import main

    code = main(["suggest", "-p", str(project_root), "-n", str(k), "-o", str(out), "--no-progress"])
    if code != 0:
        raise SystemExit(f"lrihar suggest failed (exit {code})")
    return json.loads(out.read_text())


def _yolo_lines(boxes: np.ndarray, width: int, height: int) -> str:
    """One-class YOLO label lines (class 0 = hand) of xyxy pixel boxes."""
    b = np.clip(_boxes(boxes), 0, [width, height, width, height])
    lines = []
    for x1, y1, x2, y2 in b:
        if x2 > x1 and y2 > y1:
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            lines.append(f"0 {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _label_quality(labels: dict[str, np.ndarray], train: list[dict]) -> dict:
    """Eq. 3 / 4 of an arm's labels against the ground truth of the train half."""
    from lrihar.evaluate.metrics import detection_scores

    preds = [_boxes(labels[Path(e["file"]).name]) for e in train]
    gts = [_boxes(e["hands"]) for e in train]
    out = {}
    for t in IOUS:
        s = detection_scores(preds, gts, t)
        out[str(t)] = {"recall": round(s.recall, 4), "accuracy": round(s.accuracy, 4)}
    return out


def prepare(out: Path, seed: int = 0, dataset: Path | None = None) -> dict:
    """Write DIR: plan.json, images/train (shared), arms/<arm>/{labels/train, data.yaml}."""
    from PIL import Image

    from lrihar.evaluate.run_sweep import DetectorSpec, predict_once
    from lrihar.versions import machine_info, package_versions

    src = dataset or HANDS_DEV / DATASET
    if not (src / "gt.json").is_file():
        raise SystemExit(f"{src / 'gt.json'}: the gloves set is not there (pass --dataset)")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; prepare into a new folder")
    entries = [e for e in json.loads((src / "gt.json").read_text())["images"] if e["hands"] is not None]
    train, test = split_halves(entries, seed)
    started = time.perf_counter()
    plan: dict = {"dataset": str(src.resolve()), "seed": seed, "imgsz": IMGSZ,
                  "split": {"train": [e["file"] for e in train], "test": [e["file"] for e in test]},
                  "versions": package_versions(), "machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        offline = _annotate_folder(tmp, train, src, "train")
        plan["offline_train_seconds"] = round(time.perf_counter() - t0, 1)
        picks = {}
        for share in SHARES:
            k = round(share / 100 * len(train))
            picks[share] = _suggested(tmp / "train", k, tmp / f"suggest-{share}.json")
        t0 = time.perf_counter()
        heldout_default = _annotate_folder(tmp, test, src, "test")
        test_paths = [str(src / e["file"]) for e in test]
        sweep_preds = predict_once(DetectorSpec("mediapipe-hands"), test_paths, float(GRID_A.min()), 0.0)
        plan["offline_heldout"] = {"default": heldout_default, "sweep": [p.to_json() for p in sweep_preds],
                                   "seconds": round(time.perf_counter() - t0, 1)}
    plan["offline_train"] = offline
    plan["suggest"] = {str(s): [{"file": Path(p["name"]).name, "score": p["score"], "reasons": p["reasons"]}
                                for p in ps] for s, ps in picks.items()}
    order = [Path(e["file"]).name for e in train]
    random.Random(seed + 1).shuffle(order)  # one permutation: the 10 % frames lie inside the 20 %
    corrected = {"offline": [], "gt-100": [Path(e["file"]).name for e in train]}
    for share in SHARES:
        k = round(share / 100 * len(train))
        corrected[f"suggest-{share}"] = [p["file"] for p in plan["suggest"][str(share)]]
        corrected[f"random-{share}"] = sorted(order[:k])
    truth = {Path(e["file"]).name: e for e in train}
    images = out / "images" / "train"
    images.mkdir(parents=True)
    for e in train:
        im = Image.open(src / e["file"]).convert("RGB")
        s = IMGSZ / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
        im.save(images / f"{Path(e['file']).stem}.jpg", quality=90)
    plan["arms"] = {}
    for arm in ARMS:
        fixed = set(corrected[arm])
        labels = {name: (truth[name]["hands"] if name in fixed else offline[name]) for name in truth}
        plan["arms"][arm] = _write_arm(out, arm, labels, fixed, offline, train)
    plan["prepare_seconds"] = round(time.perf_counter() - started, 1)
    (out / PLAN).write_text(json.dumps(plan, indent=1) + "\n")
    _print_prepared(plan)
    return plan


def _write_arm(out: Path, arm: str, labels: dict[str, list], fixed: set[str], offline: dict[str, list],
               train: list[dict]) -> dict:
    """Write ``arms/<arm>/labels/train`` + ``data.yaml``; the arm's plan entry."""
    truth = {Path(e["file"]).name: e for e in train}
    folder = out / "arms" / arm / "labels" / "train"
    shutil.rmtree(folder, ignore_errors=True)  # relabel may write an arm again
    folder.mkdir(parents=True)
    n_images = n_boxes = 0
    for name, boxes in sorted(labels.items()):
        text = _yolo_lines(np.asarray(boxes, float), truth[name]["width"], truth[name]["height"])
        if text:  # frames with no box stay out of the set, as in `lrihar export` (no --negatives)
            (folder / f"{Path(name).stem}.txt").write_text(text)
            n_images += 1
            n_boxes += text.count("\n")
    (out / "arms" / arm / "data.yaml").write_text(
        "train: images/train\nval: images/train\nnames:\n  0: hand\n")
    return {"corrected": sorted(fixed), "images": n_images, "boxes": n_boxes,
            "corrected_were_empty": sum(not offline[n] for n in fixed),
            "corrected_truth_boxes": {
                c: sum(truth[n]["hand_classes"].count(c) for n in fixed) for c in CLASSES},
            "label_quality": _label_quality(labels, train)}


def _print_prepared(plan: dict) -> None:
    print(f"train half {len(plan['split']['train'])} photos, held-out half {len(plan['split']['test'])}")
    for arm, a in plan["arms"].items():
        q = a["label_quality"]["0.3"]
        print(f"  {arm:11s} corrected {len(a['corrected']):3d} ({a['corrected_were_empty']:3d} were empty)  "
              f"set {a['images']:3d} images / {a['boxes']:3d} boxes  labels vs truth @0.3: "
              f"recall {q['recall']:.3f} accuracy {q['accuracy']:.3f}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_plan(work: Path) -> dict:
    if not (work / PLAN).is_file():
        raise SystemExit(f"{work / PLAN}: not found; run `prepare --out {work}` first")
    return json.loads((work / PLAN).read_text())
