"""Commands for the project's own detector: train-detector, export-runtime, suggest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import ProjectOpt, app, echo_err, train_and_report
from lrihar.errors import BadInputError


@app.command("train-detector")
def train_detector(
    project: ProjectOpt = Path("."),
    arch: Annotated[str | None, typer.Option(
        help="mobilenetv2-yolo (pretrained ImageNet backbone; default), efficientnet-lite0-yolo "
             "(pretrained), yolo11n, yolov8n, yolov5nu (random init), or a local .pt / model .yaml.")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Passes over the training images \\[default: 30].")] = None,
    imgsz: Annotated[int | None, typer.Option(
        help="Training size in pixels, a multiple of 32 \\[default: 320].")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step \\[default: 16].")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N \\[default: cpu].")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the training and of the train/val split \\[default: 0].")] = None,
    patience: Annotated[int | None, typer.Option(
        help="Stop after this many epochs without improvement \\[default: 20].")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loader processes \\[default: 2].")] = None,
    val_fraction: Annotated[float | None, typer.Option(
        help="Share of sources held out for validation \\[default: 0.2].")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Train on this YOLO data.yaml instead of the project's boxes.")] = None,
    plots: Annotated[bool, typer.Option(help="Let ultralytics draw its result plots.")] = True,
    nominal_batch: Annotated[int | None, typer.Option(
        help="Images per optimizer step; gradients of --batch images accumulate up to it "
             "\\[default: --batch, a step after every batch; ultralytics' own: 64].")] = None,
    val: Annotated[bool | None, typer.Option(
        "--val/--no-val", help="Validate after every epoch; --no-val: only after the last, and best.pt is "
                               "the last epoch (faster on a CPU) \\[default: --val].")] = None,
    freeze_backbone_epochs: Annotated[int | None, typer.Option(
        help="Keep the pretrained backbone frozen for this many epochs, then train it too \\[default: 0].")]
        = None,
    augment: Annotated[list[str] | None, typer.Option(
        help="An ultralytics augmentation setting over its default, KEY=NUMBER (repeatable), "
             "e.g. --augment hsv_h=0.15 --augment degrees=10.")] = None,
    synthetic_gloves: Annotated[float | None, typer.Option(
        help="Add this many synthetic-glove copies of each training frame with a bare hand the offline "
             "detector found (its hands repainted as work gloves, same boxes; 0.5: half of those frames "
             "get one; 0: none) \\[default: 1].")] = None,
    name: Annotated[str | None, typer.Option(help="Run folder under models/detector (default <arch>-<n>).")]
        = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the run --name (default: the latest unfinished one) from weights/last.pt.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
) -> None:
    """Train a YOLO hand detector on the project's boxes, fully offline (needs lrihar's train extra).

    Settings come from the project file's train_detector section; options given here win.
    Writes PROJECT/models/detector/<run>/: data/ (the YOLO set), weights/best.pt and last.pt,
    results.csv, args.yaml and lrihar-train.json. Ctrl-C keeps the finished epochs: continue
    with --resume.
    """
    from lrihar.project import Project
    from lrihar.train.detector import DetectorTrainConfig, project_train_settings
    from lrihar.train.detector import train_detector as run_training

    proj = Project.open(project)
    # The project file's train_detector section, then the options given here, over the defaults.
    given = {"arch": arch, "epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device, "seed": seed,
             "patience": patience, "workers": workers, "val_fraction": val_fraction,
             "freeze_backbone_epochs": freeze_backbone_epochs, "val": val,
             "nominal_batch": nominal_batch, "synthetic_gloves": synthetic_gloves}
    settings = project_train_settings(proj, given, _key_numbers(augment or [], "--augment"))
    if data and settings.get("synthetic_gloves"):
        raise BadInputError("--synthetic-gloves: made from the project's boxes, not a --data set; pass "
                            "--synthetic-gloves 0, or add them to that set first "
                            "(lrihar.train.synthetic_gloves.add_synthetic_gloves)")
    cfg = DetectorTrainConfig(**settings, data=str(data) if data else None, plots=plots)
    train_and_report(lambda: run_training(proj, cfg, name=name, resume=resume), "training",
                     f"lrihar train-detector -p {project}", name, _print_train_summary, json_out)


def _key_numbers(items: list[str], option: str) -> dict[str, float]:
    """``["hsv_h=0.15", ...]`` as ``{"hsv_h": 0.15}``; a malformed item is bad input."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise BadInputError(f"{option} {item!r}: write KEY=NUMBER, e.g. {option} hsv_h=0.15")
    return out


def _print_train_summary(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"train-detector {s.run}", show_header=False)
    rows = [("architecture", s.arch), ("epochs done", s.epochs_done),
            ("train images / boxes", f"{s.images.get('train', 0)} / {s.boxes.get('train', 0)}"),
            ("val images / boxes", f"{s.images.get('val', 0)} / {s.boxes.get('val', 0)}")]
    if s.synthetic_gloves:
        rows.append(("of them synthetic gloves", s.synthetic_gloves))
    for split, files in s.unreadable.items():
        rows.append((f"{split} images left out (unreadable)", f"{len(files)}: {', '.join(files[:3])}"
                     + (" ..." if len(files) > 3 else "")))
    rows += [(f"val {k}", f"{v:.3f}") for k, v in s.metrics.items()]
    rows += [("best weights", s.best or "-"), ("time", f"{s.seconds:.1f} s")]
    for key, value in rows:
        table.add_row(key, str(value))
    Console().print(table)
    if s.val_is_train:
        echo_err("warning: the project has one source, so validation used the training images; "
                 "these figures are optimistic (add another video or image folder to hold one out)")


@app.command("export-runtime")
def export_runtime(
    project: ProjectOpt = Path("."),
    detector: Annotated[bool, typer.Option("--detector", help="Export the trained detector.")] = False,
    classifier: Annotated[bool, typer.Option(
        "--classifier", help="Export the trained classifier (default run: the latest student).")] = False,
    int8: Annotated[bool | None, typer.Option(
        "--int8/--no-int8", help="Also an INT8 copy. Classifier: default for transformers, never CNNs. "
                                 "Detector: static INT8 convolutions, ~1.5x faster on CPUs with VNNI, "
                                 "kept if it finds --min-int8-agreement of the float model's boxes.")] = None,
    min_int8_agreement: Annotated[float, typer.Option(
        help="Detector --int8: the share of the float model's boxes (calibration frames, IoU 0.5) the "
             "INT8 copy must find again to be kept.")] = 0.9,
    run: Annotated[str | None, typer.Option(help="Training run (default: the latest).")] = None,
    imgsz: Annotated[int, typer.Option(help="Input size of the exported model (multiple of 32).")] = 320,
    dynamic: Annotated[bool, typer.Option(help="Dynamic batch size instead of batch 1.")] = False,
    parity_frames: Annotated[int, typer.Option(help="Sample frames for the PyTorch/ONNX parity check.")] = 8,
) -> None:
    """Export a trained model for deployment: ONNX, parity-checked against PyTorch, hash recorded."""
    from lrihar.deploy.onnx_detector import export_detector
    from lrihar.project import Project

    if classifier:

        return export_classifier_command(project, run, int8)
    if not detector:
        raise BadInputError("export-runtime: say what to export (--detector or --classifier)")
    if not 0 < min_int8_agreement <= 1:
        raise BadInputError(f"--min-int8-agreement: must lie in (0, 1], not {min_int8_agreement}")
    s = export_detector(Project.open(project), run, imgsz=imgsz, dynamic=dynamic, parity_frames=parity_frames,
                        int8=bool(int8), min_int8_agreement=min_int8_agreement)
    p = s.parity
    typer.echo(f"wrote {s.onnx} ({s.bytes / 1e6:.1f} MB, opset {s.opset}, imgsz {s.imgsz}"
               f"{', dynamic batch' if s.dynamic else ''})")
    typer.echo(f"sha256 {s.sha256}")
    typer.echo(f"parity on {p.frames} frames: {p.matched}/{p.torch_boxes} PyTorch boxes matched, "
               f"min IoU {p.min_iou:.3f}, max score diff {p.max_score_diff:.4f}")
    deployed = s.onnx
    if s.int8:
        q = s.int8
        verdict = "kept" if q["kept"] else f"removed (below {q['min_agreement']:.0%}; the float model stays)"
        typer.echo(f"INT8 copy {q['onnx']}: finds {q['found_again']}/{q['float_boxes']} of the float model's "
                   f"boxes on {q['calibration_frames']} calibration frames (+{q['int8_only_boxes']} of its "
                   f"own): {verdict}")
        deployed = str(Path(s.onnx).with_name(q["onnx"])) if q["kept"] else deployed
    typer.echo(f"use it: lrihar annotate -p {project} --detector yolo --model {deployed}")


@app.command()
def suggest(
    project: ProjectOpt = Path("."),
    n: Annotated[int, typer.Option("-n", help="How many frames to suggest.")] = 20,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the frames as JSON here.")]
        = None,
    compare: Annotated[str | None, typer.Option(
        help="Second detector run on the stored frames, NAME or NAME=MODEL (e.g. yolo: the project's "
             "latest exported detector).")] = None,
    compare_threshold: Annotated[float | None, typer.Option(
        help="Box threshold of the --compare detector (default: its own).")] = None,
    iou: Annotated[float, typer.Option(help="IoU at which two detectors' boxes agree.")] = 0.5,
    low_confidence: Annotated[float, typer.Option(help="Boxes scoring below this are uncertain.")] = 0.5,
    include_reviewed: Annotated[bool, typer.Option(help="Also list frames a person already corrected.")]
        = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """List the stored frames most worth a person's correction (detectors disagree, weak boxes,
    busy frames with no box), spread over sources."""
    from lrihar.project import Project
    from lrihar.review.suggest import suggest_frames

    proj = Project.open(project)
    other = compare_detector(proj, compare, compare_threshold) if compare else None
    picks = suggest_frames(proj, n, other, iou=iou, low_confidence=low_confidence,
                           include_reviewed=include_reviewed, show_progress=progress)
    _print_suggestions(picks)
    if output:
        output.write_text(json.dumps([s.as_dict() for s in picks], indent=2) + "\n", encoding="utf-8")
        echo_err(f"wrote {len(picks)} frames to {output}")


def compare_detector(proj, text: str, threshold: float | None):
    from lrihar.evaluate.run_sweep import DetectorSpec
    from lrihar.models.detectors import create_detector

    spec = DetectorSpec.parse(text)
    model = spec.model or (str(proj.root) if spec.backend == "yolo" else None)
    options = ({"model": model} if model else {}) | ({"box_threshold": threshold} if threshold is not None
                                                      else {})
    return create_detector(spec.backend, **options)


def _print_suggestions(picks) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("#", "score", "frame", "status", "boxes", "reasons", title="frames worth a look")
    for i, s in enumerate(picks, 1):
        # short names here; the JSON (-o) keeps the full paths
        frame = Path(s.name).name if s.name else f"{Path(s.source).name}#frame={s.frame_index}"
        table.add_row(str(i), f"{s.score:.2f}", frame, s.status, str(s.boxes), "; ".join(s.reasons))
    Console().print(table)
    if not picks:
        echo_err("no frame needs a look: nothing disagrees, no weak box, no busy frame without a box")


def export_classifier_command(project: Path, run: str | None, int8: bool | None) -> None:
    """``export-runtime --classifier``: export, then print the files, hashes and parity."""
    from lrihar.deploy.onnx_classifier import export_classifier
    from lrihar.project import Project

    s = export_classifier(Project.open(project), run, int8=int8)
    for f in s.files:
        p = f.parity
        typer.echo(f"wrote {f.path} ({f.precision}, {f.bytes / 1e6:.1f} MB) sha256 {f.sha256}")
        typer.echo(f"  parity on {p.crops} val crops: top-1 agreement {p.top1_agreement:.2%}, accuracy "
                   f"{p.accuracy_torch:.2%} (PyTorch) -> {p.accuracy_onnx:.2%} "
                   f"(drop {p.accuracy_drop:+.2%}), max logit diff {p.max_abs_diff:.2g}")
    for note in s.notes:
        echo_err(f"note: {note}")
    typer.echo(f"deployed: {s.deployed}")
    typer.echo(f"use it: lrihar classify -p {project} --classifier {s.run}")
