"""Progress display for long work (rich, on stderr), silent when disabled."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any


class _Silent:
    def update(self, completed: int, **fields: Any) -> None:
        pass


@contextmanager
def progress_bar(description: str, unit: str = "frames", enabled: bool = True, total: int | None = None):
    """Yield an object with ``update(completed, **fields)``; fields show after the rate.

    With a ``total`` the bar also shows how far along it is and the time left.

    Example:
        >>> with progress_bar("annotate", enabled=False) as bar:
        ...     bar.update(10, boxes=3)
    """
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    count = f"{{task.completed}}/{total} {unit}" if total else f"{{task.completed}} {unit}"
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
    if total:
        columns.append(BarColumn(bar_width=24))
    columns += [TextColumn(count), TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    if total:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        class _Bar:
            def update(self, completed: int, **fields: Any) -> None:
                progress.update(task, completed=completed)
                speed = progress.tasks[0].speed or 0.0
                extra = "  ".join(f"{k} {v}" for k, v in fields.items())
                progress.update(task, info=f"{speed:6.1f}/s  {extra}")

        yield _Bar()
