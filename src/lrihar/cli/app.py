"""The Typer app and what every command module shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    # Acted on before parsing: --verbose in lrihar.cli.run (the filter must be in place before any
    # import), --models-dir in lrihar.cli.main (so it also works after a command's name).


def echo_err(message: str) -> None:
    """A message for the user on stderr (warnings, errors), keeping stdout for results."""
    typer.echo(message, err=True)
