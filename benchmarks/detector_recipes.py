"""Which training recipe makes the best hand detector from a few corrected frames: one arm of
``detector_bootstrap.py`` trained several ways, each scored on the same held-out half.

The arm (default ``suggest-20+self``: 20 % of the train half corrected by a person, the rest
labelled by round 1's own YOLO) is trained once per recipe with ``lrihar.train.detector``
(``fit_detector``, seed 0, same epochs), exported to ONNX at the recipe's size, run by the
``yolo`` backend on the held-out half and scored as the bootstrap scores its arms: eq. 3 recall
and eq. 4 accuracy at T_IoU 0.3 / 0.4 and per hand class, at the backend's default point
(confidence 0.25, NMS IoU 0.7), at the sweep's best recall with accuracy >= 90 % (chosen on
the held-out half: optimistic) and at the cross-validated confidence (chosen on one random half
of the held-out photos, scored on the other, NMS IoU 0.7: the honest deployment figure;
``bootstrap.scoring._cross_validated``). A recipe not trained to the end and exported is left
out. Recipes (``RECIPES``): the default (``mobilenetv2-yolo`` as shipped: its light box head,
reg_max 1, and a 0.1875-wide neck; an optimizer step after every batch of 16); the default
before the head study (``dfl-head``: DFL box head, YOLO11n's 0.25-wide neck) and the light head
at that width; and, measured before the head study and so on the DFL head: ultralytics' nominal
batch of 64 (gradients accumulated over four batches: two steps per epoch on this arm) alone and
with the backbone frozen for the first third of the epochs, the backbone frozen throughout,
stronger colour and rotation augmentation, 60 epochs, 256 or 416 px instead of 320; and the
packaged EfficientNet-Lite0 backbone instead of MobileNetV2. A recipe that changes the model
yaml trains from its own copy (``<recipe>/model.yaml``). One seed per recipe:
differences of a few points are within the noise of 128 held-out photos (one gloved hand = 1.2
points of gloved recall).

Usage (after ``detector_bootstrap.py prepare --out DIR`` and, for a ``+self`` arm, ``relabel``):
    python benchmarks/detector_recipes.py train --work DIR [--recipes default,frozen-third] [--epochs 30]
    python benchmarks/detector_recipes.py score --work DIR
        -> benchmarks/results/detector_recipes.json, DIR/recipes/<arm>/results.md
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import write_model_yaml, write_result
from bootstrap.plan import DEFAULT_POINT, GRID_A, _load_plan
from bootstrap.polars_stand_in import _polars_stand_in
from bootstrap.report import _pct
from bootstrap.scoring import _cross_validated, _sweep_scores, heldout
from bootstrap.training import _export, _materialise

# The default architecture before the head study: YOLO11n's neck width and its DFL box head
# (16 bins per box side). The recipes measured before that study were trained on it.
DFL_HEAD = {"reg_max": 16, "width_multiple": 0.25}
RECIPES: dict[str, dict] = {
    "default": {},  # mobilenetv2-yolo as shipped; an optimizer step after every batch of 16
    "dfl-head": {"model": DFL_HEAD},  # the default before the head study
    "reg-max-1-wide": {"model": {"width_multiple": 0.25}},  # the light box head, YOLO11n's neck width
    "nbs-64": {"model": DFL_HEAD, "nominal_batch": 64},  # ultralytics' nominal batch: the default before
    "frozen-third": {"model": DFL_HEAD, "freeze_backbone_epochs": "third", "nominal_batch": 64},
    "frozen": {"model": DFL_HEAD, "freeze_backbone_epochs": "all"},
    "colour+rotate": {"model": DFL_HEAD, "augment": {"hsv_h": 0.15, "degrees": 10.0}},
    "epochs-60": {"model": DFL_HEAD, "epochs": 60},  # twice the passes: are the scores still low at 0.25?
    "imgsz-256": {"model": DFL_HEAD, "imgsz": 256},
    "imgsz-416": {"model": DFL_HEAD, "imgsz": 416},
    "efficientnet-lite0": {"arch": "efficientnet-lite0-yolo"},
}


def recipe_config(name: str, epochs: int, batch: int, device: str, workers: int, folder: Path):
    """The ``DetectorTrainConfig`` of recipe ``name``; a recipe that changes the model yaml gets
    its own copy in ``folder``."""
    from lrihar.train.detector import DetectorTrainConfig

    if name not in RECIPES:
        raise SystemExit(f"--recipes: unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    options = dict(RECIPES[name])
    epochs = options.pop("epochs", epochs)
    freeze = options.pop("freeze_backbone_epochs", None)
    if freeze is not None:
        options["freeze_backbone_epochs"] = epochs if freeze == "all" else max(1, epochs // 3)
    if "model" in options:
        arch = options.get("arch", "mobilenetv2-yolo")
        options["arch"] = str(write_model_yaml(arch, folder / "model.yaml", options.pop("model")))
    options.setdefault("imgsz", 320)
    # val=False: no per-epoch validation on the training images (the arm's set has no other);
    # best.pt is the last epoch, and a third of each epoch's CPU time is saved.
    return DetectorTrainConfig(epochs=epochs, batch=batch, device=device, seed=0, patience=epochs,
                               workers=workers, plots=False, val=False, **options)


def _folder(work: Path, arm: str, name: str) -> Path:
    return work / "recipes" / arm / name


def train(work: Path, arm: str, recipes: list[str], epochs: int, batch: int, device: str, workers: int,
          verbose: bool) -> None:
    """Train (or resume, or skip when done) each recipe on the arm's set, then export it."""
    from lrihar.artifacts import read_record
    from lrihar.train.detector import fit_detector

    plan = _load_plan(work)
    if arm not in plan["arms"]:
        raise SystemExit(f"--arm: unknown arm {arm!r}; choose from {', '.join(plan['arms'])}")
    _polars_stand_in()
    n = _materialise(work, arm)
    for name in recipes:
        cfg = recipe_config(name, epochs, batch, device, workers, _folder(work, arm, name))
        run = _folder(work, arm, name) / "run"
        if read_record(run).get("summary", {}).get("status") != "done":
            resume = (run / "weights" / "last.pt").is_file()
            if run.exists() and not resume:
                shutil.rmtree(run)  # a start that ended before its first epoch: begin again
            print(f"{name}: {'resuming' if resume else 'training'} {arm} ({n} images), {cfg.epochs} epochs, "
                  f"{cfg.imgsz} px", flush=True)
            fit_detector(work / "arms" / arm / "data.yaml", run, cfg, state_dir=work / ".offline",
                         resume=resume, verbose=verbose)
        print(f"{name}: trained and exported ({_export(work, arm, run, cfg.imgsz)})", flush=True)


def score(work: Path, arm: str) -> dict:
    """Score every trained recipe of the arm on the held-out half; JSON + Markdown."""
    from lrihar.artifacts import read_record
    from lrihar.evaluate.run_sweep import DetectorSpec, predict_once

    plan = _load_plan(work)
    test, paths, gts, classes = heldout(plan)
    out: dict = {"dataset": plan["dataset"], "arm": arm, "train_set": {k: plan["arms"][arm][k]
                                                                        for k in ("images", "boxes")},
                 "test_images": len(test), "recipes": {}}
    for name in RECIPES:
        run = _folder(work, arm, name) / "run"
        if not run.is_dir():
            continue
        record = read_record(run)
        status = record.get("summary", {}).get("status")
        onnx = sorted((run / "export").glob("detector-*.onnx")) if (run / "export").is_dir() else []
        if status != "done" or not onnx:  # still training (or stopped), or not exported yet
            print(f"{name}: training {status or 'not recorded'}, {'exported' if onnx else 'no export'}; "
                  "left out", flush=True)
            continue
        t0 = time.perf_counter()
        preds = predict_once(DetectorSpec("yolo", str(onnx[0])), paths, float(GRID_A.min()), 0.0,
                             cache=run.parent / "heldout-predictions.json")
        out["recipes"][name] = {"config": record["config"],
                                "training": {k: record["summary"].get(k) for k in
                                             ("epochs_done", "seconds", "status", "metrics")},
                                "predict_seconds": round(time.perf_counter() - t0, 1),
                                **_sweep_scores(preds, gts, classes, DEFAULT_POINT),
                                "cross_validated": _cross_validated(preds, gts, classes)}
        print(f"{name}: scored", flush=True)
    out["markdown"] = markdown(out)
    folder = work / "recipes" / arm
    (folder / "results.md").write_text(out["markdown"])
    print(out["markdown"])
    print("wrote", write_result("detector_recipes", out), "and", folder / "results.md")
    return out


def markdown(out: dict) -> str:
    """One table: each recipe at the default point, at its best point with accuracy >= 90 %
    (optimistic) and at the cross-validated confidence."""
    lines = [f"Arm `{out['arm']}` ({out['train_set']['images']} images / {out['train_set']['boxes']} boxes), "
             f"held-out half {out['test_images']} photos; R / A in %, T_IoU 0.3. Cross-validated: the "
             "confidence chosen on a random half of the held-out photos (best R at A ≥ 90 %, NMS IoU 0.7), "
             "scored on the other half, mean over 2 × 20 splits.", "",
             "| recipe | epochs | default: R | A | gloved R | bare R "
             "| best at A ≥ 90 % (optimistic): conf, NMS | R | A | gloved R "
             "| cross-validated: conf | R | A | gloved R | bare R |", "|---" * 15 + "|"]
    for name, r in out["recipes"].items():
        d, b, c = r["default"]["0.3"], r["best_at_90"].get("0.3"), r["cross_validated"]["0.3"]
        best = (f"{b['confidence']:.2f}, {b['nms_iou']:.1f} | {_pct(b['recall'])} | {_pct(b['accuracy'])} | "
                f"{_pct(b['recall_gloved_hand'])}") if b else "– | – | – | –"
        lines.append(f"| {name} | {r['training']['epochs_done']} | "
                     f"{_pct(d['recall'])} | {_pct(d['accuracy'])} | {_pct(d['recall_gloved_hand'])} | "
                     f"{_pct(d['recall_bare_hand'])} | {best} | {c['confidence_mean']:.2f} | "
                     f"{_pct(c['recall'])} | {_pct(c['accuracy'])} | {_pct(c['recall_gloved_hand'])} | "
                     f"{_pct(c['recall_bare_hand'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    t = sub.add_parser("train", help="train and export each recipe")
    s = sub.add_parser("score", help="score the trained recipes on the held-out half")
    for p in (t, s):
        p.add_argument("--work", type=Path, required=True, help="detector_bootstrap.py's work folder")
        p.add_argument("--arm", default="suggest-20+self")
    t.add_argument("--recipes", default="default,nbs-64,frozen-third,imgsz-256,efficientnet-lite0,"
                                        "colour+rotate,frozen",
                   help="comma-separated subset of " + ", ".join(RECIPES))
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--device", default="cpu")
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--quiet", action="store_true", help="less ultralytics output")
    args = parser.parse_args()
    if args.phase == "train":
        train(args.work, args.arm, args.recipes.split(","), args.epochs, args.batch, args.device,
              args.workers, not args.quiet)
    else:
        score(args.work, args.arm)


if __name__ == "__main__":
    main()
