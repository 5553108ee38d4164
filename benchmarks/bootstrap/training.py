"""``train``: each arm trained (or resumed, or skipped when done), in parallel processes if asked;
its ONNX export; the weights carried out (``--collect``) and back in (``--weights``)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from bootstrap.plan import IMGSZ, _load_plan, _read_json
from bootstrap.polars_stand_in import _have, _polars_stand_in

SCRIPT = Path(__file__).resolve().parents[1] / "detector_bootstrap.py"  # what each parallel arm runs


def _can_export() -> bool:
    return all(_have(m) for m in ("onnx", "onnxslim", "onnxruntime", "supervision"))


def _materialise(work: Path, arm: str) -> int:
    """Copy the arm's images (those with a label file) from the shared folder; returns the count."""
    folder = work / "arms" / arm
    dst = folder / "images" / "train"
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for label in sorted((folder / "labels" / "train").glob("*.txt")):
        target = dst / f"{label.stem}.jpg"
        if not target.is_file():
            shutil.copyfile(work / "images" / "train" / f"{label.stem}.jpg", target)
        n += 1
    return n


def _export(work: Path, arm: str, run: Path | None = None, imgsz: int = IMGSZ) -> Path:
    """``<run>/export/detector-<imgsz>.onnx`` (exported and parity-checked on the arm's images if
    missing); ``run`` defaults to ``arms/<arm>/run``."""
    from lrihar.deploy.onnx_detector import export_onnx

    run = run or work / "arms" / arm / "run"
    onnx = run / "export" / f"detector-{imgsz}.onnx"
    if not onnx.is_file():
        samples = sorted((work / "arms" / arm / "images" / "train").glob("*.jpg"))[:8]
        if not samples:
            samples = sorted((work / "images" / "train").glob("*.jpg"))[:8]
        export_onnx(run / "weights" / "best.pt", run / "export", imgsz, samples, work / ".offline")
    return onnx


def _train_in_parallel(work: Path, arms: list[str], jobs: int, options: list[str]) -> None:
    """Each arm in its own process (``train --arms ARM``), ``jobs`` at a time; logs in arms/<arm>/."""
    import subprocess

    pending, running, failed = list(arms), [], []
    while pending or running:
        while pending and len(running) < jobs:
            arm = pending.pop(0)
            log = (work / "arms" / arm / "train.log").open("w")
            cmd = [sys.executable, str(SCRIPT), "train", "--work", str(work), "--arms", arm,
                   "--jobs", "1", *options]
            running.append((arm, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"{arm}: started (log {log.name})", flush=True)
        time.sleep(2)
        for item in list(running):
            arm, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                print(f"{arm}: finished, exit {proc.returncode}", flush=True)
                if proc.returncode:
                    failed.append(arm)
                    print("".join(Path(log.name).read_text().splitlines(keepends=True)[-15:]))
    if failed:
        raise SystemExit(f"training failed for {', '.join(failed)}")


def train(work: Path, arms: list[str], device: str, epochs: int, batch: int = 16, workers: int = 4,
          arch: str = "mobilenetv2-yolo", imagenet_weights: Path | None = None,
          collect: Path | None = None, export: bool | None = None, verbose: bool = True,
          jobs: int = 1, val: bool = True) -> dict:
    """Train (or resume, or skip when done) each arm, ``jobs`` arms at a time in their own
    processes; export ONNX when possible; collect each best.pt."""
    from lrihar.artifacts import read_record
    from lrihar.train.detector import DetectorTrainConfig, fit_detector

    plan = _load_plan(work)
    unknown = [arm for arm in arms if arm not in plan["arms"]]
    if unknown:
        raise SystemExit(f"--arms: unknown arm {unknown[0]!r}; choose from {', '.join(plan['arms'])}")
    if jobs > 1 and len(arms) > 1:
        options = ["--device", device, "--epochs", str(epochs), "--batch", str(batch), "--workers",
                   str(workers), "--arch", arch, *(["--quiet"] if not verbose else [])]
        if imagenet_weights is not None:
            options += ["--imagenet-weights", str(Path(imagenet_weights).resolve())]
        if export is False:
            options.append("--no-export")
        if not val:
            options.append("--no-val")
        _train_in_parallel(work, arms, jobs, options)
        return train(work, arms, device, epochs, batch, workers, arch, imagenet_weights, collect, export,
                     verbose, val=val)  # all done now: records, exports, collection
    _polars_stand_in()
    export = _can_export() if export is None else export
    done: dict[str, dict] = {}
    for arm in arms:
        run = work / "arms" / arm / "run"
        record = read_record(run)
        if record.get("summary", {}).get("status") == "done":
            print(f"{arm}: trained already ({record['summary']['epochs_done']} epochs), skipped")
        else:
            n = _materialise(work, arm)
            resume = (run / "weights" / "last.pt").is_file()
            if run.exists() and not resume:
                shutil.rmtree(run)  # a start that ended before its first epoch: begin again
            print(f"{arm}: {'resuming' if resume else 'training'} on {n} images, {epochs} epochs, {device}",
                  flush=True)
            cfg = DetectorTrainConfig(arch=arch, epochs=epochs, imgsz=IMGSZ, batch=batch, device=device,
                                      seed=0, patience=epochs, workers=workers, plots=False, val=val)
            fit_detector(work / "arms" / arm / "data.yaml", run, cfg, state_dir=work / ".offline",
                         imagenet_weights=imagenet_weights, resume=resume, verbose=verbose)
            record = read_record(run)
        if export:
            print(f"{arm}: exported {_export(work, arm)}")
        done[arm] = record
    if collect is not None:
        collect.mkdir(parents=True, exist_ok=True)
        for arm in done:
            shutil.copyfile(work / "arms" / arm / "run" / "weights" / "best.pt", collect / f"{arm}.pt")
        (collect / "train.json").write_text(json.dumps(done, indent=1) + "\n")
        print(f"collected {len(done)} best.pt files and train.json in {collect}")
    elif not export:
        print("ONNX export left to the score phase (it needs onnxslim and supervision)")
    return done


def _import_weights(work: Path, weights: Path) -> None:
    """Place ``weights/<arm>.pt`` (from ``train --collect``) as each arm's best.pt, train.json's
    records as its lrihar-train.json."""
    records = _read_json(weights / "train.json")
    for pt in sorted(weights.glob("*.pt")):
        run = work / "arms" / pt.stem / "run"
        if not (work / "arms" / pt.stem).is_dir():
            continue
        best = run / "weights" / "best.pt"
        if best.is_file() and best.read_bytes() == pt.read_bytes():
            continue
        best.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pt, best)
        shutil.rmtree(run / "export", ignore_errors=True)  # an export of other weights
        for cache in ("heldout-predictions.json", "train-predictions.json"):  # keyed on the ONNX path only
            (work / "arms" / pt.stem / cache).unlink(missing_ok=True)
        if pt.stem in records:
            (run / "lrihar-train.json").write_text(json.dumps(records[pt.stem], indent=2) + "\n")
