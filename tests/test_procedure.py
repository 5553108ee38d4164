"""Step compliance: scripted action events -> exact cycles, and each alert on the call that made it
certain; bad procedures in a project file are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lrihar.config import ProcedureConfig, load_project_config
from lrihar.errors import BadInputError
from lrihar.events import ActionEvent, Alert, Cycle
from lrihar.runtime.ids import IdCounter
from lrihar.runtime.procedure import ProcedureMonitor

DOCS = Path(__file__).resolve().parents[1] / "docs" / "project-file.md"


def monitor(*steps, ids=None, lost_track_s=0.0, **settings) -> ProcedureMonitor:
    """A monitor of post p1; a step is a class name or a dict of ProcedureStep fields."""
    steps_ = [{"class": s} if isinstance(s, str) else s for s in steps]
    procedure = ProcedureConfig.model_validate({"steps": steps_, **settings})
    return ProcedureMonitor("p1", procedure, ids or IdCounter(), lost_track_s=lost_track_s)


class Script:
    """Feeds hand-made events to a monitor; event ids count up from 1."""

    def __init__(self, mon: ProcedureMonitor) -> None:
        self.mon = mon
        self.events: dict[int, ActionEvent] = {}

    def new(self, label: str, start: float, end: float | None = None, track: int = 1) -> tuple[int, list]:
        event = ActionEvent(id=len(self.events) + 1, post=self.mon.post, source="cam", track_id=track,
                            label=label, start=start, end=start if end is None else end, confidence=0.9)
        self.events[event.id] = event
        return event.id, self.mon.on_event(event)

    def update(self, event_id: int, end: float) -> list:
        return self._send(event_id, end, "update")

    def end(self, event_id: int, end: float) -> list:
        return self._send(event_id, end, "end")

    def action(self, label: str, start: float, end: float, track: int = 1) -> list:
        """A whole action: its ``new`` then its ``end``; what both calls returned."""
        event_id, first = self.new(label, start, track=track)
        return first + self.end(event_id, end)

    def _send(self, event_id: int, end: float, state: str) -> list:
        old = self.events[event_id]
        event = ActionEvent(id=old.id, post=old.post, source=old.source, track_id=old.track_id,
                            label=old.label, start=old.start, end=end, confidence=0.9, state=state)
        return self.mon.on_event(event)


def alerts(items: list) -> list[tuple[str, str, float]]:
    return [(a.kind, a.step, a.at) for a in items if isinstance(a, Alert)]


def cycles(items: list) -> list[Cycle]:
    return [c for c in items if isinstance(c, Cycle)]


def test_a_complete_cycle_ends_exactly_at_the_idle_gap():
    s = Script(monitor("a", "b", "c", idle_gap_s=5))
    assert s.action("a", 0, 2) + s.action("b", 2.5, 4) + s.action("c", 4.5, 6) == []
    assert s.mon.cycle_id == 1
    assert [r.done for r in s.mon.checklist()] == [True, True, True]
    assert s.mon.on_time(10.99) == []
    (cycle,) = s.mon.on_time(11.0)
    assert (cycle.id, cycle.start, cycle.end, cycle.cycle_time) == (1, 0, 6, 6)
    assert cycle.steps_seen == ["a", "b", "c"] and cycle.complete and cycle.ok
    assert s.mon.cycle_id is None
    assert s.mon.close(20) == []


def test_a_missing_step_alerts_when_a_later_step_starts():
    s = Script(monitor("a", "b", "c", "d", idle_gap_s=5))
    assert s.action("a", 0, 2) == []
    event_id, items = s.new("c", 3.0, end=3.4)  # `new` comes a few frames after the start
    (alert,) = items
    assert (alert.kind, alert.step, alert.at, alert.cycle_id) == ("missing", "b", 3.4, 1)
    assert alert.event_id == event_id
    assert "'c' started before 'b' was done" in alert.message
    assert s.end(event_id, 5) == []
    assert s.action("d", 5, 7) == []  # b is not alerted again
    assert [r.problem for r in s.mon.checklist()] == [None, "missing", None, None]
    (cycle,) = s.mon.close(8)
    assert cycle.missing == ["b"] and cycle.steps_seen == ["a", "c", "d"]
    assert not cycle.complete and not cycle.ok


def test_steps_left_undone_are_missing_when_the_cycle_ends():
    s = Script(monitor("a", "b", "c", idle_gap_s=5))
    s.action("a", 0, 2)
    s.action("b", 2, 3)
    assert s.mon.on_time(7.9) == []
    items = s.mon.on_time(8.0)
    assert alerts(items) == [("missing", "c", 8.0)]
    assert cycles(items)[0].missing == ["c"] and cycles(items)[0].end == 3


def test_close_alerts_what_is_missing_and_emits_the_open_cycle():
    s = Script(monitor("a", "b", "c", idle_gap_s=None))
    s.action("a", 0, 2)
    assert s.mon.on_time(1000) == []  # no idle gap: the cycle stays open
    items = s.mon.close(1001)
    assert alerts(items) == [("missing", "b", 1001), ("missing", "c", 1001)]
    assert cycles(items)[0].end == 2


def test_an_optional_step_done_after_a_later_one_is_out_of_order():
    s = Script(monitor("a", {"class": "b", "optional": True}, "c"))
    s.action("a", 0, 1)
    assert s.action("c", 1, 2) == []
    event_id, items = s.new("b", 2.5, end=2.6)
    assert alerts(items) == [("out_of_order", "b", 2.6)]
    assert items[0].event_id == event_id and "after the later step 'c'" in items[0].message
    s.end(event_id, 3)
    (cycle,) = s.mon.close(4)
    assert cycle.out_of_order == ["b"] and cycle.missing == [] and cycle.complete and not cycle.ok


def test_a_required_step_done_late_is_missing_then_out_of_order():
    s = Script(monitor("a", "b", "c"))
    s.action("a", 0, 1)
    assert alerts(s.action("c", 1, 2)) == [("missing", "b", 1)]
    assert alerts(s.action("b", 2, 3)) == [("out_of_order", "b", 2)]
    assert s.mon.checklist()[1].done and s.mon.checklist()[1].problem == "out_of_order"
    (cycle,) = s.mon.close(4)
    assert (cycle.missing, cycle.out_of_order, cycle.complete) == (["b"], ["b"], True)


def test_a_repeated_step_counts_once_and_is_not_out_of_order():
    s = Script(monitor("a", "b", "c"))
    assert s.action("a", 0, 1) + s.action("b", 1, 2) + s.action("c", 2, 3) + s.action("b", 3, 4) == []
    assert s.mon.checklist()[1].seconds == 2.0
    (cycle,) = s.mon.close(5)
    assert cycle.steps_seen == ["a", "b", "c"] and cycle.ok


def test_a_too_short_step_alerts_at_the_end_of_its_action():
    s = Script(monitor("a", {"class": "b", "min_s": 1.0}))
    s.action("a", 0, 1)
    event_id, items = s.new("b", 1.0, end=1.2)
    assert items == []  # it may still last long enough
    (alert,) = s.end(event_id, 1.5)
    assert (alert.kind, alert.step, alert.at, alert.event_id) == ("too_short", "b", 1.5, event_id)
    assert s.action("b", 2, 2.1) == []  # once per cycle
    (cycle,) = s.mon.close(3)
    assert cycle.too_short == ["b"] and cycle.complete and not cycle.ok


def test_a_too_long_step_alerts_mid_event_on_its_update():
    s = Script(monitor("a", {"class": "b", "max_s": 3.0}))
    s.action("a", 0, 1)
    event_id, items = s.new("b", 2.0, end=2.1)
    assert items == [] and s.update(event_id, 5.0) == []
    (alert,) = s.update(event_id, 5.2)
    assert (alert.kind, alert.step, alert.at, alert.event_id) == ("too_long", "b", 5.2, event_id)
    assert s.update(event_id, 6) == [] and s.end(event_id, 7) == []  # once
    (cycle,) = s.mon.close(8)
    assert cycle.too_long == ["b"]


@pytest.mark.parametrize(("lost_track_s", "quiet_until", "alert_at"), [(0.0, 5.0, 5.01), (1.0, 6.0, 6.01)])
def test_a_too_long_step_alerts_on_the_clock_without_updates(lost_track_s, quiet_until, alert_at):
    s = Script(monitor("a", {"class": "b", "max_s": 3.0}, lost_track_s=lost_track_s))
    s.action("a", 0, 1)
    s.new("b", 2.0, end=2.1)
    # a track unseen for lost_track_s may already have ended: not certain before that margin
    assert s.mon.on_time(quiet_until) == []
    assert alerts(s.mon.on_time(alert_at)) == [("too_long", "b", alert_at)]
    assert s.mon.checklist()[1].problem == "too_long"


def test_a_group_may_come_in_any_order_but_all_of_it_is_required():
    s = Script(monitor("a", {"group": ["x", "y"]}, "c"))
    assert s.action("a", 0, 1) + s.action("y", 1, 2) + s.action("x", 2, 3) + s.action("c", 3, 4) == []
    assert s.mon.checklist()[1].step == "x+y"
    s.mon.close(5)

    s = Script(monitor("a", {"group": ["x", "y"]}, "c"))
    s.action("a", 0, 1)
    s.action("x", 1, 2)
    assert not s.mon.checklist()[1].done
    assert alerts(s.action("c", 2, 3)) == [("missing", "x+y", 2)]
    (cycle,) = s.mon.close(4)
    assert cycle.steps_seen == ["a", "x+y", "c"] and cycle.missing == ["x+y"] and not cycle.complete


def test_an_optional_step_skipped_raises_nothing():
    s = Script(monitor("a", {"class": "b", "optional": True}, "c"))
    assert s.action("a", 0, 1) + s.action("c", 1, 2) == []
    (cycle,) = s.mon.close(3)
    assert cycle.ok and cycle.complete and cycle.steps_seen == ["a", "c"]


def test_an_idle_gap_starts_a_new_unit_even_without_its_start_action():
    s = Script(monitor("a", "b", idle_gap_s=5))
    s.action("a", 0, 1)
    s.action("b", 1, 2)
    # started 4.9 s after the last action (its `new` came later, at 7.2): the same unit
    b_id, items = s.new("b", 6.9, end=7.2)
    assert items == [] and s.end(b_id, 7.5) == []
    _, items = s.new("b", 12.5, end=12.6)  # 5 s after the last action ended: a new unit
    (cycle,) = cycles(items)
    assert (cycle.id, cycle.end, cycle.ok) == (1, 7.5, True)
    assert alerts(items) == [("missing", "a", 12.6)]
    assert items[-1].cycle_id == 2 and s.mon.cycle_id == 2


def test_the_start_action_starts_a_new_unit():
    s = Script(monitor("a", "b", idle_gap_s=None))
    s.action("a", 0, 1)
    assert s.action("a", 0.5, 1.2, track=2) == []  # a second hand on step a: the same unit
    s.action("b", 1.2, 2)
    _, items = s.new("a", 2.5)
    (cycle,) = items
    assert (cycle.id, cycle.start, cycle.end, cycle.steps_seen, cycle.ok) == (1, 0, 2, ["a", "b"], True)
    assert s.mon.cycle_id == 2


def test_a_start_action_outside_the_steps_marks_each_unit():
    s = Script(monitor("a", "b", start_action="scan", idle_gap_s=None))
    assert s.action("scan", 0, 1) + s.action("scan", 1, 1.5) == []  # nothing done yet: one unit
    s.action("a", 2, 3)
    s.action("b", 3, 4)
    (cycle,) = s.action("scan", 5, 6)
    assert (cycle.start, cycle.end, cycle.steps_seen, cycle.ok) == (0, 4, ["a", "b"], True)


def test_a_cycle_cut_by_the_next_unit_waits_for_its_running_actions():
    s = Script(monitor("a", {"class": "b", "max_s": 4.0}, "c", idle_gap_s=None))
    s.action("a", 0, 1)
    b_id, _ = s.new("b", 1, end=1.5)
    items = s.action("a", 2, 3, track=2)  # next unit starts while b still goes on
    assert alerts(items) == [("missing", "c", 2)] and items[0].cycle_id == 1
    assert cycles(items) == []
    (alert,) = s.update(b_id, 5.5)  # b still belongs to cycle 1
    assert (alert.kind, alert.cycle_id) == ("too_long", 1)
    (cycle,) = s.end(b_id, 6)
    assert (cycle.id, cycle.end, cycle.too_long, cycle.missing) == (1, 6, ["b"], ["c"])
    assert s.mon.cycle_id == 2 and [r.done for r in s.mon.checklist()] == [True, False, False]


def test_other_classes_and_ng_are_ignored():
    s = Script(monitor("a", "b", idle_gap_s=5))
    s.action("a", 0, 1)
    other_id, items = s.new("phone", 1, end=2)
    _, more = s.new("NG", 1, end=2)
    assert items + more == []
    assert s.action("b", 2, 3) == []
    # the other class goes on, but it does not keep the cycle open
    (cycle,) = s.update(other_id, 8)
    assert (cycle.end, cycle.steps_seen, cycle.ok) == (3, ["a", "b"], True)


def test_a_cycle_too_long_alerts_once_as_soon_as_it_passes():
    s = Script(monitor("a", "b", max_cycle_s=10, idle_gap_s=None))
    event_id, _ = s.new("a", 0, end=0.1)
    assert s.mon.on_time(10) == []
    (alert,) = s.mon.on_time(10.5, wall=1_800_000_010.5)
    assert (alert.kind, alert.step, alert.at, alert.cycle_id) == ("cycle_too_long", "", 10.5, 1)
    assert alert.wall_at == 1_800_000_010.5
    assert s.end(event_id, 11) + s.action("b", 11, 12) == []
    assert cycles(s.mon.close(13))[0].cycle_time == 12


def test_ids_are_unique_and_events_of_another_post_refused():
    counter = IdCounter({"cycle": 7, "alert": 3})
    s = Script(monitor("a", "b", "c", ids=counter))
    s.action("a", 0, 1)
    assert [a.id for a in s.action("c", 1, 2)] == [4]
    assert s.mon.cycle_id == 8
    with pytest.raises(ValueError, match="post 'p2'"):
        s.mon.on_event(ActionEvent(id=99, post="p2", source="cam", track_id=1, label="a", start=0, end=0,
                                   confidence=1))


# -- the project file ----------------------------------------------------------------------------

HEAD = "posts: [p1]\nclasses: [{name: a}, {name: b}]\nprocedures:\n  "


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        (HEAD + "p1: {steps: [{class: a, group: [b]}]}", "procedures.p1.steps.0", "either `class: NAME`"),
        (HEAD + "p1: {steps: [{class: a, min_s: 3, max_s: 1}]}", "procedures.p1.steps.0", "above max_s"),
        (HEAD + "p1: {steps: []}", "procedures.p1.steps", "at least 1 item"),
        (HEAD + "p1: {steps: [{class: a, max: 3}]}", "procedures.p1.steps.0.max", "Extra inputs"),
        (HEAD + "p1: {steps: [{class: a}], idle_gap_s: 0}", "procedures.p1.idle_gap_s", "greater than 0"),
        (HEAD + "p1: {steps: [{class: a}, {group: [b, a]}]}", "procedures.p1", "more than one step"),
        (HEAD + "p2: {steps: [{class: a}]}", "(top level)", "unknown post(s) p2"),
        (HEAD + "p1: {steps: [{class: c}]}", "(top level)", "procedures.p1: unknown class(es) c"),
        ("posts: [p1]\nprocedures:\n  p1: {steps: [{class: a}], start_action: NG}", "procedures.p1",
         "'NG' (the rejection class)"),
    ],
)
def test_a_bad_procedure_is_named(tmp_path, text, field, hint):
    (tmp_path / "lrihar.yaml").write_text(text + "\n")
    with pytest.raises(BadInputError) as err:
        load_project_config(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "lrihar.yaml") in message and field in message and hint in message


def test_the_documented_example_validates_and_runs():
    block = re.search(r"## `procedures`.*?```yaml\n(.*?)```", DOCS.read_text(), re.S).group(1)
    procedure = ProcedureConfig.model_validate(yaml.safe_load(block)["procedures"]["post-1"])
    assert [s.name for s in procedure.steps] == ["pick_part", "wipe", "screw_left+screw_right", "inspect"]
    s = Script(ProcedureMonitor("post-1", procedure, IdCounter()))
    steps = [("pick_part", 0, 2), ("screw_right", 2, 5), ("screw_left", 5, 8), ("inspect", 8, 9)]
    items = [item for step in steps for item in s.action(*step)]
    assert alerts(items) == [("too_short", "inspect", 9)]  # the optional wipe skipped: no alert
    (cycle,) = s.mon.on_time(14)
    assert cycle.complete and cycle.too_short == ["inspect"]
