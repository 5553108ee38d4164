"""Commands for correction and the dataset: review, export, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import LineOpt, PostOpt, ProjectOpt, app, echo_err

QUEUES = ("all", "uncertain")


@app.command()
def review(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(
        help="Address to bind (default: this machine only). Any other address needs the printed link, "
             "which carries a fresh token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    queue: Annotated[str, typer.Option(
        help="all: every crop, lowest score first, with filters. uncertain: the frames `lrihar suggest` "
             "ranks highest (detectors disagree, weak boxes, busy frames with no box), best first, "
             "with why; draw the missed hands there.")] = "all",
    n: Annotated[int, typer.Option("-n", help="Frames in the uncertain queue.")] = 20,
    compare: Annotated[str | None, typer.Option(
        help="With --queue uncertain: a second detector run on the stored frames, NAME or NAME=MODEL "
             "(as in `lrihar suggest`).")] = None,
    compare_threshold: Annotated[float | None, typer.Option(
        help="Box threshold of the --compare detector (default: its own).")] = None,
) -> None:
    """Serve the review page: relabel crops, mark wrong boxes, draw boxes; every click is saved.
    With --queue uncertain it lists the frames most worth a correction first."""
    from lrihar.errors import BadInputError
    from lrihar.project import Project
    from lrihar.review.server import serve
    from lrihar.web.guard import launch_token, page_url

    if queue not in QUEUES:
        raise BadInputError(f"--queue: use all or uncertain, not {queue!r}")
    if queue == "all" and compare:
        raise BadInputError("--compare: it picks the uncertain frames; add --queue uncertain")
    proj = Project.open(project)  # a bad project fails here, before the server starts
    suggestions = None
    if queue == "uncertain":
        from lrihar.cli.train import compare_detector  # the same NAME[=MODEL] as `lrihar suggest`
        from lrihar.review.suggest import suggest_frames

        other = compare_detector(proj, compare, compare_threshold) if compare else None
        suggestions = suggest_frames(proj, n, other, show_progress=True)
        typer.echo(f"uncertain queue: {len(suggestions)} frames, best first")
        if not suggestions:
            echo_err("note: no frame needs a look (nothing disagrees, no weak box, no busy frame without a "
                     "box); the page's queue menu still shows every crop")
    token = launch_token(host)
    typer.echo(f"review page: {page_url(host, port, token)}  (Ctrl-C stops it; every click is saved at once)")
    if token:
        echo_err(f"note: the page is served on {host}: only people given this link (its token) can open it")
    serve(project, host, port, token, suggestions=suggestions)

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
    include_ng: Annotated[bool, typer.Option(help="Also export NG crops / boxes (action classes).")] = False,
    classes: Annotated[str | None, typer.Option(
        "--classes", "--yolo-classes",
        help="'hand' (one class, needs no labels) or 'actions' (one per action). Default: hand for "
             "yolo; actions for imagefolder; for coco actions once boxes are labelled, else hand.")] = None,
    padding: Annotated[float, typer.Option(help="ImageFolder crop padding per side.")] = 0.0,
    negatives: Annotated[float, typer.Option(
        help="Share (0-1) of the frames the detector found empty to add as background images "
             "with empty labels (yolo, coco).")] = 0.0,
    frames: Annotated[Path | None, typer.Option(
        help="labelstudio, cvat: only the frames this JSON list names (`lrihar suggest -o FILE`), in its "
             "order, also those with no box yet. Default: every frame that holds a box.")] = None,
    line: LineOpt = None,
    post: PostOpt = None,
) -> None:
    """Establish the dataset: YOLO / ImageFolder / COCO split by source, or pre-annotations for
    Label Studio / CVAT. A hand detector set (the yolo default) needs no classify run."""
    from lrihar.dataset.export import check_out_folder, export_dataset, make_folder
    from lrihar.errors import BadInputError
    from lrihar.lines import project_layout
    from lrihar.project import Project

    tool = fmt in ("labelstudio", "cvat")
    if frames is not None and not tool:
        raise BadInputError("--frames: it picks the frames of a labelling tool's export (-f labelstudio or "
                            "cvat); a dataset takes every reviewed box")
    proj = Project.open(project)
    posts = project_layout(proj.config).select(line, post)
    if tool and posts is not None:
        raise BadInputError("--line / --post pick the frames of a dataset (-f yolo, imagefolder, coco); "
                            "for Label Studio or CVAT pick frames with --frames (`lrihar suggest -o FILE`)")
    if tool:
        from lrihar.review.interchange import export_cvat, export_labelstudio, load_frame_list

        listed = load_frame_list(proj, frames) if frames is not None else None
        make_folder(check_out_folder(out))
        errors: list = []
        path = (export_labelstudio if fmt == "labelstudio" else export_cvat)(proj, out, frames=listed,
                                                                             errors=errors)
        for err in errors[:20]:
            echo_err(f"warning: {err.source_id}: {err.message}")
        # CVAT lists every image, looked at or not: only the user can say an empty one was checked
        checked = " [--empty-checked: the images you leave with no box hold no hand]" if fmt == "cvat" else ""
        typer.echo(f"wrote {path} and the frames in {out / 'images'}; import the corrected export with "
                   f"`lrihar import -p {project} FILE --from {fmt}{checked}`")
        return
    summary = export_dataset(proj, out, fmt, split, seed, include_ng, classes, padding, negatives=negatives,
                             posts=posts)
    for name in ("train", "val", "test"):
        background = f" ({summary.negatives[name]} without a box)" if negatives else ""
        typer.echo(f"{name:5s} {summary.images[name]:6d} images{background}  {summary.counts[name]}  "
                   f"{len(summary.sources[name])} sources")
    if fmt == "coco" and classes is None and summary.scheme == "hand":
        echo_err("note: no box has an action label yet, so one class 'hand' (run `lrihar classify` "
                 "for action classes)")
    if summary.skipped_unlabelled:
        echo_err(f"note: {summary.skipped_unlabelled} detections have no label yet (run classify) "
                  "and were left out")
    for err in summary.errors[:20]:
        echo_err(f"warning: {err.source_id}: {err.message}")
    typer.echo(f"wrote {out} (manifest.json lists counts per class and split)")

@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The tool's export with your corrections.")],
    project: ProjectOpt = Path("."),
    from_: Annotated[str, typer.Option("--from", help="labelstudio, cvat or coco.")] = "labelstudio",
    allow_unknown: Annotated[bool, typer.Option(
        help="Skip unknown images / labels instead of failing.")] = False,
    empty_checked: Annotated[bool, typer.Option(
        help="cvat, coco: an image the file lists with no box is a frame you looked at that holds no "
             "hand (Label Studio: always so for the tasks you submitted).")] = False,
) -> None:
    """Apply corrections made in Label Studio, CVAT or any COCO tool to the store (all or nothing)."""
    from lrihar.project import Project
    from lrihar.review.interchange import import_corrections

    s = import_corrections(Project.open(project), file, from_, allow_unknown, empty_checked=empty_checked)
    typer.echo(f"{s.images} images: {s.relabelled} relabelled, {s.moved} boxes moved, {s.confirmed} "
               f"confirmed, {s.added} added, {s.rejected} marked wrong, {s.checked_empty} marked as "
               "holding no hand")
    if s.unknown_images or s.unknown_labels:
        echo_err(f"skipped: {len(s.unknown_images)} unknown images, unknown labels {s.unknown_labels}")
