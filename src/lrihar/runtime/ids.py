"""Ids of runtime items: one increasing counter per kind, resumed from the store on restart."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class IdCounter:
    """Hands out ``next(kind)`` ids (1, 2, ...) per kind, thread-safe.

    Args:
        last: the highest id already stored per kind (``Store.last_runtime_ids()``), so a restarted
            run goes on from there and never reuses an id.
    """

    def __init__(self, last: Mapping[str, int] | None = None) -> None:
        self._last = dict(last or {})
        self._lock = threading.Lock()

    def next(self, kind: str) -> int:
        with self._lock:
            self._last[kind] = self._last.get(kind, 0) + 1
            return self._last[kind]
