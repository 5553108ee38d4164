"""Ids of runtime items: one increasing counter per kind, resumed from the store on restart."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping


class IdCounter:
    """Hands out ``next(kind)`` ids (1, 2, ...) per kind, thread-safe.

    Args:
        last: the highest id already stored or reserved per kind (``Store.last_runtime_ids()``),
            so a restarted run goes on from there and never reuses an id.
        reserve: ``reserve(kind, upto)`` records durably that ids up to ``upto`` are taken
            (``Store.reserve_runtime_ids``); called before an id beyond the last reservation is
            handed out, ``block`` ids at a time, so after a kill -9 the next run starts above
            every id this one may have sent anywhere.
    """

    def __init__(self, last: Mapping[str, int] | None = None,
                 reserve: Callable[[str, int], None] | None = None, block: int = 64) -> None:
        self._last = dict(last or {})
        self._reserved = dict(self._last)
        self._reserve, self._block = reserve, block
        self._lock = threading.Lock()

    def next(self, kind: str) -> int:
        with self._lock:
            value = self._last.get(kind, 0) + 1
            if self._reserve is not None and value > self._reserved.get(kind, 0):
                self._reserve(kind, value + self._block - 1)
                self._reserved[kind] = value + self._block - 1
            self._last[kind] = value
            return value
