"""Step compliance at one post: action events in, work cycles and alerts out.

A :class:`ProcedureMonitor` follows a post's standard operating procedure (the project file's
``procedures.<post>``, :class:`~lrihar.config.ProcedureConfig`) over the post's action events and
cuts them into work cycles, one per unit.

Procedure
    Steps come in order. A step is one class, or a ``group`` of classes done in any order (the
    step is done once each of its classes has been seen). ``optional`` steps may be skipped.
    Only classes named by the procedure (and its ``start_action``) count: any other class, and
    ``NG``, is ignored — it neither advances the procedure nor keeps a cycle open.

Cycles
    With no cycle open, the first counted action opens one, whatever its class (a unit that
    skipped its first step still gets its missing steps). An open cycle ends when a start action
    begins after the cycle got past it (``start_action``, by default the first step's classes; a
    start action that is not a step must be followed by at least one step), or when no counted
    action has been going for ``idle_gap_s``. An action belongs to the cycle open when it
    started; a cycle cut by the next unit's start action is emitted once its last action ended.
    ``Cycle.end`` is the end of its last action, so ``cycle_time`` excludes the idle gap.

Violations, each alerted once per cycle and step, the moment it is certain, never later:
    - ``missing``: a required step not done when an action of a later step (optional or not)
      starts, or when the cycle ends. A group is missing while any of its classes is.
    - ``out_of_order``: an action of a step (or a group class) not seen yet in this cycle starts
      after a later step has started. A step first alerted missing and then done late is in both
      ``Cycle.missing`` and ``Cycle.out_of_order``; ``complete`` tells whether every required
      step was done in the end.
    - ``too_short``: one action of the step ended before ``min_s``.
    - ``too_long``: one action of the step has been going for more than ``max_s``: seen on its
      ``update`` events or, while it runs, on :meth:`ProcedureMonitor.on_time`.
    - ``cycle_too_long``: the cycle's actions span more than ``max_cycle_s`` (``step`` is empty).
    A step seen again in the same cycle is counted once (its time adds up) and is never out of
    order: going back to a done step is rework, not a skipped order. Two hands working in
    parallel follow the same rules: whichever action starts first sets the order.

Times are the post's source clock (one clock per post; a time earlier than one already seen is
taken as that one). ``Alert.at`` is the newest time the monitor had seen when it raised the
alert (an event's ``end``, or ``on_time``'s ``t``), so ``at`` minus the violation's true moment
is the alert delay. An action not ended yet is certainly going on until ``lost_track_s`` before
the clock: the pipeline ends a lost track's event that late, with the track's last seen time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lrihar.config import ProcedureConfig
from lrihar.events import ActionEvent, Alert, Cycle, StepStatus, Violation
from lrihar.runtime.ids import IdCounter

Item = Cycle | Alert


@dataclass
class _Action:
    """A counted action event as the monitor keeps it."""

    event_id: int
    label: str
    step: int | None  # None: the start action, not a step
    start: float
    end: float
    cycle: _CycleState


@dataclass
class _CycleState:
    id: int
    start: float
    end: float
    reached: int = -1  # the furthest step started
    seen: dict[int, set[str]] = field(default_factory=dict)  # step -> its classes seen
    seconds: dict[int, float] = field(default_factory=dict)  # step -> time of its ended actions
    order: list[int] = field(default_factory=list)  # steps in the order first seen
    flagged: dict[Violation, list[int]] = field(default_factory=dict)  # kind -> steps, in raise order
    problem: dict[int, Violation] = field(default_factory=dict)  # step -> its latest violation
    running: dict[int, _Action] = field(default_factory=dict)  # event id -> action going on
    ended_ids: set[int] = field(default_factory=set)
    long_alerted: bool = False
    closed: bool = False


class ProcedureMonitor:
    """Turns one post's action events into work cycles and alerts (see the module docstring).

    Args:
        post: the post watched; events of another post are a caller error.
        procedure: the post's procedure from the project file.
        ids: hands out cycle and alert ids (kinds ``cycle`` and ``alert``).
        lost_track_s: how late the pipeline ends the event of a lost track (``run.lost_track_s``).
    """

    def __init__(self, post: str, procedure: ProcedureConfig, ids: IdCounter, *,
                 lost_track_s: float = 0.0) -> None:
        self.post = post
        self.procedure = procedure
        self._ids = ids
        self._lost_track_s = lost_track_s
        self._steps = procedure.steps
        self._step_of = {c: i for i, step in enumerate(self._steps) for c in step.classes}
        if procedure.start_action is not None:
            self._start_classes = {procedure.start_action}
        else:
            self._start_classes = set(self._steps[0].classes)
        self._now = float("-inf")
        self._last_active = float("-inf")  # end of the latest ended counted action
        self._current: _CycleState | None = None
        self._closing: list[_CycleState] = []  # cut by the next unit, waiting for their actions
        self._wall = 0.0  # Unix time of the clock now, when the caller gave it

    @property
    def cycle_id(self) -> int | None:
        """The id of the cycle open now, or None between units."""
        return self._current.id if self._current is not None else None

    def on_event(self, event: ActionEvent) -> list[Item]:
        """Take one action event (``new``, ``update`` or ``end``) of this post."""
        if event.post != self.post:
            raise ValueError(f"event {event.id} is for post {event.post!r}; this monitor watches "
                             f"{self.post!r}")
        out: list[Item] = []
        self._wall = event.wall_end
        counted = event.label in self._step_of or event.label in self._start_classes
        action = self._find(event.id) if counted else None
        if not counted or (action is None and self._was_ended(event.id)):
            self._advance(event.end, out)
            return out
        if action is None:
            # The gap is judged at the action's start; from then on the post is busy.
            self._now = max(self._now, event.end)
            self._idle_check(event.start, out)
            action = self._begin(event, out)
        action.end = max(action.end, event.end)
        self._advance(event.end, out)
        if event.state == "end":
            self._finish(action, out)
        return out

    def on_time(self, t: float, wall: float = 0.0) -> list[Item]:
        """The source clock reached ``t`` with no event: idle gaps, running steps and cycles that
        passed their limits. ``wall``: Unix time of ``t``, for the alerts' ``wall_at``."""
        self._wall = wall
        out: list[Item] = []
        self._advance(t, out)
        return out

    def close(self, t: float, wall: float = 0.0) -> list[Item]:
        """End of the run at source time ``t``: every cycle is closed and emitted. Actions still
        going on are checked for ``too_long`` up to ``t`` but not for ``too_short``."""
        self._wall = wall
        out: list[Item] = []
        self._advance(t, out)
        if self._current is not None:
            self._close_cycle(self._current, None, out)
        for cycle in self._closing:
            self._emit(cycle, out)
        self._closing = []
        return out

    def checklist(self) -> list[StepStatus]:
        """The steps of the cycle open now (all not done between units), for the live page."""
        cycle = self._current
        rows = []
        for i, step in enumerate(self._steps):
            seconds = 0.0
            if cycle is not None:
                seconds = cycle.seconds.get(i, 0.0) + sum(
                    self._span(a) for a in cycle.running.values() if a.step == i)
            rows.append(StepStatus(step=step.name, optional=step.optional,
                                   done=cycle is not None and self._done(cycle, i),
                                   seconds=seconds, problem=cycle.problem.get(i) if cycle else None))
        return rows

    # -- the rules -----------------------------------------------------------------------------

    def _begin(self, event: ActionEvent, out: list[Item]) -> _Action:
        """An action starts: cut or open the cycle, then check the order."""
        step = self._step_of.get(event.label)
        cycle = self._current
        if cycle is not None and event.label in self._start_classes:
            start_step = -1 if step is None else step
            if cycle.reached > start_step:
                self._close_cycle(cycle, event, out)
                cycle = None
        if cycle is None:
            cycle = self._current = _CycleState(id=self._ids.next("cycle"), start=event.start,
                                                end=event.end)
        action = _Action(event.id, event.label, step, event.start, event.end, cycle)
        cycle.running[event.id] = action
        if step is None:
            return action
        for earlier in range(step):
            if not self._steps[earlier].optional and not self._done(cycle, earlier):
                later = self._steps[step].name
                self._alert(cycle, "missing", earlier, out, event.id,
                            f"'{later}' started before '{self._steps[earlier].name}' was done")
        classes = cycle.seen.setdefault(step, set())
        if event.label not in classes and step < cycle.reached:
            furthest = self._steps[cycle.reached].name
            self._alert(cycle, "out_of_order", step, out, event.id,
                        f"'{event.label}' started after the later step '{furthest}'")
        if not classes:
            cycle.order.append(step)
        classes.add(event.label)
        cycle.reached = max(cycle.reached, step)
        return action

    def _finish(self, action: _Action, out: list[Item]) -> None:
        """An action ended: its time counts, and it may have been too short."""
        cycle = action.cycle
        del cycle.running[action.event_id]
        cycle.ended_ids.add(action.event_id)
        cycle.end = max(cycle.end, action.end)
        self._last_active = max(self._last_active, action.end)
        if action.step is not None:
            cycle.seconds[action.step] = cycle.seconds.get(action.step, 0.0) + action.end - action.start
            min_s = self._steps[action.step].min_s
            if min_s is not None and action.end - action.start < min_s:
                self._alert(cycle, "too_short", action.step, out, action.event_id,
                            f"'{action.label}' took {action.end - action.start:.2f} s, "
                            f"under its minimum {min_s:g} s")
        if cycle.closed and not cycle.running:
            self._closing.remove(cycle)
            self._emit(cycle, out)

    def _advance(self, t: float, out: list[Item]) -> None:
        """Move the clock to ``t``: running actions and cycles past their limits, idle gap."""
        self._now = max(self._now, t)
        for cycle in [*self._closing, *([self._current] if self._current else [])]:
            for action in cycle.running.values():
                max_s = self._steps[action.step].max_s if action.step is not None else None
                if max_s is not None and self._span(action) > max_s:
                    self._alert(cycle, "too_long", action.step, out, action.event_id,
                                f"'{action.label}' has gone on for more than its maximum {max_s:g} s")
            self._cycle_limit(cycle, out)
        self._idle_check(self._now, out)

    def _cycle_limit(self, cycle: _CycleState, out: list[Item]) -> None:
        limit = self.procedure.max_cycle_s
        if limit is not None and not cycle.long_alerted and self._extent(cycle) - cycle.start > limit:
            cycle.long_alerted = True
            self._alert(cycle, "cycle_too_long", None, out, None,
                        f"cycle {cycle.id} has gone on for more than max_cycle_s {limit:g} s")

    def _idle_check(self, t: float, out: list[Item]) -> None:
        """Close the open cycle when nothing counted has been going on for ``idle_gap_s`` at ``t``."""
        gap = self.procedure.idle_gap_s
        if self._current is None or gap is None or self._any_running():
            return
        if t - self._last_active >= gap:
            self._close_cycle(self._current, None, out)

    def _close_cycle(self, cycle: _CycleState, cut_by: ActionEvent | None, out: list[Item]) -> None:
        """No more actions join ``cycle``: its undone required steps are missing now."""
        cycle.closed = True
        if self._current is cycle:
            self._current = None
        why = f"the next unit started ('{cut_by.label}')" if cut_by else "the cycle ended"
        for i, step in enumerate(self._steps):
            if not step.optional and not self._done(cycle, i):
                self._alert(cycle, "missing", i, out, None, f"{why} without '{step.name}'")
        if cycle.running:
            self._closing.append(cycle)
        else:
            self._emit(cycle, out)

    def _emit(self, cycle: _CycleState, out: list[Item]) -> None:
        self._cycle_limit(cycle, out)
        out.append(self._cycle_record(cycle))

    def _alert(self, cycle: _CycleState, kind: Violation, step: int | None, out: list[Item],
               event_id: int | None, why: str) -> None:
        """Raise ``kind`` for ``step`` of ``cycle`` unless it was raised already."""
        if step is not None:
            steps = cycle.flagged.setdefault(kind, [])
            if step in steps:
                return
            steps.append(step)
            cycle.problem[step] = kind
        name = self._steps[step].name if step is not None else ""
        what = kind.replace("_", " ") + (f" '{name}'" if name else "")
        out.append(Alert(id=self._ids.next("alert"), post=self.post, cycle_id=cycle.id, kind=kind,
                         step=name, at=self._now, message=f"{self.post}: {what}: {why}",
                         event_id=event_id, wall_at=self._wall))

    # -- helpers -------------------------------------------------------------------------------

    def _cycle_record(self, cycle: _CycleState) -> Cycle:
        def names(kind: Violation) -> list[str]:
            return [self._steps[i].name for i in sorted(cycle.flagged.get(kind, []))]

        complete = all(step.optional or self._done(cycle, i) for i, step in enumerate(self._steps))
        return Cycle(id=cycle.id, post=self.post, start=cycle.start, end=self._extent(cycle),
                     steps_seen=[self._steps[i].name for i in cycle.order], missing=names("missing"),
                     out_of_order=names("out_of_order"), too_short=names("too_short"),
                     too_long=names("too_long"), complete=complete)

    def _done(self, cycle: _CycleState, step: int) -> bool:
        return set(self._steps[step].classes) <= cycle.seen.get(step, set())

    def _span(self, action: _Action) -> float:
        """How long a running action has certainly been going on."""
        return max(action.end, self._now - self._lost_track_s) - action.start

    def _extent(self, cycle: _CycleState) -> float:
        """The certain end of ``cycle``: its latest action end, running ones up to now."""
        return max([cycle.end, *(a.start + self._span(a) for a in cycle.running.values())])

    def _any_running(self) -> bool:
        return any(c.running for c in [*self._closing, *([self._current] if self._current else [])])

    def _find(self, event_id: int) -> _Action | None:
        for cycle in [*self._closing, *([self._current] if self._current else [])]:
            if event_id in cycle.running:
                return cycle.running[event_id]
        return None

    def _was_ended(self, event_id: int) -> bool:
        cycles = [*self._closing, *([self._current] if self._current else [])]
        return any(event_id in c.ended_ids for c in cycles)
