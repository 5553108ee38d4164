"""What ``lrihar run`` emits: action events, work cycles and alerts.

Every item carries ``type`` (its kind, for sinks and MQTT topics) and ``to_dict()`` (a flat,
JSON-ready mapping). Times are seconds on the source's own clock (``Frame.timestamp``: media time
for files, time since the stream opened for live sources); ``wall_*`` fields are Unix seconds.

Lifecycle of an action event (Frigate's): ``new`` when a track's smoothed label settles on a
class, ``update`` while it goes on (confidence, end), ``end`` when the label changes or the track
is lost. An event left ``new``/``update`` by a crash is ended when the next run starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

EventState = Literal["new", "update", "end"]
Violation = Literal["missing", "out_of_order", "too_short", "too_long", "cycle_too_long"]


@dataclass
class ActionEvent:
    """One action by one tracked hand at one post, from its start to its end."""

    id: int
    post: str
    source: str
    track_id: int
    label: str
    start: float
    end: float
    confidence: float
    frames: int = 1
    state: EventState = "new"
    wall_start: float = 0.0
    wall_end: float = 0.0
    type: str = field(default="event", init=False)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepStatus:
    """One step of a procedure within the current cycle (the live checklist row)."""

    step: str
    optional: bool = False
    done: bool = False
    seconds: float = 0.0
    problem: Violation | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Cycle:
    """One unit's work cycle at a post: which steps happened, which went wrong, how long it took."""

    id: int
    post: str
    start: float
    end: float
    steps_seen: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)
    complete: bool = False
    type: str = field(default="cycle", init=False)

    @property
    def cycle_time(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return not (self.missing or self.out_of_order or self.too_short or self.too_long)

    def to_dict(self) -> dict:
        return {**asdict(self), "cycle_time": self.cycle_time, "ok": self.ok}


@dataclass
class Alert:
    """A procedure violation, raised the moment it is certain."""

    id: int
    post: str
    cycle_id: int
    kind: Violation
    step: str
    at: float
    message: str
    event_id: int | None = None
    wall_at: float = 0.0
    type: str = field(default="alert", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Gap:
    """A live source that stopped delivering frames (dropped stream, dead camera) and came back."""

    id: int
    source: str
    post: str
    start: float
    end: float | None
    reason: str
    wall_start: float = 0.0
    wall_end: float | None = None
    type: str = field(default="gap", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


RuntimeItem = ActionEvent | Cycle | Alert | Gap
