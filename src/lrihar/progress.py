"""Progress display for long work (rich, on stderr), silent when disabled."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any


class _Silent:
    def update(self, completed: int, **fields: Any) -> None:
        pass


@contextmanager
def progress_bar(description: str, unit: str = "frames", enabled: bool = True):
    """Yield an object with ``update(completed, **fields)``; fields show after the rate.

    Example:
        >>> with progress_bar("annotate", enabled=False) as bar:
        ...     bar.update(10, boxes=3)
    """
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn(f"{{task.completed}} {unit}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=None, info="")

        class _Bar:
            def update(self, completed: int, **fields: Any) -> None:
                progress.update(task, completed=completed)
                speed = progress.tasks[0].speed or 0.0
                extra = "  ".join(f"{k} {v}" for k, v in fields.items())
                progress.update(task, info=f"{speed:6.1f}/s  {extra}")

        yield _Bar()
