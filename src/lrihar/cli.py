"""The ``lrihar`` command line: each command parses, calls one library function, prints a summary.

Exit codes: 0 success, 1 failure (e.g. an input could not be read), 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from lrihar.errors import BadInputError, LriharError

app = typer.Typer(
    name="lrihar",
    help="Low-cost, real-time industrial human action recognition (LRIHAR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project folder (holds lrihar.yaml).")]


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing lrihar.yaml.")] = False,
) -> None:
    """Create a project folder with a commented example lrihar.yaml."""
    from lrihar.project import init_project

    path = init_project(directory, force=force)
    typer.echo(f"wrote {path}; edit it, then run: lrihar annotate VIDEO... -p {directory}")


@app.command()
def annotate(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Video files, image folders/files, rtsp:// or http:// URLs, camera index. "
             "Default: the project file's `sources`.")] = None,
    project: ProjectOpt = Path("."),
    detector: Annotated[str | None, typer.Option(help="Detector backend (see `lrihar detectors`).")] = None,
    model: Annotated[str | None, typer.Option(help="Model id or local directory.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text prompt, e.g. 'hand.'.")] = None,
    box_threshold: Annotated[float | None, typer.Option(help="Box / detection threshold.")] = None,
    text_threshold: Annotated[float | None, typer.Option(help="Text threshold (grounding-dino).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Frames per detector call.")] = None,
    stride: Annotated[int | None, typer.Option(help="Keep every N-th frame.")] = None,
    fps: Annotated[float | None, typer.Option(help="Keep about this many frames per second.")] = None,
    motion_gate: Annotated[bool | None, typer.Option(
        "--motion-gate/--no-motion-gate", help="Frame-difference gate before the detector.")] = None,
    hand_gate: Annotated[bool | None, typer.Option(
        "--hand-gate/--no-hand-gate", help="MediaPipe Hands gate before the detector.")] = None,
    redo: Annotated[bool, typer.Option(help="Forget stored frames of these inputs and redo them.")] = False,
    post: Annotated[str | None, typer.Option(help="Inspection post these inputs film.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Detect operators' hand actions in raw footage, sift out frames with none, store the rest.

    Rerunning the same command resumes: frames already stored are skipped.
    """
    from lrihar.annotate.pipeline import annotate as run_annotate
    from lrihar.config import with_overrides
    from lrihar.project import Project

    proj = Project.open(project)
    cfg = with_overrides(proj.config, "detector", backend=detector, model=model, prompt=prompt,
                         box_threshold=box_threshold, text_threshold=text_threshold,
                         device=device, batch_size=batch_size)
    cfg = with_overrides(cfg, "sampling", stride=stride, fps=fps)
    cfg = with_overrides(cfg, "gate", motion=motion_gate, hands=hand_gate)
    summary = run_annotate(proj, sources, config=cfg, redo=redo, post=post, show_progress=progress)
    _print_annotate_summary(summary)
    if json_out:
        json_out.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    if summary.failed_sources:
        raise typer.Exit(1)


def _print_annotate_summary(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"annotate run {s.run_id}", show_header=False)
    rate = f"{s.frames_read / s.seconds:.1f}" if s.seconds else "-"
    rows = [("sources", s.sources), ("frames read", s.frames_read),
            ("already done (resumed)", s.frames_resumed), ("sifted out by gate", s.frames_gated),
            ("sifted out: no action", s.frames_empty), ("frames with actions", s.frames_action),
            ("boxes", s.boxes), ("errors", len(s.errors)),
            ("gate pass-through", f"{s.gate['cascade']['pass_rate']:.1%}"),
            ("time", f"{s.seconds:.1f} s ({rate} frames/s)")]
    for key, value in rows:
        table.add_row(key, str(value))
    console = Console()
    console.print(table)
    for err in s.errors[:20]:
        where = "" if err.index is None else f" frame {err.index}"
        _echo_err(f"warning: {err.source_id}{where}: {err.message}")
    if len(s.errors) > 20:
        _echo_err(f"... and {len(s.errors) - 20} more (all are in the store's errors table)")
    for uri in s.failed_sources:
        _echo_err(f"error: {uri}: could not be read; the other inputs were processed")


@app.command()
def detections(
    project: ProjectOpt = Path("."),
    fmt: Annotated[str, typer.Option("--format", "-f", help="coco, csv or jsonl.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default stdout).")] = None,
) -> None:
    """Dump the stored detections (source, frame, timestamp, box, score, backend)."""
    from lrihar.dump import FORMATS, dump_detections
    from lrihar.project import Project

    if fmt not in FORMATS:
        raise BadInputError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    store = Project.open(project).store
    with (output.open("w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout)) as out:
        n = dump_detections(store, fmt, out)
    if output:
        _echo_err(f"wrote {n} detections to {output}")


@app.command()
def crops(
    out: Annotated[Path, typer.Argument(help="Folder to write crops into.")],
    project: ProjectOpt = Path("."),
    padding: Annotated[float, typer.Option(help="Grow each box by this fraction per side.")] = 0.0,
) -> None:
    """Write every detected crop as a JPEG for inspection (cut from the original frames)."""
    from lrihar.crops import write_crops
    from lrihar.project import Project

    errors: list = []
    n = write_crops(Project.open(project).store, out, padding, errors)
    for err in errors:
        _echo_err(f"warning: {err.source_id}: {err.message}")
    typer.echo(f"wrote {n} crops to {out}")


@app.command()
def status(project: ProjectOpt = Path(".")) -> None:
    """Show what the project store holds: sources, frames by status, detections, runs."""
    from rich.console import Console
    from rich.table import Table

    from lrihar.project import Project

    store = Project.open(project).store
    console = Console()
    counts = Table(title=str(store.path), show_header=False)
    for key, value in store.counts().items():
        counts.add_row(key, str(value))
    console.print(counts)
    runs = Table("run", "command", "started", "status", "frames read", "boxes")
    for run in store.runs():
        stats = json.loads(run["stats"] or "{}")
        runs.add_row(str(run["id"]), run["command"], run["started_at"], run["status"],
                     str(stats.get("frames_read", "")), str(stats.get("boxes", "")))
    console.print(runs)


@app.command("detectors")
def list_detector_backends() -> None:
    """List the registered detector backends."""
    from lrihar.models.detectors import list_detectors

    for name in list_detectors():
        typer.echo(name)


@app.command()
def classify(
    project: ProjectOpt = Path("."),
    templates: Annotated[Path | None, typer.Option(
        help="Templates root: one sub-folder of crops per class (overrides the project file).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder backend (see `lrihar encoders`).")] = None,
    model: Annotated[str | None, typer.Option(help="Encoder model id, local dir or weights file.")] = None,
    lambda_: Annotated[float | None, typer.Option("--lambda", help="NG threshold λ for every class.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    sheets: Annotated[Path | None, typer.Option(
        help="Folder for one contact sheet (PNG) per class; default PROJECT/contact-sheets.")] = None,
    no_sheets: Annotated[bool, typer.Option("--no-sheets", help="Skip the contact sheets.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Label every detected crop with an action class, or NG, by similarity to template crops.

    Rerunning resumes (embeddings are cached); labels a person corrected are never overwritten.
    """
    from lrihar.classify.pipeline import classify as run_classify
    from lrihar.config import with_overrides
    from lrihar.project import Project

    proj = Project.open(project)
    cfg = with_overrides(proj.config, "classify", encoder=encoder, model=model, lambda_=lambda_,
                         device=device)
    sheets_dir = None if no_sheets else (sheets or proj.root / "contact-sheets")
    summary = run_classify(proj, config=cfg, templates=templates, sheets_dir=sheets_dir,
                           show_progress=progress)
    _print_classify_summary(summary)
    if json_out:
        json_out.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")


def _print_classify_summary(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("label", "crops", "share", title=f"classify run {s.run_id} ({s.encoder})")
    total = sum(s.counts.values()) or 1
    for name, n in s.counts.items():
        table.add_row(name, str(n), f"{n / total:.1%}")
    Console().print(table)
    typer.echo(f"templates: {s.templates}; λ: {s.lambdas}; newly embedded: {s.embedded}; "
               f"corrected labels kept: {s.kept_corrected}; {s.seconds:.1f} s")
    for path in s.sheets:
        typer.echo(f"contact sheet: {path}")
    for err in s.errors[:20]:
        _echo_err(f"warning: {err.source_id}: {err.message}")


@app.command("calibrate-lambda")
def calibrate_lambda(
    project: ProjectOpt = Path("."),
    templates: Annotated[Path | None, typer.Option(help="Templates root (overrides the project).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder backend.")] = None,
    keep: Annotated[float, typer.Option(help="Share of correct templates the suggested λ keeps.")] = 0.95,
    plot: Annotated[Path | None, typer.Option(help="PNG of accuracy and NG rate vs λ.")] = None,
    step: Annotated[float, typer.Option(help="λ step of the printed table.")] = 0.05,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole sweep as JSON.")] = None,
) -> None:
    """Estimate λ from the templates (leave-one-out) and any reviewed labels; print the trade-off."""
    from rich.console import Console
    from rich.table import Table

    from lrihar.classify.calibrate import calibrate_project, plot_sweeps
    from lrihar.config import with_overrides
    from lrihar.project import Project

    proj = Project.open(project)
    cfg = with_overrides(proj.config, "classify", encoder=encoder)
    result = calibrate_project(proj, config=cfg, templates=templates, keep=keep)
    console = Console()
    for sw in result.sweeps:
        table = Table("λ", "accuracy", "NG rate", title=f"{sw.name} (n={sw.n})")
        for row in sw.rows():
            if abs(row["lambda"] / step - round(row["lambda"] / step)) < 1e-6:
                table.add_row(f"{row['lambda']:.2f}", f"{row['accuracy']:.1%}", f"{row['ng_rate']:.1%}")
        console.print(table)
    typer.echo(f"leave-one-out template accuracy without NG: {result.loo_accuracy_without_ng:.1%}")
    typer.echo(f"suggested λ = {result.suggested:.2f} (keeps {keep:.0%} of correctly matched templates); "
               f"set it as classify.lambda in {proj.root / 'lrihar.yaml'}")
    if plot:
        typer.echo(f"plot: {plot_sweeps(result, plot)}")
    if json_out:
        doc = {"suggested": result.suggested, "keep": keep,
               "loo_accuracy_without_ng": result.loo_accuracy_without_ng,
               "sweeps": {sw.name: sw.rows() for sw in result.sweeps}}
        json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _ious(values: list[float] | None) -> tuple[float, ...]:
    return tuple(values) if values else (0.3, 0.4)


@app.command()
def evaluate(
    project: ProjectOpt = Path("."),
    gt: Annotated[Path | None, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")] = None,
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    posts_per_line: Annotated[int, typer.Option(help="Posts per line for the cost table.")] = 20,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure as JSON.")] = None,
) -> None:
    """Detection metrics (eq. 3 / eq. 4, P/R/F1, AP50, mAP50-95), confusion matrices, cost."""
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.project_eval import evaluate_project
    from lrihar.project import Project

    proj = Project.open(project)
    truth = load_ground_truth(gt, images) if gt else None
    result = evaluate_project(proj, truth, _ious(iou), posts_per_line=posts_per_line)
    _print_evaluation(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _print_evaluation(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    det = result.get("detection")
    if det and det.get("matched_images"):
        table = Table("T_IoU", "recall (eq. 3)", "accuracy (eq. 4)", title="detection")
        for t, v in det["paper"].items():
            table.add_row(t, f"{v['recall']:.2%}", f"{v['accuracy']:.2%}")
        console.print(table)
        console.print("  ".join(f"{k} {v:.3f}" for k, v in det["standard"].items()))
    elif det:
        _echo_err(f"warning: {det['note']}")
    for post, c in result["classification"].items():
        console.print(f"classification {post}: {c['crops']} crops, {c['right']} right, {c['wrong']} wrong, "
                      f"{c['sent_to_ng']} to NG; accuracy {c['accuracy']:.2%}, "
                      f"without NG {c['accuracy_without_ng']:.2%}")
    if not result["classification"]:
        console.print("classification: no ground-truth classes or reviewed labels to compare with")
    line = result["cost"]["line"]
    console.print(f"annotation cost, line of {line['posts']} posts: {line['hours_manual']} h by hand, "
                  f"{line['hours_lrihar']} h with lrihar ({line['saved']:.1%} saved)")


@app.command()
def sweep(
    gt: Annotated[Path, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")],
    detector: Annotated[list[str], typer.Option(
        help="Detector to sweep: NAME or NAME=MODEL (repeatable; one colour each).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("sweep"),
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    accuracy_floor: Annotated[float, typer.Option(help="Best pair: highest recall at this accuracy.")] = 0.9,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Sweep each detector's two thresholds offline: CSV grid, best pair, 3-D surfaces (Fig. 7)."""
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.run_sweep import DetectorSpec, run_sweep

    truth = load_ground_truth(gt, images)
    specs = [DetectorSpec.parse(d) for d in detector]
    result = run_sweep(specs, truth, out, _ious(iou), accuracy_floor, show_progress=progress)
    for model, by_iou in result.best.items():
        for t, best in by_iou.items():
            if best is None:
                typer.echo(f"{model} @ T_IoU {t}: no threshold pair reaches accuracy {accuracy_floor:.0%}")
            else:
                pair = ", ".join(f"{k}={v}" for k, v in best.items()
                                 if k not in ("iou", "recall", "accuracy", "predictions", "ground_truth"))
                typer.echo(f"{model} @ T_IoU {t}: best {pair}: recall {best['recall']:.2%}, "
                           f"accuracy {best['accuracy']:.2%}")
    typer.echo(f"wrote {len(result.files)} files to {out}")


@app.command()
def report(
    project: ProjectOpt = Path("."),
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="HTML file (default PROJECT/report.html).")] = None,
    gt: Annotated[Path | None, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")] = None,
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    sweep_dir: Annotated[Path | None, typer.Option("--sweep", help="A `lrihar sweep` output folder.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    markdown: Annotated[bool, typer.Option(help="Also write a Markdown version beside it.")] = True,
    timing: Annotated[bool, typer.Option(help="Time the classifier call (Table 4).")] = True,
) -> None:
    """Write one self-contained HTML report (and Markdown) with every table and figure that exists."""

    from lrihar.evaluate.classifier_table import template_matcher_row
    from lrihar.evaluate.confusion import Confusion
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.project_eval import evaluate_project
    from lrihar.evaluate.report import write_report
    from lrihar.project import Project

    proj = Project.open(project)
    truth = load_ground_truth(gt, images) if gt else None
    result = evaluate_project(proj, truth, _ious(iou))
    table4 = None
    if timing and proj.store.counts()["detections"]:
        confs = {post: Confusion(c["classes"], c["counts"])
                 for post, c in result["classification"].items()}
        try:
            table4 = template_matcher_row(proj, confs)
        except BadInputError as exc:  # no templates yet: the table is left out, not the report
            _echo_err(f"warning: classifier table skipped: {exc}")
    html = output or proj.root / "report.html"
    written = write_report(proj, result, html, sweep_dir, table4,
                           html.with_suffix(".md") if markdown else None)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def review(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
) -> None:
    """Serve the review page: relabel crops, mark wrong boxes, draw boxes; every click is saved."""
    from lrihar.project import Project
    from lrihar.review.server import serve

    Project.open(project)  # a bad project fails here, before the server starts
    typer.echo(f"review page: http://{host}:{port}/  (Ctrl-C stops it; every action is already saved)")
    serve(project, host, port)


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write into.")],
    project: ProjectOpt = Path("."),
    fmt: Annotated[str, typer.Option(
        "--format", "-f",
        help="yolo, imagefolder, coco (datasets) or labelstudio, cvat (pre-annotations).")] = "yolo",
    split: Annotated[tuple[float, float, float], typer.Option(
        help="Train, val, test shares.")] = (0.7, 0.2, 0.1),
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    include_ng: Annotated[bool, typer.Option(help="Also export NG crops / boxes.")] = False,
    yolo_classes: Annotated[str, typer.Option(help="YOLO classes: 'hand' (one) or 'actions'.")] = "hand",
    padding: Annotated[float, typer.Option(help="ImageFolder crop padding per side.")] = 0.0,
) -> None:
    """Establish the dataset: YOLO / ImageFolder / COCO split by source, or pre-annotations for
    Label Studio / CVAT."""
    from lrihar.project import Project

    proj = Project.open(project)
    if fmt in ("labelstudio", "cvat"):
        from lrihar.review.interchange import export_cvat, export_labelstudio

        if out.exists() and any(out.iterdir()):
            raise BadInputError(f"{out}: not empty; export into a new folder so nothing is overwritten")
        path = (export_labelstudio if fmt == "labelstudio" else export_cvat)(proj, out)
        typer.echo(f"wrote {path} and the frames in {out / 'images'}; import the corrected export with "
                   f"`lrihar import -p {project} FILE --from {fmt}`")
        return
    from lrihar.dataset.export import export_dataset

    summary = export_dataset(proj, out, fmt, split, seed, include_ng, yolo_classes, padding)
    for name in ("train", "val", "test"):
        typer.echo(f"{name:5s} {summary.images[name]:6d} images  {summary.counts[name]}  "
                   f"{len(summary.sources[name])} sources")
    if summary.skipped_unlabelled:
        _echo_err(f"note: {summary.skipped_unlabelled} detections have no label yet (run classify) "
                  "and were left out")
    for err in summary.errors[:20]:
        _echo_err(f"warning: {err.source_id}: {err.message}")
    typer.echo(f"wrote {out} (manifest.json lists counts per class and split)")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The tool's export with your corrections.")],
    project: ProjectOpt = Path("."),
    from_: Annotated[str, typer.Option("--from", help="labelstudio, cvat or coco.")] = "labelstudio",
    allow_unknown: Annotated[bool, typer.Option(
        help="Skip unknown images / labels instead of failing.")] = False,
) -> None:
    """Apply corrections made in Label Studio, CVAT or any COCO tool to the store (all or nothing)."""
    from lrihar.project import Project
    from lrihar.review.interchange import import_corrections

    s = import_corrections(Project.open(project), file, from_, allow_unknown)
    typer.echo(f"{s.images} images: {s.relabelled} relabelled, {s.moved} boxes moved, {s.confirmed} "
               f"confirmed, {s.added} added, {s.rejected} marked wrong")
    if s.unknown_images or s.unknown_labels:
        _echo_err(f"skipped: {len(s.unknown_images)} unknown images, unknown labels {s.unknown_labels}")


@app.command("encoders")
def list_encoder_backends() -> None:
    """List the registered crop encoder backends."""
    from lrihar.models.encoders import list_encoders

    for name in list_encoders():
        typer.echo(name)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns errors into messages and exit codes."""
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _echo_err("aborted")
        return 1
    except typer.TyperException as exc:  # usage errors: unknown command, bad option value
        if hasattr(exc, "show"):
            exc.show()
        else:
            _echo_err(str(exc))
        return getattr(exc, "exit_code", 2)
    except LriharError as exc:
        _echo_err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _echo_err("interrupted: finished frames are stored; rerun the same command to resume")
        return 130
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
