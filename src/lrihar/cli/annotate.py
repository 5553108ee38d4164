"""Commands for the project and auto-annotation: init, annotate, detections, crops, status, detectors."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import ProjectOpt, app, echo_err
from lrihar.cli.engine import (
    EngineOpt,
    RayAddressOpt,
    RayBatchOpt,
    RayGpusOpt,
    RayShardOpt,
    RayWorkersOpt,
    ray_options,
)
from lrihar.errors import BadInputError


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing lrihar.yaml.")] = False,
) -> None:
    """Create a project folder with a commented example lrihar.yaml."""
    from lrihar.project import init_project

    path = init_project(directory, force=force)
    typer.echo(f"wrote {path}; edit it, then run: lrihar annotate VIDEOS_OR_FOLDER... -p {directory}\n"
               f"for classify: put a few template crops per action class in "
               f"{directory / 'templates'}/<class name>/")

@app.command()
def annotate(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Video files, images, folders of videos and images (each video one source, a "
             "folder's images one more), rtsp:// or http:// URLs, camera index. "
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
    max_image_pixels: Annotated[int | None, typer.Option(
        help="Skip (and report) images larger than this many pixels (default 89,478,485).")] = None,
    motion_gate: Annotated[bool | None, typer.Option(
        "--motion-gate/--no-motion-gate", help="Frame-difference gate before the detector.")] = None,
    hand_gate: Annotated[bool | None, typer.Option(
        "--hand-gate/--no-hand-gate", help="MediaPipe Hands gate before the detector.")] = None,
    redo: Annotated[bool, typer.Option(help="Forget stored frames of these inputs and redo them "
                                            "(refused where a person drew or fixed boxes).")] = False,
    reannotate: Annotated[bool, typer.Option(
        "--reannotate/--keep-stored",
        help="Annotate again the frames another detector (or other detector settings) stored, "
             "keeping every box a person drew or fixed; --keep-stored leaves them as they are.")] = True,
    post: Annotated[str | None, typer.Option(
        help="Inspection post these inputs film (its line follows from lrihar.yaml); with no inputs, "
             "this post's `sources`.")] = None,
    line: Annotated[str | None, typer.Option(
        help="With no inputs: the `sources` of this line's posts; with inputs: the line's only post.")]
    = None,
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Also read the sub-folders of input folders.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_batch_size: RayBatchOpt = None,
    ray_num_gpus: RayGpusOpt = None,
    ray_shard_frames: RayShardOpt = 1000,
) -> None:
    """Detect operators' hand actions in raw footage, sift out frames with none, store the rest.

    Rerunning the same command resumes: frames already stored are skipped. Frames stored by
    another detector (e.g. `--detector yolo` after the offline default) are annotated again:
    boxes a person drew, moved, relabelled or marked wrong stay, the others are replaced.
    With no inputs, each post's own `sources` (lines: in lrihar.yaml) are read at that post.
    """
    from lrihar.annotate.pipeline import annotate as run_annotate
    from lrihar.config import with_overrides
    from lrihar.lines import annotate_inputs, project_layout
    from lrihar.project import Project

    ray = ray_options(engine, ray_address, ray_workers, ray_batch_size, ray_num_gpus, ray_shard_frames)
    proj = Project.open(project)
    cfg = with_overrides(proj.config, "detector", backend=detector, model=model, prompt=prompt,
                         box_threshold=box_threshold, text_threshold=text_threshold,
                         device=device, batch_size=batch_size)
    cfg = with_overrides(cfg, "sampling", stride=stride, fps=fps, max_image_pixels=max_image_pixels)
    cfg = with_overrides(cfg, "gate", motion=motion_gate, hands=hand_gate)
    jobs = annotate_inputs(project_layout(proj.config), sources, line, post)
    summaries = []
    for inputs, at in jobs:
        if len(jobs) > 1:
            typer.echo(f"post {at}" if at else "sources (no post)")
        args = dict(config=cfg, redo=redo, post=at, recursive=recursive, reannotate=reannotate,
                    show_progress=progress)
        if ray is None:
            summaries.append(run_annotate(proj, inputs, **args))
        else:
            from lrihar.engines.ray_annotate import annotate_with_ray

            summaries.append(annotate_with_ray(proj, inputs, ray, **args))
        _print_annotate_summary(summaries[-1])
    if json_out:
        doc = summaries[0].as_dict() if len(summaries) == 1 else {
            "runs": [{"post": at, **s.as_dict()} for (_, at), s in zip(jobs, summaries, strict=True)]}
        json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if any(s.failed_sources for s in summaries):
        raise typer.Exit(1)

def _print_annotate_summary(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"annotate run {s.run_id}", show_header=False)
    rate = f"{s.frames_read / s.seconds:.1f}" if s.seconds else "-"
    rows = [("sources", s.sources), ("frames read", s.frames_read),
            ("already done (resumed)", s.frames_resumed), ("sifted out by gate", s.frames_gated),
            ("sifted out: no action", s.frames_empty), ("frames with actions", s.frames_action),
            ("boxes", s.boxes)]
    if s.frames_reannotated:
        rows += [("re-annotated (stored by another detector)", s.frames_reannotated),
                 ("  a person's boxes kept", s.boxes_kept),
                 ("  earlier boxes replaced", s.boxes_replaced),
                 ("  new boxes left out (on a person's box)", s.boxes_left_out)]
    rows += [("errors", len(s.errors)), ("gate pass-through", f"{s.gate['cascade']['pass_rate']:.1%}"),
             ("time", f"{s.seconds:.1f} s ({rate} frames/s)")]
    for key, value in rows:
        table.add_row(key, str(value))
    console = Console()
    console.print(table)
    _print_sources(console, s)
    for err in s.errors[:20]:
        where = "" if err.index is None else f" frame {err.index}"
        echo_err(f"warning: {err.source_id}{where}: {err.message}")
    if len(s.errors) > 20:
        echo_err(f"... and {len(s.errors) - 20} more (all are in the store's errors table)")
    for uri in s.failed_sources:
        echo_err(f"error: {uri}: could not be read; the other inputs were processed")
    _print_left_out(s.skipped_files, "file(s) skipped: neither images nor videos")
    _print_left_out(s.folders_not_entered, "sub-folder(s) not read (pass --recursive to read them)")

def short_sources(uris: list[str]) -> tuple[dict[str, str], str]:
    """Source URIs as a table shows them: paths relative to the folder above them all, and that
    folder ("" where some source is no path: a stream or camera, shown whole)."""
    import os

    if not uris or not all(os.path.isabs(u) for u in uris):
        return {u: u for u in uris}, ""
    under = os.path.commonpath([os.path.dirname(u) for u in uris])
    return {u: os.path.relpath(u, under) for u in uris}, under


def _print_sources(console, s) -> None:
    """Frames and boxes per source (as stored now), and a warning for each source the detector
    found boxes on almost none of the frames of (see annotate.pipeline.FEW_BOXES_SHARE)."""
    from rich.table import Column, Table

    from lrihar.config import DetectorConfig

    if not s.per_source:
        return
    shown, under = short_sources([p.uri for p in s.per_source])
    source = Column("source", no_wrap=True, min_width=max(len("source"), *map(len, shown.values())))
    table = Table(source, "frames", "gated", "frames with boxes", "boxes", title="boxes per source")
    for p in s.per_source:
        share = f" ({p.frames_with_boxes / p.frames_detected:.0%})" if p.frames_detected else ""
        table.add_row(shown[p.uri], str(p.frames), str(p.frames_gated), f"{p.frames_with_boxes}{share}",
                      str(p.boxes))
    console.print(table)
    if under:
        console.print(f"(sources under {under})", soft_wrap=True)
    which = "the default detector" if s.detector == DetectorConfig().backend else "the detector"
    which += f" ({s.detector})"
    for p in s.per_source:
        if p.few_boxes:
            gated = f" shown to the detector ({p.frames_gated} more gated)" if p.frames_gated else ""
            echo_err(f"warning: {p.uri}: boxes on {p.frames_with_boxes} of {p.frames_detected} frames{gated}"
                     f" — {which} may not see these hands (gloves?); see docs/detector.md: train your own")


def _print_left_out(paths: list[str], what: str, shown: int = 10) -> None:
    if paths:
        more = f", ... and {len(paths) - shown} more" if len(paths) > shown else ""
        echo_err(f"note: {len(paths)} {what}: {', '.join(paths[:shown])}{more}")

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
        echo_err(f"wrote {n} detections to {output}")

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
        echo_err(f"warning: {err.source_id}: {err.message}")
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
