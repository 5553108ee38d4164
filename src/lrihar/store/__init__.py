"""The project store: one SQLite file (WAL mode, schema-versioned, one transaction per batch).

A frame and all its detections are committed together, so a run killed at any point leaves
only whole frames behind and a rerun picks up exactly where it stopped.

Example:
    >>> from lrihar.store import Store
    >>> store = Store("proj/lrihar.db")  # doctest: +SKIP
    >>> store.counts()  # doctest: +SKIP
    {'sources': 1, 'frames': 50, 'detections': 73, ...}

One module per table group: :mod:`~lrihar.store.schema` (tables, version, upgrades),
:mod:`~lrihar.store.connection`, :mod:`~lrihar.store.runs`, :mod:`~lrihar.store.frames`,
:mod:`~lrihar.store.embeddings`, :mod:`~lrihar.store.labels`,
:mod:`~lrihar.store.frame_reviews`, :mod:`~lrihar.store.line_items` (``lrihar run``'s events, cycles,
alerts, gaps).
"""

from __future__ import annotations

from pathlib import Path

from lrihar.store.embeddings import EmbeddingsMixin
from lrihar.store.frame_reviews import FrameReviewsMixin
from lrihar.store.frames import DetectionRow, FrameRecord, FramesMixin
from lrihar.store.labels import LabelsMixin
from lrihar.store.line_items import LiveMixin
from lrihar.store.runs import RunsMixin
from lrihar.store.schema import FRAME_STATUSES, SCHEMA_VERSION


class Store(RunsMixin, FramesMixin, EmbeddingsMixin, LabelsMixin, FrameReviewsMixin, LiveMixin):
    """SQLite project store. Safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._mark_dead_runs()


__all__ = ["FRAME_STATUSES", "SCHEMA_VERSION", "DetectionRow", "FrameRecord", "Store"]
