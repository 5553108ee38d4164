"""Classifier comparison (paper Table 4): accuracy per post and line, call time p50 / p90.

:func:`template_matcher_row` scores the template matcher against ground truth (``lrihar report``);
:func:`classifier_comparison` puts it beside every trained classifier run (teacher, students,
baselines) on one held-out split (``lrihar evaluate --classifiers``).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.evaluate.confusion import Confusion


def template_matcher_row(project, confusions: dict[str, Confusion], sample: int = 30) -> dict[str, Any]:
    """Accuracy from ``confusions`` and the per-crop call time (embed + match, batch 1)."""
    from lrihar.classify.matcher import template_matcher
    from lrihar.crops import iter_crops
    from lrihar.models.encoders import Crop

    store = project.store
    tm = template_matcher(store, project.config)
    encoder, bank, matcher, setup_s = tm.encoder, tm.bank, tm.matcher, tm.bank_s
    # with their landmarks: hand-pose and fusion (which auto may pick) read them
    crops = [Crop(img, None if row.world_landmarks is None else np.asarray(row.world_landmarks),
                  row.handedness) for row, img in itertools.islice(iter_crops(store), sample)]
    times = []
    for crop in crops[:1] + crops:  # the first call warms up
        t0 = time.perf_counter()
        matcher.assign(encoder.embed([crop]))
        times.append(1000 * (time.perf_counter() - t0))
    times = times[1:]
    return {
        "classifier": f"template matching ({encoder.name}, {len(bank.files)} templates)",
        "accuracy": {post: round(c.summary()["accuracy"], 4) for post, c in confusions.items()},
        "accuracy_without_ng": {post: round(c.summary()["accuracy_without_ng"], 4)
                                for post, c in confusions.items()},
        "training_s": round(setup_s, 2), "training_note": "no training: templates embedded",
        "call_ms_p50": round(float(np.percentile(times, 50)), 2) if times else None,
        "call_ms_p90": round(float(np.percentile(times, 90)), 2) if times else None,
        "timed_calls": len(times),
    }


def _post_of_crops(project, paths: list[str]) -> list[str]:
    """The inspection post of each exported crop (``<frame>_<detection id>.jpg``), else ``-``."""
    ids = []
    for p in paths:
        tail = Path(p).stem.rsplit("_", 1)[-1]
        ids.append(int(tail) if tail.isdigit() else None)
    posts = dict(project.store.db.execute(
        "SELECT d.id, COALESCE(s.post, '-') FROM detections d JOIN sources s ON s.id = d.source_id"))
    return [posts.get(i, "-") if i is not None else "-" for i in ids]


def _accuracy(pred: np.ndarray, truth: np.ndarray, posts: list[str]) -> dict[str, float]:
    out = {post: round(float((pred[m] == truth[m]).mean()), 4)
           for post in sorted(set(posts)) if (m := np.array([p == post for p in posts])).any()}
    return out | {"all": round(float((pred == truth).mean()), 4)} if len(truth) else out


def _call_times(call, crops: list, sample: int) -> dict[str, Any]:
    crops = crops[:sample]
    times = []
    for crop in crops[:1] + crops:  # the first call warms up
        t0 = time.perf_counter()
        call([crop])
        times.append(1000 * (time.perf_counter() - t0))
    times = times[1:]
    return {"call_ms_p50": round(float(np.percentile(times, 50)), 2) if times else None,
            "call_ms_p90": round(float(np.percentile(times, 90)), 2) if times else None,
            "timed_calls": len(times)}


def _template_row(project, crops, truth, classes, posts, sample) -> dict[str, Any]:
    from lrihar.classify.matcher import template_matcher
    from lrihar.models.encoders import Crop

    tm = template_matcher(project.store, project.config)  # `auto` picks per project
    encoder, bank, matcher, setup_s = tm.encoder, tm.bank, tm.matcher, tm.bank_s
    result = matcher.assign(encoder.embed([Crop(c) for c in crops]))
    index = {name: classes.index(name) if name in classes else -2 for name in bank.classes}
    label = np.array([index[bank.classes[b]] if lab >= 0 else -1 for lab, b in
                      zip(result.label, result.best_class, strict=True)])  # NG (-1) is always wrong here
    best = np.array([index[bank.classes[b]] for b in result.best_class])
    return {"classifier": f"template matching ({encoder.name}, {len(bank.files)} templates)",
            "accuracy": _accuracy(label, truth, posts), "accuracy_without_ng": _accuracy(best, truth, posts),
            "training_s": round(setup_s, 2), "training_note": "no training: templates embedded",
            **_call_times(lambda c: matcher.assign(encoder.embed([Crop(x) for x in c])), crops, sample)}


def _run_label(record: dict, spec, teachers: set[str], run: str) -> str:
    size = f"{spec.backbone} {spec.input_size} px"
    if record.get("command") == "distill":
        return f"student {size} (KD from {record['summary'].get('teacher')})"
    return f"teacher {size}" if run in teachers else f"{size}, trained alone (no KD)"


def classifier_comparison(project, data: Path | None = None, sample: int = 30) -> dict[str, Any]:
    """Table 4: the template matcher and every trained classifier run on one held-out split.

    The split is ``data/test`` (else ``data/val``) of ``data``, by default the data folder of the
    latest distilled student's teacher (else of the latest finetune run): the crops of the
    sources finetune held out. Accuracy per inspection post and overall (``all``), training time,
    per-crop call time p50 / p90 at batch 1 (the exported ONNX file where there is one, else
    PyTorch). Runs trained on other classes are left out.
    """
    from lrihar.artifacts import CLASSIFIER, list_runs, read_record
    from lrihar.errors import BadInputError
    from lrihar.train.classifier_data import class_folders, read_split
    from lrihar.train.classifier_models import ClassifierSpec, load_classifier

    runs = [p for p in list_runs(CLASSIFIER, project) if (p / "best.safetensors").is_file()]
    if data is None:
        if not runs:
            raise BadInputError("--classifiers: no trained classifier; run `lrihar finetune` first")
        students = [p for p in runs if read_record(p).get("command") == "distill"]
        ref = read_record(students[-1]) if students else read_record(runs[-1])
        data = Path(ref["summary"]["data"])
    if not (data / "train").is_dir():
        raise BadInputError(f"{data}: no train/ folder; give the ImageFolder set the classifiers trained on")
    folders = class_folders(data / "train")
    classes = list(folders)
    # test/ where it holds crops (a project export writes an empty one), else val/
    for split in (data / "test", data / "val"):
        held = read_split(split, folders, 1024, False) if split.is_dir() else None
        if held is not None and len(held):
            break
    else:
        raise BadInputError(f"{data}: no crops in test/ or val/ to compare the classifiers on")
    posts = _post_of_crops(project, held.paths)
    out: dict[str, Any] = {"data": str(data), "split": split.name, "crops": len(held), "rows": [],
                           "notes": []}
    try:
        out["rows"].append(_template_row(project, held.images, held.labels, classes, posts, sample))
    except BadInputError as exc:
        out["notes"].append(f"template matcher left out: {exc}")
    records = {p: read_record(p) for p in runs}
    teachers = {r["summary"].get("teacher") for r in records.values() if r.get("command") == "distill"}
    for run in runs:
        spec = ClassifierSpec.load(run)
        if spec.classes != classes:
            continue
        record = records[run]
        onnx = _deployed(run)
        if onnx is not None:
            from lrihar.models.classifiers import OnnxClassifier

            model = OnnxClassifier(onnx)
            pred = model.classify(held.images).label
            call, runtime = model.classify, f"ONNX {model.precision}"
        else:
            call, runtime = _torch_call(load_classifier(run)), "PyTorch"
            pred = call(held.images)
        out["rows"].append({
            "classifier": f"{_run_label(record, spec, teachers, run.name)} [{run.name}, {runtime}]",
            "accuracy": _accuracy(np.asarray(pred), held.labels, posts),
            "accuracy_without_ng": _accuracy(np.asarray(pred), held.labels, posts),
            "training_s": record["summary"].get("seconds"),
            "training_note": f"init {spec.init}, {record['summary'].get('epochs_done')} epochs",
            **_call_times(call, held.images, sample)})
    return out


def _deployed(run: Path) -> Path | None:
    from lrihar.artifacts import deployed_classifier
    from lrihar.errors import BadInputError

    try:
        return deployed_classifier(run)
    except BadInputError:
        return None


def _torch_call(model):
    import torch

    from lrihar.models.classifiers.preprocess import to_pixels

    s = model.spec

    def call(crops):
        with torch.inference_mode():
            return model(torch.from_numpy(to_pixels(crops, s.input_size, s.mean, s.std))).argmax(-1).numpy()

    return call
