"""Action events from smoothed track labels, with Frigate's lifecycle ``new → update → end``.

A track's smoothed label must hold for ``min_frames`` frames before its event is ``new`` (the
event then starts at the first of those frames, so a late confirmation does not shorten it).
While it holds, the event's end and mean confidence follow; an ``update`` is emitted at most every
``update_every_s`` seconds of source time. The event ends (``end``, end = the last frame that
showed it) when the label changes, turns NG, or the track goes unseen for ``lost_track_s``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lrihar.classes import NG
from lrihar.events import ActionEvent
from lrihar.runtime.ids import IdCounter


@dataclass
class _TrackState:
    label: str
    first_t: float
    first_wall: float
    last_t: float
    last_wall: float
    frames: int = 0
    confidence_sum: float = 0.0
    event: ActionEvent | None = None
    emitted_t: float = 0.0


class EventBuilder:
    """Turns one source's per-frame (track id → smoothed label, confidence) into action events."""

    def __init__(self, post: str, source: str, ids: IdCounter, min_frames: int = 3,
                 lost_track_s: float = 1.0, update_every_s: float = 1.0) -> None:
        self.post = post
        self.source = source
        self.ids = ids
        self.min_frames = min_frames
        self.lost_track_s = lost_track_s
        self.update_every_s = update_every_s
        self._tracks: dict[int, _TrackState] = {}
        self.lost_tracks: list[int] = []
        """Tracks dropped by the last ``observe`` (unseen for ``lost_track_s``)."""

    @property
    def open_events(self) -> list[ActionEvent]:
        return [s.event for s in self._tracks.values() if s.event is not None]

    def observe(self, t: float, wall: float, labels: dict[int, tuple[str, float]]) -> list[ActionEvent]:
        """One frame at source time ``t``: the smoothed label and confidence of each visible track."""
        out: list[ActionEvent] = []
        for track_id, (label, confidence) in labels.items():
            state = self._tracks.get(track_id)
            if state is not None and state.label != label:
                out += self._end(track_id)
                state = None
            if state is None:
                state = self._tracks[track_id] = _TrackState(label, t, wall, t, wall)
            state.last_t, state.last_wall = t, wall
            state.frames += 1
            state.confidence_sum += confidence
            if label == NG:
                continue
            if state.event is None and state.frames >= self.min_frames:
                state.event = ActionEvent(
                    id=self.ids.next("event"), post=self.post, source=self.source, track_id=track_id,
                    label=label, start=state.first_t, end=t, confidence=self._mean(state),
                    frames=state.frames, state="new", wall_start=state.first_wall, wall_end=wall)
                state.emitted_t = t
                out.append(dataclasses.replace(state.event))
            elif state.event is not None:
                self._follow(state)
                if t - state.emitted_t >= self.update_every_s:
                    state.emitted_t = t
                    state.event.state = "update"
                    out.append(dataclasses.replace(state.event))
        self.lost_tracks = [k for k, s in self._tracks.items() if t - s.last_t > self.lost_track_s]
        for track_id in self.lost_tracks:
            out += self._end(track_id)
        return out

    def close(self) -> list[ActionEvent]:
        """End every open event (end of the source or of the run)."""
        out: list[ActionEvent] = []
        for track_id in list(self._tracks):
            out += self._end(track_id)
        return out

    def _end(self, track_id: int) -> list[ActionEvent]:
        state = self._tracks.pop(track_id)
        if state.event is None:
            return []
        self._follow(state)
        state.event.state = "end"
        return [dataclasses.replace(state.event)]

    def _follow(self, state: _TrackState) -> None:
        event = state.event
        event.end, event.wall_end = state.last_t, state.last_wall
        event.frames, event.confidence = state.frames, self._mean(state)

    @staticmethod
    def _mean(state: _TrackState) -> float:
        return round(state.confidence_sum / state.frames, 4) if state.frames else 0.0
