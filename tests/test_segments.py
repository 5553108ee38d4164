"""Step scoring (`evaluate --events`) on hand-computed segment cases; the arithmetic is in the
comments. Definitions: MS-TCN (segmental F1, edit), IndustReal (POS, step F1, delay)."""

from __future__ import annotations

import json
import re

import pytest

from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.evaluate.segments import (
    damerau_levenshtein,
    edit_score,
    match_alerts,
    match_steps,
    procedure_order_similarity,
    score_steps,
    segment_counts,
)
from lrihar.evaluate.step_inputs import (
    MissingStep,
    Predicted,
    Segment,
    predicted_from_items,
    read_predicted_jsonl,
    read_step_truth,
)
from lrihar.events import ActionEvent, Alert, Cycle, Gap

PROJECT = "posts: [post-1, post-2]\nclasses:\n  - name: pick\n  - name: screw\n  - name: inspect\n"


def seg(label, start, end, key="post-1"):
    return Segment(key, label, start, end)


def event(id_, label, start, end, post="post-1", state="end"):
    return ActionEvent(id_, post, "cam-1", 1, label, start, end, 0.9, state=state)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    write(root / "lrihar.yaml", PROJECT)
    return root


# -- segmental F1 and edit (MS-TCN) ---------------------------------------------------------------

GT3 = [seg("pick", 0, 4), seg("screw", 4, 9), seg("inspect", 9, 12)]


@pytest.mark.parametrize("overlap", [0.10, 0.25, 0.50])
def test_perfect_match(overlap):
    # every predicted segment is its true segment (IoU 1): tp 3, fp 0, fn 0
    assert segment_counts(GT3, GT3, overlap) == (3, 0, 0)
    assert edit_score(["pick", "screw", "inspect"], ["pick", "screw", "inspect"]) == 100.0


def test_over_segmentation():
    # truth pick [0, 10]; predicted pick [0, 5] and pick [5, 10].
    # first: IoU = 5 / 10 = 0.5 >= 0.5 -> tp; second: best match is the same segment, already hit -> fp
    # F1 = 2·1 / (2·1 + 1 + 0) = 2/3
    gt, pred = [seg("pick", 0, 10)], [seg("pick", 0, 5), seg("pick", 5, 10)]
    for overlap in (0.10, 0.25, 0.50):
        assert segment_counts(pred, gt, overlap) == (1, 1, 0)
    # edit: [pick, pick] vs [pick]: one deletion, D = 1, max len 2 -> (1 - 1/2)·100 = 50
    assert edit_score(["pick", "pick"], ["pick"]) == 50.0
    truth = read_like(gt)
    result = score_steps(truth, Predicted([event(1, "pick", 0, 5), event(2, "pick", 5, 10)]))
    assert result["segments"]["f1"]["0.50"]["f1"] == pytest.approx(200 / 3)
    assert result["segments"]["edit"] == 50.0


@pytest.mark.parametrize(("shift", "hits"), [
    (3, (1, 1, 1)),    # pred [3, 13]: ∩ 7, span 13, IoU 0.538: a hit at 0.10, 0.25 and 0.50
    (5, (1, 1, 0)),    # pred [5, 15]: ∩ 5, span 15, IoU 0.333: hit at 0.10 and 0.25, miss at 0.50
    (8, (1, 0, 0)),    # pred [8, 18]: ∩ 2, span 18, IoU 0.111: hit at 0.10 only
    (9.5, (0, 0, 0)),  # pred [9.5, 19.5]: ∩ 0.5, span 19.5, IoU 0.026: a miss everywhere
])
def test_shifted_segment_at_each_threshold(shift, hits):
    gt, pred = [seg("pick", 0, 10)], [seg("pick", shift, 10 + shift)]
    for overlap, hit in zip((0.10, 0.25, 0.50), hits, strict=True):
        # a hit: tp 1; a miss: the prediction is a fp and the truth a fn
        assert segment_counts(pred, gt, overlap) == ((1, 0, 0) if hit else (0, 1, 1))


def test_iou_needs_the_same_label():
    # same interval, another class: IoU · [label equal] = 0 -> fp and fn
    assert segment_counts([seg("screw", 0, 10)], [seg("pick", 0, 10)], 0.10) == (0, 1, 1)


def test_edit_score_for_a_swap():
    # [pick, inspect, screw] vs [pick, screw, inspect]: Levenshtein has no swap, two substitutions,
    # D = 2 -> (1 - 2/3)·100 = 33.3
    assert edit_score(["pick", "inspect", "screw"], ["pick", "screw", "inspect"]) == pytest.approx(100 / 3)


# -- POS, step F1, delay (IndustReal) -------------------------------------------------------------

def test_pos_transposition_costs_one_substitution_two():
    gt = ["pick", "screw", "inspect"]
    # one transposition (screw <-> inspect): d = 1, POS = 1 - 1/3
    assert damerau_levenshtein(gt, ["pick", "inspect", "screw"]) == 1
    assert procedure_order_similarity(gt, ["pick", "inspect", "screw"]) == pytest.approx(2 / 3)
    # one substitution (inspect -> pick): d = 2, POS = 1 - 2/3
    assert damerau_levenshtein(gt, ["pick", "screw", "pick"]) == 2
    assert procedure_order_similarity(gt, ["pick", "screw", "pick"]) == pytest.approx(1 / 3)
    # a missing step is one deletion: d = 1; all wrong: d = 6 > 3, clipped -> POS 0
    assert procedure_order_similarity(gt, ["pick", "screw"]) == pytest.approx(2 / 3)
    assert procedure_order_similarity(gt, ["x", "y", "z"]) == 0.0
    # unrestricted Damerau-Levenshtein: "ca" -> "abc" is 2 (OSA would say 3)
    assert damerau_levenshtein("ca", "abc", substitute=1) == 2


def test_step_reported_early_is_a_false_positive():
    # truth: completed at 10 s; reported at 8 s (before it was done): fp 1, early 1, and no fn
    counts, delays = match_steps([10.0], [8.0])
    assert (counts.tp, counts.fp, counts.fn, counts.early) == (0, 1, 0, 1)
    assert counts.f1 == 0.0 and delays == []  # 2·0 / (0 + 1 + 0)
    # within a 2 s tolerance it is on time: tp 1, delay 8 - 10 = -2
    counts, delays = match_steps([10.0], [8.0], early_tolerance=2.0)
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 0) and delays == [-2.0]


def test_delay_sign_and_unmatched_steps():
    # completions 10 and 20; reports 12 and 26 -> delays +2 and +6 (late is positive)
    counts, delays = match_steps([10.0, 20.0], [12.0, 26.0])
    assert (counts.tp, counts.fp, counts.fn) == (2, 0, 0) and delays == [2.0, 6.0]
    # nothing reported: fn 2; reported but never done: fp 1
    assert match_steps([10.0, 20.0], [])[0].fn == 2
    assert match_steps([], [5.0])[0].fp == 1


def test_procedure_scores_per_cycle(tmp_path):
    truth = read_step_truth(write(tmp_path / "gt.csv", (
        "post,start,end,class,cycle\n"
        "post-1,0,4,pick,1\npost-1,4,9,screw,1\n"
        "post-1,20,24,pick,2\npost-1,24,30,screw,2\npost-1,30,33,inspect,2\n")))
    predicted = Predicted([
        event(1, "pick", 0, 4.5), event(2, "screw", 4.5, 9.5),   # cycle 1: both +0.5 s late
        event(3, "pick", 20, 24), event(4, "inspect", 24, 29),   # cycle 2: inspect reported at 29,
        event(5, "screw", 29, 31)])                              # before its end (33): early
    steps = score_steps(truth, predicted)["steps"]
    one, two = steps["per_unit"]
    assert (one["pos"], one["f1"]) == (1.0, 1.0)
    # cycle 2: order [pick, inspect, screw] vs [pick, screw, inspect]: one transposition, POS = 2/3;
    # tp 2 (pick, screw), fp 1 (inspect early), fn 0: F1 = 4 / (4 + 1) = 0.8
    assert two["pos"] == pytest.approx(2 / 3) and two["f1"] == pytest.approx(0.8)
    assert (two["tp"], two["fp"], two["fn"], two["early"]) == (2, 1, 0, 1)
    assert steps["pos"] == pytest.approx((1 + 2 / 3) / 2) and steps["f1"] == pytest.approx(0.9)
    # matched: +0.5, +0.5, 0 (pick at 24), +1 (screw 31 vs 30) -> mean 2 / 4 = 0.5
    assert steps["delay_mean_s"] == pytest.approx(0.5) and steps["matched"] == 4


# -- missing-step alerts --------------------------------------------------------------------------

def test_missing_alert_precision_recall():
    missing = [MissingStep("post-1", "inspect", 0, 12, "1"), MissingStep("post-1", "screw", 20, 30, "2")]
    alerts = [Alert(1, "post-1", 1, "missing", "inspect", 15.0, "m"),   # 15 <= 12 + 10: tp
              Alert(2, "post-1", 2, "missing", "screw", 45.0, "m"),     # 45 > 30 + 10: fp (and screw fn)
              Alert(3, "post-1", 2, "missing", "pick", 25.0, "m"),      # no missing pick: fp
              Alert(4, "post-1", 1, "missing", "inspect", 16.0, "m")]   # the same step twice: fp
    # tp 1, fp 3, fn 1 -> precision 1/4, recall 1/2
    assert match_alerts(missing, alerts, slack=10.0) == (1, 3, 1)
    # with 20 s of slack the screw alert comes in time: tp 2, fp 2, fn 0
    assert match_alerts(missing, alerts, slack=20.0) == (2, 2, 0)


def test_missing_rows_take_their_cycles_extent(tmp_path):
    truth = read_step_truth(write(tmp_path / "gt.csv", (
        "post,start,end,class,cycle,missing\n"
        "post-1,0,4,pick,1,\npost-1,4,9,screw,1,\npost-1,,,inspect,1,yes\n")))
    assert truth.missing == [MissingStep("post-1", "inspect", 0.0, 9.0, "1")]
    assert len(truth.segments) == 2  # the missing row is no segment
    predicted = Predicted([event(1, "pick", 0, 4), event(2, "screw", 4, 9)],
                          [Alert(1, "post-1", 1, "missing", "inspect", 14.0, "m"),  # 14 <= 9 + 10
                           Alert(2, "post-1", 1, "too_short", "pick", 4.0, "m")])   # not a missing alert
    alerts = score_steps(truth, predicted)["alerts"]
    assert (alerts["tp"], alerts["fp"], alerts["fn"]) == (1, 0, 0)
    assert (alerts["precision"], alerts["recall"]) == (1.0, 1.0)


# -- inputs ---------------------------------------------------------------------------------------

def read_like(segments):
    from lrihar.evaluate.step_inputs import StepTruth

    return StepTruth("gt.csv", "post", list(segments), [], False, False)


def test_jsonl_counts_ended_events_once(tmp_path):
    items = [event(1, "pick", 0, 3, state="new"), event(1, "pick", 0, 4, state="update"),
             event(1, "pick", 0, 4.5), event(2, "screw", 5, 6, state="update"),  # still open: not scored
             Cycle(1, "post-1", 0, 6), Alert(1, "post-1", 1, "missing", "inspect", 7.0, "m"),
             Gap(1, "cam-1", "post-1", 6, 7, "dropped")]
    path = tmp_path / "run.jsonl"
    write(path, "".join(json.dumps(i.to_dict()) + "\n" for i in items) + '{"type": "event", "id": 3, "po')
    predicted = read_predicted_jsonl(path)
    assert [(e.id, e.end) for e in predicted.events] == [(1, 4.5)]
    assert len(predicted.cycles) == 1 and len(predicted.alerts) == 1
    assert "line 8 was cut short" in predicted.notes[0]
    # the same from the objects themselves
    assert predicted_from_items(items).events == predicted.events


def test_jsonl_bad_line_is_named(tmp_path):
    path = write(tmp_path / "run.jsonl", json.dumps(event(1, "pick", 0, 1).to_dict()) + "\n"
                 + '{"type": "event", "id": 2, "label": "pick"}\n' + "not json\n")
    with pytest.raises(BadInputError, match=r"run.jsonl: invalid lines: line 2: event field 'start' must be "
                                            r"a finite number.*line 3: not JSON"):
        read_predicted_jsonl(path)


@pytest.mark.parametrize(("body", "message"), [
    ("post,start,end,class\npost-1,5,3,pick\n", r"line 2, column 'end': 3 is before start 5"),
    ("post,start,end,class\npost-1,0,1,pick\npost-1,0,x,pick\n",
     r"line 3, column 'end': 'x' is not a number"),
    ("post,start,end,class\npost-1,0,1,weld\n", r"line 2, column 'class': unknown class 'weld'"),
    ("post,start,end,class\npost-9,0,1,pick\n", r"line 2, column 'post': unknown post 'post-9'"),
    ("post,start,end,class,missing\npost-1,0,1,pick,maybe\n", r"line 2, column 'missing': 'maybe'"),
    ("post,start,end,class,missing\npost-1,,,pick,yes\n", r"line 2, column 'start': a missing step needs"),
    ("post,start,class\npost-1,0,pick\n", r"missing column\(s\) end"),
    ("start,end,class\n0,1,pick\n", r"missing column\(s\) post \(or source\)"),
])
def test_bad_csv_exits_2_naming_file_row_and_column(project, tmp_path, capsys, body, message):
    gt = write(tmp_path / "steps.csv", body)
    pred = write(tmp_path / "run.jsonl", json.dumps(event(1, "pick", 0, 1).to_dict()) + "\n")
    assert main(["evaluate", "-p", str(project), "--events", str(gt), "--predicted", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "steps.csv" in err
    assert re.search(message, " ".join(err.split())), err


def test_cli_prints_table_and_writes_json(project, tmp_path, capsys):
    gt = write(tmp_path / "steps.csv", "post,start,end,class\npost-1,0,4,pick\npost-1,4,9,screw\n")
    # pick on time; screw split in two (over-segmentation); an event at post-2, which has no truth
    pred = write(tmp_path / "run.jsonl", "".join(json.dumps(e.to_dict()) + "\n" for e in [
        event(1, "pick", 0, 4), event(2, "screw", 4, 6), event(3, "screw", 6, 9),
        event(4, "pick", 0, 4, post="post-2")]))
    out = tmp_path / "scores.json"
    assert main(["evaluate", "-p", str(project), "--events", str(gt), "--predicted", str(pred),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "segmental F1@0.10" in printed.out and "POS" in printed.out
    assert "post-2" in printed.err  # named as left out
    result = json.loads(out.read_text())
    # segments: pick tp; screw [4,6] IoU 2/5 = 0.4 -> tp at 0.10 and 0.25, then [6,9] (IoU 0.6)
    # finds that truth hit -> fp. At 0.50: [4,6] 0.4 < 0.5 -> fp, [6,9] 0.6 -> tp. Either way
    # tp 2, fp 1, fn 0: F1 = 4 / 5 = 80 %
    for overlap in ("0.10", "0.25", "0.50"):
        row = result["segments"]["f1"][overlap]
        assert (row["tp"], row["fp"], row["fn"], row["f1"]) == (2, 1, 0, pytest.approx(80.0))
    # edit: [pick, screw, screw] vs [pick, screw]: D 1, max 3 -> 66.7
    assert result["segments"]["edit"] == pytest.approx(200 / 3)
    # steps: screw completes at 9; reports at 6 (early: fp) and 9 (tp, delay 0)
    assert result["steps"]["pooled"]["tp"] == 2 and result["steps"]["pooled"]["early"] == 0
    assert result["steps"]["pooled"]["fp"] == 1 and result["steps"]["delay_mean_s"] == 0.0


def test_cli_without_predicted_needs_the_store_events(project, tmp_path, capsys):
    gt = write(tmp_path / "steps.csv", "post,start,end,class\npost-1,0,4,pick\n")
    assert main(["evaluate", "-p", str(project), "--events", str(gt)]) == 2
    assert "holds no action events" in capsys.readouterr().err
