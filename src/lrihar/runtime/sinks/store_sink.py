"""Runtime items into the project store, in batches, on a writer thread of its own.

The pipeline never waits on SQLite: ``emit`` snapshots the item (``to_dict()``, so later changes
to the same object do not leak in) and queues it. The writer commits a batch in one transaction
when ``batch_size`` items are waiting or ``flush_s`` seconds have passed since the oldest, and
whatever is left on ``close``. It opens its own connection to the store file, so ``emit`` and
``close`` may come from any thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from lrihar.events import RuntimeItem
from lrihar.store import Store

log = logging.getLogger(__name__)
_CLOSE = object()


class StoreSink:
    """Writes events, cycles, alerts and gaps to the store (:meth:`Store.write_runtime_items`).

    Args:
        store: the project store (its file is opened again by the writer thread).
        run_id: the ``lrihar run`` run the rows belong to.
        batch_size: commit once this many items are waiting.
        flush_s: commit at the latest this long after an item arrived.
    """

    name = "store"
    essential = True
    """What the run must keep: written first, never set aside, its loss fails the run."""

    def __init__(self, store: Store, run_id: int, batch_size: int = 64, flush_s: float = 1.0) -> None:
        self.path = store.path
        self.run_id = run_id
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.written = 0
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="store-sink", daemon=True)
        self._thread.start()

    def emit(self, item: RuntimeItem) -> None:
        if self._closed:
            raise RuntimeError("StoreSink is closed")
        self._queue.put(item.to_dict())

    def close(self) -> None:
        """Write everything still queued, then close the writer's connection.

        Raises:
            the writer's last error (e.g. a full disk), after one last try, when rows were left unwritten.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(_CLOSE)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _write_loop(self) -> None:
        try:
            store = Store(self.path)
        except Exception as exc:  # reported by close(), which the run always calls
            self.error = exc
            return
        pending: list[dict] = []
        deadline = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                closing = item is _CLOSE
                if item is not None and not closing:
                    pending.append(item)
                    deadline = deadline or time.monotonic() + self.flush_s
                due = closing or len(pending) >= self.batch_size or (
                    deadline is not None and time.monotonic() >= deadline)
                if due and pending:
                    pending = self._flush(store, pending, final=closing)
                    deadline = time.monotonic() + self.flush_s if pending else None
                if closing:
                    return
        finally:
            store.close()

    def _flush(self, store: Store, pending: list[dict], final: bool) -> list[dict]:
        """Commit ``pending``; on failure keep it for the next try (the last one records the error)."""
        try:
            self.written += store.write_runtime_items(self.run_id, pending)
        except Exception as exc:  # a locked or full store must not kill the run
            log.warning("store sink: %d item(s) not written yet: %s", len(pending), exc)
            if final:
                self.error = exc
            return pending
        self.error = None
        return []
