"""The live loop of ``lrihar run``: captures → detector → crops → labeller → tracks → events →
procedures → sinks.

Decoding runs on one thread per source (``Capture``); everything from the detector on runs on
the calling thread (model code stays single-threaded), one step at a time over all sources: each
step takes at most one frame per source, so a detector call is batched across cameras and every
source keeps its own order. A step takes what is ready and never waits on one source: a dead,
stalled or slow camera costs the others nothing (files, which never drop a frame, are waited for
briefly when only files are in the step, so they keep going in lock-step). Sinks get items in the
order they happen; frame observers (the annotated video, the live page) get every processed frame
with its tracks; a failing sink or observer fails alone (:mod:`lrihar.runtime.sinks.fanout`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from lrihar.boxes import padded_box
from lrihar.config import ProcedureConfig, RunConfig
from lrihar.events import ActionEvent, Alert, Cycle, Gap, RuntimeItem, StepStatus
from lrihar.models.detectors.base import Detector
from lrihar.models.encoders.base import Crop
from lrihar.runtime.action_events import EventBuilder
from lrihar.runtime.ids import IdCounter
from lrihar.runtime.labellers import CropLabeller
from lrihar.runtime.sinks.fanout import SinkFanout
from lrihar.runtime.smoothing import LabelSmoother
from lrihar.runtime.timing import StageTimes
from lrihar.runtime.tracking import HandTracker
from lrihar.sources import Frame


@dataclass
class FrameView:
    """One processed frame, for frame observers: tracked boxes with smoothed labels, and the
    post's current checklist."""

    source: str
    post: str
    frame: Frame
    detections: sv.Detections
    labels: list[str]
    checklist: list[StepStatus]
    cycle_id: int | None


@dataclass
class RunSummary:
    """What a run did, for the console, the store's run record and the benchmarks."""

    frames: int = 0
    seconds: float = 0.0
    events: int = 0
    cycles: int = 0
    alerts: int = 0
    gaps: int = 0
    interrupted: bool = False
    timings: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    sinks: dict = field(default_factory=dict)
    """Per sink or observer that failed: failures, items skipped while set aside, errors."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "events": self.events, "cycles": self.cycles, "alerts": self.alerts, "gaps": self.gaps,
                "interrupted": self.interrupted, "timings": self.timings, "sources": self.sources,
                "sinks": self.sinks}


class _SourceState:
    """Per source: its capture, tracker, smoother and event builder."""

    def __init__(self, capture, post: str, cfg: RunConfig, ids: IdCounter, frame_rate: float) -> None:
        self.capture = capture
        self.post = post
        self.tracker = HandTracker(frame_rate, cfg.lost_track_s, cfg.track_threshold)
        self.smoother = LabelSmoother(cfg.smoothing, cfg.window)
        self.events = EventBuilder(post, capture.uri, ids, cfg.min_event_frames, cfg.lost_track_s)
        self.last_t = 0.0
        self.done = False


def _check_procedure_classes(procedures: dict[str, ProcedureConfig],
                             labeller_of: Callable[[str], CropLabeller]) -> None:
    """A step whose class the labeller never outputs could never be done: refuse it up front."""
    from lrihar.errors import BadInputError

    for post, procedure in procedures.items():
        labeller = labeller_of(post)
        known = set(labeller.classes)
        named = {c for step in procedure.steps for c in step.classes} | {procedure.start_action} - {None}
        unknown = sorted(named - known)
        if unknown:
            raise BadInputError(f"procedures.{post}: class(es) {', '.join(unknown)} are not classes of the "
                                f"classifier ({labeller.name}: {', '.join(labeller.classes)}); fix the "
                                "procedure in lrihar.yaml or retrain the classifier")


class LinePipeline:
    """Runs a set of captures through one detector and one labeller.

    Args:
        captures: :class:`~lrihar.runtime.capture.Capture` objects, not started, one per source.
        detector: any registered detector.
        labeller: a crop labeller (the student or the template matcher), or one per post (posts
            with their own classes, templates and λ).
        cfg: the project's ``run`` settings.
        procedures: post → its SOP (posts without one get events but no cycles).
        ids: the id counter (resumed from the store).
        sinks: objects with ``emit(item)`` and ``close()``; the essential ones (the store) are
            written first. Each fails alone (:class:`~lrihar.runtime.sinks.fanout.SinkFanout`).
        observers: callables taking a :class:`FrameView` (annotated video, live page).
        padding: crop padding per side (``classify.padding``).
        monitor_factory: builds a procedure monitor ``(post, procedure, ids)``.
    """

    GATHER_WAIT_S = 0.2
    """Longest a step waits for a first frame (or, with only files in it, for the other files)."""

    def __init__(self, captures: Sequence, detector: Detector,
                 labeller: CropLabeller | dict[str, CropLabeller], cfg: RunConfig, ids: IdCounter,
                 procedures: dict[str, ProcedureConfig] | None = None,
                 sinks: Sequence = (), observers: Sequence[Callable[[FrameView], None]] = (),
                 padding: float = 0.0, frame_rate: float = 30.0, monitor_factory=None) -> None:
        self.detector = detector
        self.labeller = labeller
        self.cfg = cfg
        self.ids = ids
        self.outputs = SinkFanout(sinks, observers)
        self.sinks = self.outputs.sinks
        self.observers = self.outputs.observers
        self.padding = padding
        self.states = [_SourceState(c, c.post, cfg, ids, frame_rate) for c in captures]
        if monitor_factory is None:
            from lrihar.runtime.procedure import ProcedureMonitor

            def monitor_factory(post, procedure, ids):
                # Events of a lost track end lost_track_s late: the monitor allows for it.
                return ProcedureMonitor(post, procedure, ids, lost_track_s=cfg.lost_track_s)
        _check_procedure_classes(procedures or {}, self.labeller_of)
        self.monitors = {post: monitor_factory(post, p, ids) for post, p in (procedures or {}).items()}
        self.times = StageTimes()
        self.summary = RunSummary()
        self.stop_event = threading.Event()
        self._ready = threading.Event()  # set by any capture that queued an item or ended
        for st in self.states:
            st.capture.on_ready(self._ready.set)
        self.on_stats: Callable[[RunSummary], None] | None = None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> RunSummary:
        """Process until every source ends, ``stop()`` is called or ``duration_s`` passes; then close
        every open event and cycle and every sink."""
        started = time.perf_counter()
        next_stats = started + self.cfg.stats_every_s
        for st in self.states:
            st.capture.start()
        try:
            while not self.stop_event.is_set():
                if duration_s is not None and time.perf_counter() - started >= duration_s:
                    break
                batch = self._gather()
                if batch:
                    self._process(batch)
                elif all(st.done for st in self.states):
                    break
                if self.on_stats is not None and time.perf_counter() >= next_stats:
                    next_stats += self.cfg.stats_every_s
                    self._refresh(started)
                    self.on_stats(self.summary)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.summary.interrupted |= self.stop_event.is_set()
            self._finish(started)
        return self.summary

    def stop(self) -> None:
        """Ask the loop to end after the current step (safe from a signal handler or thread)."""
        self.stop_event.set()
        self._ready.set()

    def _gather(self) -> list[tuple[_SourceState, Frame, float]]:
        """At most one frame per source, of those ready: no source is waited on in turn, so one with
        nothing to give (dead, stalled, slow) costs the others nothing. With nothing ready, one wait
        on "any source queued something" (≤ :attr:`GATHER_WAIT_S`). A step holding only files'
        frames waits (as long) for the files still decoding, so files go in lock-step as before; a
        live frame is never held back. Gaps go straight to the sinks; ended sources are closed."""
        batch: list[tuple[_SourceState, Frame, float]] = []
        taken: set[int] = set()
        deadline = time.monotonic() + self.GATHER_WAIT_S
        while True:
            self._ready.clear()  # before looking: an item queued from here on sets it again
            for k, st in enumerate(self.states):
                while not st.done and k not in taken:
                    timed = st.capture.get_timed(timeout=0)
                    if timed is None:
                        if st.capture.finished:
                            st.done = True
                            self._source_ended(st)
                        break
                    item, queued_wall = timed
                    if isinstance(item, Gap):  # not a frame: a gap's start (end None) or its end
                        self.summary.gaps += item.end is None
                        self._emit(item)
                        continue
                    taken.add(k)
                    batch.append((st, item, queued_wall))
            files_due = any(st.capture.waits and not st.done and k not in taken
                            for k, st in enumerate(self.states))
            if batch and (not files_due or any(not st.capture.waits for st, _, _ in batch)):
                return batch
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_event.is_set() or all(st.done for st in self.states):
                return batch
            self._ready.wait(left)

    def _process(self, batch: list[tuple[_SourceState, Frame, float]]) -> None:
        t0 = time.perf_counter()
        found = self.detector.detect_batch([f.image for _, f, _ in batch])
        t1 = time.perf_counter()
        crops, owners = [], []
        for k, ((_, frame, _), dets) in enumerate(zip(batch, found, strict=True)):
            for j in range(len(dets)):
                crops.append(self._crop(frame.image, dets, j))
                owners.append(k)
        labels, confs = self._label(crops, [batch[k][0].post for k in owners])
        t2 = time.perf_counter()
        per_frame: list[list[int]] = [[] for _ in batch]
        for i, k in enumerate(owners):
            per_frame[k].append(i)
        for k, (st, frame, decoded_wall) in enumerate(batch):
            idx = per_frame[k]
            dets = found[k]
            dets.data["label"] = np.array([labels[i] for i in idx], dtype=object)
            dets.data["label_confidence"] = np.array([confs[i] for i in idx], dtype=np.float32)
            self._track(st, frame, dets, decoded_wall)
        t3 = time.perf_counter()
        n = len(batch)
        self.times.add("detect", t1 - t0, n)
        self.times.add("classify", t2 - t1, n)
        self.times.add("track", t3 - t2, n)
        now = time.time()
        for _, _, decoded_wall in batch:
            self.times.samples["latency"].append(now - decoded_wall)
        self.summary.frames += n

    def labeller_of(self, post: str) -> CropLabeller:
        """The labeller of ``post``'s crops."""
        return self.labeller[post] if isinstance(self.labeller, dict) else self.labeller

    def _label(self, crops: list[Crop], posts: list[str]) -> tuple[list[str], np.ndarray]:
        """Labels of all crops of a step: one batched call per labeller (one in all for most lines)."""
        labels: list[str] = [""] * len(crops)
        confs = np.zeros(len(crops), np.float32)
        groups: dict[int, tuple[CropLabeller, list[int]]] = {}
        for i, post in enumerate(posts):
            labeller = self.labeller_of(post)
            groups.setdefault(id(labeller), (labeller, []))[1].append(i)
        for labeller, idx in groups.values():
            names, scores = labeller.label([crops[i] for i in idx])
            for i, name, score in zip(idx, names, scores, strict=True):
                labels[i], confs[i] = name, score
        return labels, confs

    def _crop(self, image: np.ndarray, dets: sv.Detections, j: int) -> Crop:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = padded_box(tuple(dets.xyxy[j]), self.padding, w, h)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)

        def pick(key: str):
            values = dets.data.get(key)
            return None if values is None or values[j] is None else values[j]

        return Crop(image[y1:y2, x1:x2], pick("world_landmarks"), pick("handedness"), pick("landmarks"))

    def _track(self, st: _SourceState, frame: Frame, dets: sv.Detections, decoded_wall: float) -> None:
        t, wall = frame.timestamp, time.time()
        st.last_t = t
        tracked = st.tracker.update(dets)
        smoothed: dict[int, tuple[str, float]] = {}
        shown: list[str] = []
        labels = tracked.data.get("label", np.array([], dtype=object))
        confs = tracked.data.get("label_confidence", np.zeros(len(tracked), np.float32))
        for j, track_id in enumerate(tracked.tracker_id):
            if track_id < 0:
                shown.append(str(labels[j]))
                continue
            label, conf = st.smoother.update(int(track_id), str(labels[j]), float(confs[j]))
            smoothed[int(track_id)] = (label, conf)
            shown.append(label)
        events = st.events.observe(t, wall, smoothed)
        for track_id in st.events.lost_tracks:
            st.smoother.drop(track_id)
        for event in events:
            self._emit(event)
            self._feed_monitor(st.post, event)
        monitor = self.monitors.get(st.post)
        if monitor is not None:
            for item in monitor.on_time(t, wall):
                self._emit(item)
        if self.observers:
            view = FrameView(st.capture.uri, st.post, frame, tracked, shown,
                             monitor.checklist() if monitor is not None else [],
                             monitor.cycle_id if monitor is not None else None)
            self.outputs.observe(view)

    def _feed_monitor(self, post: str, event: ActionEvent) -> None:
        monitor = self.monitors.get(post)
        if monitor is not None:
            for item in monitor.on_event(event):
                self._emit(item)

    def _source_ended(self, st: _SourceState) -> None:
        for event in st.events.close():
            self._emit(event)
            self._feed_monitor(st.post, event)
        if all(s.done for s in self.states if s.post == st.post) and st.post in self.monitors:
            for item in self.monitors[st.post].close(st.last_t, time.time()):
                self._emit(item)

    def _emit(self, item: RuntimeItem) -> None:
        if isinstance(item, ActionEvent):
            self.summary.events += item.state == "new"
        elif isinstance(item, Cycle):
            self.summary.cycles += 1
        elif isinstance(item, Alert):
            self.summary.alerts += 1
        self.outputs.emit(item)  # the store first; a failing sink fails alone

    def _refresh(self, started: float) -> None:
        self.summary.seconds = time.perf_counter() - started
        decode = self.times.samples["decode"]
        decode.clear()
        decode.extend(x for st in self.states for x in list(st.capture.decode_seconds))
        self.summary.timings = self.times.summary()
        self.summary.sources = {st.capture.uri: st.capture.stats() for st in self.states}
        self.summary.sinks = self.outputs.stats()

    def _finish(self, started: float) -> None:
        """Stop the captures, end every open event, close every sink (the store first; whatever
        happens before, every sink is closed, so the store writes all it holds)."""
        try:
            for st in self.states:
                st.capture.stop()
            for st in self.states:
                # A gap's start or end still queued is recorded. Frames left: not processed.
                while (timed := st.capture.get_timed(timeout=0)) is not None:
                    if isinstance(timed[0], Gap):
                        self.summary.gaps += timed[0].end is None
                        self._emit(timed[0])
                if not st.done:
                    for event in st.events.close():
                        self._emit(event)
        finally:
            self._refresh(started)  # before closing: an MQTT broker's last acks are not run time
            try:
                self.outputs.close()  # raises only when the store could not write what it held
            finally:
                self.summary.sinks = self.outputs.stats()
