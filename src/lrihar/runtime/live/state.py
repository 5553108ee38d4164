"""What the live page shows, kept bounded and safe to read from the server's threads while the
pipeline writes it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from urllib.parse import urlsplit, urlunsplit

from lrihar.events import ActionEvent, Alert, Cycle, Gap, RuntimeItem


def shown_source(uri: str) -> str:
    """``uri`` as the page may show it: user and password of a stream address left out."""
    try:
        parts = urlsplit(uri)
        if "@" not in parts.netloc:
            return uri
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # a malformed address (bad port): show none of it rather than its secret
        return "(stream)"


class SourceSlot:
    """One source: its latest frame view (the only frame kept) and counters."""

    def __init__(self, k: int, uri: str, post: str) -> None:
        self.k = k
        self.uri = uri
        self.post = post
        self.view = None
        self.seq = 0
        self.t = 0.0
        self.gap: str | None = None

    def to_dict(self) -> dict:
        return {"k": self.k, "source": shown_source(self.uri), "post": self.post, "frames": self.seq,
                "t": round(self.t, 3), "gap": self.gap}


class LiveState:
    """Latest frame per source, checklist per post, and the last ``history`` alerts, events and
    cycles per post (deques: memory stays bounded on an endless stream).

    ``observe`` and ``add`` run on the pipeline thread and only store references or small dicts.
    """

    def __init__(self, history: int = 50) -> None:
        self.lock = threading.Lock()
        self.history = history
        self.sources: dict[str, SourceSlot] = {}
        self.checklists: dict[str, tuple[int | None, list]] = {}
        self.alerts: deque[dict] = deque(maxlen=history)
        self.events: OrderedDict[tuple[str, int], dict] = OrderedDict()
        self.cycles: dict[str, deque[dict]] = {}
        self.started = time.time()

    def _slot(self, uri: str, post: str) -> SourceSlot:
        slot = self.sources.get(uri)
        if slot is None:
            slot = self.sources[uri] = SourceSlot(len(self.sources), uri, post)
        return slot

    def observe(self, view) -> None:
        """Keep ``view`` (a :class:`~lrihar.runtime.pipeline.FrameView`) as its source's latest frame."""
        with self.lock:
            slot = self._slot(view.source, view.post)
            slot.view = view
            slot.seq += 1
            slot.t = view.frame.timestamp
            self.checklists[view.post] = (view.cycle_id, view.checklist)

    def add(self, item: RuntimeItem) -> None:
        """Take one item of the run: alerts, events (latest state per event), cycles, gaps."""
        data = item.to_dict()
        if "source" in data:
            data["source"] = shown_source(data["source"])
        with self.lock:
            if isinstance(item, Alert):
                self.alerts.append(data)
            elif isinstance(item, Cycle):
                self.cycles.setdefault(item.post, deque(maxlen=self.history)).append(data)
            elif isinstance(item, ActionEvent | Gap):
                if isinstance(item, Gap):
                    self._slot(item.source, item.post).gap = item.reason if item.end is None else None
                key = (item.type, item.id)
                self.events.pop(key, None)  # an update moves its event to the top
                self.events[key] = data
                while len(self.events) > self.history:
                    self.events.popitem(last=False)

    def slot(self, k: int) -> SourceSlot | None:
        with self.lock:
            return next((s for s in self.sources.values() if s.k == k), None)

    def frames(self) -> list[dict]:
        """Per source: its index and frame counter (the page fetches a picture when it grows)."""
        with self.lock:
            return [{"k": s.k, "seq": s.seq} for s in self.sources.values()]

    def snapshot(self) -> dict:
        """Everything the page shows, JSON-ready; lists newest first except the chart's cycles."""
        with self.lock:
            checklists = {post: (cid, [step.to_dict() for step in steps])
                          for post, (cid, steps) in self.checklists.items()}
            posts = sorted({*checklists, *self.cycles, *(s.post for s in self.sources.values())})
            return {
                "started": self.started,
                "sources": [s.to_dict() for s in self.sources.values()],
                "posts": [{"post": post, "cycle_id": checklists.get(post, (None, []))[0],
                           "checklist": checklists.get(post, (None, []))[1],
                           "cycles": list(self.cycles.get(post, ()))} for post in posts],
                "alerts": list(reversed(self.alerts)),
                "events": list(reversed(self.events.values())),
            }
