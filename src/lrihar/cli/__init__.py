"""The ``lrihar`` command line: each command parses, calls one library function, prints a summary.

Exit codes: 0 success, 1 failure (e.g. an input could not be read), 2 bad input or usage.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import typer

# Importing the command modules registers their commands on the app.
from lrihar.cli import annotate, classify, evaluate, models, review, run  # noqa: F401  (run: lrihar run)
from lrihar.cli import bootstrap as _bootstrap  # noqa: F401  (bootstrap: the detector loop)
from lrihar.cli import finetune as _finetune  # noqa: F401  (finetune, distill)
from lrihar.cli import train as _train  # noqa: F401  (train-detector, export-runtime, suggest)
from lrihar.cli.app import app, echo_err
from lrihar.errors import LriharError

INTERRUPTED = "interrupted: finished work is stored; rerun the same command to resume"


DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
"""OSErrors that are the machine's (disk full, quota, read-only, no permission): a message, no traceback."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns errors into messages and exit codes."""
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(args=take_models_dir(sys.argv[1:] if argv is None else list(argv)), standalone_mode=False)
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
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise  # not the machine's disk: a bug, with its traceback
        where = f" {exc.filename}" if exc.filename else ""
        echo_err(f"error: cannot write{where}: {exc.strerror or exc} (a full disk or a read-only folder); "
                 "free space or give write access, then run the same command again: what was finished "
                 "and stored is kept")
        return 1
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        echo_err(INTERRUPTED)
    return code if isinstance(code, int) else 0


def take_models_dir(argv: list[str]) -> list[str]:
    """``--models-dir DIR`` anywhere on the command line (before or after the command) points
    ``LRIHAR_MODELS_DIR`` at DIR for this run; returns the arguments without it.

    Raises:
        BadInputError: DIR is missing or not a folder.
    """
    from lrihar.artifacts import MODELS_DIR_ENV as ENV
    from lrihar.errors import BadInputError

    out, k = [], 0
    while k < len(argv):
        arg = argv[k]
        if arg == "--models-dir" or arg.startswith("--models-dir="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[k + 1] if k + 1 < len(argv) else "")
            k += 1 if "=" in arg else 2
            folder = Path(value).expanduser()
            if not value or not folder.is_dir():
                raise BadInputError(f"--models-dir {value!r}: not a folder; give the folder `lrihar models "
                                    "pack -o DIR` wrote")
            os.environ[ENV] = str(folder.resolve())
            continue
        out.append(arg)
        k += 1
    return out


def console() -> None:
    """Console-script entry point: third-party log noise is filtered unless ``--verbose``."""
    from lrihar.quiet import silence_native_logs, verbose_requested

    if not verbose_requested(sys.argv[1:]):
        silence_native_logs()
    sys.exit(main())


__all__ = ["app", "console", "main"]
