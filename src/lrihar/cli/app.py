"""The Typer app and what every command module shares."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="lrihar",
    help="Low-cost, real-time industrial human action recognition (LRIHAR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project folder (holds lrihar.yaml).")]
LineOpt = Annotated[str | None, typer.Option(
    "--line", help="Only this line's posts (see `lines:` in lrihar.yaml).")]
PostOpt = Annotated[str | None, typer.Option("--post", help="Only this inspection post.")]


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Also show the log lines of MediaPipe, TensorFlow Lite and absl (hidden by "
                          "default; LRIHAR_VERBOSE=1 does the same).")] = False,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Folder of models packed with `lrihar models pack` (hub models, the "
                             "project's trained detector and student); same as LRIHAR_MODELS_DIR. "
                             "Accepted by every command, before or after its name.")] = None,
) -> None:
    """Low-cost, real-time industrial human action recognition (LRIHAR)."""
    # Acted on before parsing: --verbose in lrihar.cli.console (the filter must be in place before any
    # import), --models-dir in lrihar.cli.main (so it also works after a command's name).


def echo_err(message: str) -> None:
    """A message for the user on stderr (warnings, errors), keeping stdout for results."""
    typer.echo(message, err=True)


def train_and_report(train: Callable[[], Any], what: str, resume_command: str, name: str | None,
                     show: Callable[[Any], None], json_out: Path | None) -> Any:
    """Run a resumable training; on Ctrl-C say how to continue it, else print its summary and
    write it as JSON when asked.

    Args:
        train: runs the training and returns its summary (with ``as_dict()``).
        what: the work, for the message ("training", "distillation").
        resume_command: the command line that continues it, without ``--resume`` / ``--name``.
        name: the run's ``--name``, repeated in that command line when given.
        show: prints the summary.
        json_out: where to write the summary as JSON (None: nowhere).
    """
    try:
        summary = train()
    except KeyboardInterrupt:
        echo_err(f"{what} interrupted; continue it with: {resume_command} --resume"
                 + (f" --name {name}" if name else ""))
        raise
    show(summary)
    if json_out:
        json_out.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
