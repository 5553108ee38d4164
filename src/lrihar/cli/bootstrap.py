"""The detector correction loop as one command: bootstrap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import ProjectOpt, app, echo_err


@app.command()
def bootstrap(
    project: ProjectOpt = Path("."),
    rounds: Annotated[int | None, typer.Option(
        help="Rounds in all (suggest, correct, train, export, re-annotate, check) \\[default: 2, or as "
             "the loop recorded].")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Frames to correct per round, as a share of the stored frames, e.g. 20% or 0.2 "
             "\\[default: 20%].")] = None,
    corrections: Annotated[Path | None, typer.Option(
        help="A labelling tool's export with the corrections of the suggested frames, imported "
             "(once) when a round waits for them.")] = None,
    from_: Annotated[str, typer.Option("--from", help="Format of --corrections: coco, cvat or labelstudio.")]
        = "coco",
    empty_checked: Annotated[bool, typer.Option(
        help="cvat, coco: an image of --corrections with no box is a frame you checked that holds no hand.")]
        = False,
    gt: Annotated[Path | None, typer.Option(
        help="Held-out ground truth (COCO .json or YOLO folder) of frames NOT in the project: each new "
             "detector is scored on it (eq. 3 / 4 at T_IoU 0.3). Remembered for later rounds.")] = None,
    images: Annotated[Path | None, typer.Option(
        help="Folder the --gt file names are relative to (default: beside the .json).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Training epochs \\[default: the project file's train_detector.epochs, else 30].")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Confidence of the trained detector when it re-annotates, is compared and is checked "
             "\\[default: the project's if its detector is yolo, else 0.25].")] = None,
    plots: Annotated[bool, typer.Option(help="Let ultralytics draw its result plots.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The detector correction loop in one resumable command: suggest frames, stop for your
    corrections, then train, export, re-annotate and check on held-out frames, round after round.

    Each invocation goes on where the last stopped (PROJECT/models/bootstrap.json) until it needs
    you, then says what to correct and exits 0; run it again afterwards. Every step is also a
    command of its own (suggest, import, train-detector, export-runtime, annotate, evaluate).
    """
    from lrihar.errors import BadInputError
    from lrihar.loop.bootstrap import BootstrapOptions, parse_budget, run_bootstrap
    from lrihar.project import Project

    share = parse_budget(budget) if budget is not None else None
    try:
        proj = Project.open(project)
    except BadInputError as exc:
        raise BadInputError(f"--project {project}: {exc}") from None
    opts = BootstrapOptions(rounds=rounds, budget=share, corrections=corrections, tool=from_,
                            empty_checked=empty_checked, gt=gt, images=images, epochs=epochs,
                            threshold=threshold, plots=plots, show_progress=progress,
                            project_arg=str(project))
    try:
        result = run_bootstrap(proj, opts, say=echo_err)
    finally:
        from lrihar.loop.bootstrap import load_state

        try:  # what each round gained, also when a step failed or was interrupted
            state = load_state(proj)
        except Exception:  # the table must not hide the error being raised
            state = None
        if state:
            _print_rounds(state)
    typer.echo(result.message)


def _print_rounds(state: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from lrihar.loop.bootstrap import summary_rows

    rows = summary_rows(state)
    if not rows:
        return
    table = Table("round", "at", "frames", "checked", "so far", "boxes +/-", "held-out R / A", "train s",
                  box=box.SIMPLE_HEAD, title="bootstrap rounds: frames suggested, checked, corrected so far; "
                  "boxes re-annotation added / removed; held-out recall / accuracy at T_IoU 0.3")

    def num(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    for r in rows:
        changed = "-" if r["boxes_changed"] is None else f"+{r['boxes_added']} -{r['boxes_removed']}"
        scores = "-" if r["heldout_recall"] is None else \
            f"{r['heldout_recall']:.1%} / {r['heldout_accuracy']:.1%}"
        table.add_row(str(r["round"]), r["step"], num(r["suggested"]), num(r["checked"]),
                      num(r["corrected_so_far"]), changed, scores, num(r["train_seconds"], "{:.1f}"))
    Console().print(table)
