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



def echo_err(message: str) -> None:
    """A message for the user on stderr (warnings, errors), keeping stdout for results."""
    typer.echo(message, err=True)
