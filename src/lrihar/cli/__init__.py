"""The ``lrihar`` command line: each command parses, calls one library function, prints a summary.

Exit codes: 0 success, 1 failure (e.g. an input could not be read), 2 bad input or usage.
"""

from __future__ import annotations

import sys

import typer

# Importing the command modules registers their commands on the app.
from lrihar.cli import annotate, classify, evaluate, line, models, review  # noqa: F401  (line: run)
from lrihar.cli import finetune as _finetune  # noqa: F401  (finetune, distill)
from lrihar.cli import train as _train  # noqa: F401  (train-detector, export-runtime, suggest)
from lrihar.cli.app import app, echo_err
from lrihar.errors import LriharError

INTERRUPTED = "interrupted: finished work is stored; rerun the same command to resume"


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns errors into messages and exit codes."""
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        echo_err("aborted")
        return 1
    except typer.TyperException as exc:  # usage errors: unknown command, bad option value
        if hasattr(exc, "show"):
            exc.show()
        else:
            echo_err(str(exc))
        return getattr(exc, "exit_code", 2)
    except LriharError as exc:
        echo_err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        echo_err(INTERRUPTED)
        return 130
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        echo_err(INTERRUPTED)
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point: third-party log noise is filtered unless ``--verbose``."""
    from lrihar.quiet import silence_native_logs, verbose_requested

    if not verbose_requested(sys.argv[1:]):
        silence_native_logs()
    sys.exit(main())


__all__ = ["app", "main", "run"]
