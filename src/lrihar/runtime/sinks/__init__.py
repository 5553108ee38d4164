"""Where runtime items go: the project store, JSONL / CSV files, MQTT, an annotated video, the live page.

Every sink takes every item (:data:`lrihar.events.RuntimeItem`: action events in each
state, cycles, alerts, gaps) through ``emit`` and writes everything it holds on ``close``; a sink
ignores the kinds it has no use for.
"""

from __future__ import annotations

from typing import Protocol

from lrihar.events import RuntimeItem


class Sink(Protocol):
    """A destination of runtime items."""

    def emit(self, item: RuntimeItem) -> None:
        """Take one item (called from the pipeline's thread, in order)."""

    def close(self) -> None:
        """Flush and release everything; called once, also on Ctrl-C / SIGTERM."""
