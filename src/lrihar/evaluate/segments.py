"""Scoring action events, cycles and alerts against annotated step segments, with the measures
of the literature so that numbers compare (definitions: docs/cli.md, ``evaluate --events``).

- Temporal action segmentation (MS-TCN's eval.py, re-implemented): segmental F1@{0.10, 0.25,
  0.50} by greedy IoU matching of same-label segments, counts summed over posts (their
  "videos"); edit score (1 − D / max(len)) × 100 over segment label sequences, mean per post.
- Procedure step recognition (IndustReal's psr_utils.py): POS = 1 − min(d / len(gt), 1), d a
  Damerau–Levenshtein distance (insert = delete = 1, substitute = 2, transpose = 1) over the
  order of completed steps; step F1 where a step reported before it really completed is a false
  positive; average delay (predicted − true completion) over the steps matched.
- Missing-step alerts: precision / recall of ``missing`` alerts against the ground truth's
  missing steps (same post and step, alert time within the expected window + a slack).
- Cycles: predicted cycles matched to annotated ones (IoU ≥ 0.5), cycle-time error.

A step's completion is its segment's ``end`` (for a prediction: the ended event's ``end``).
Predicted events labelled NG (no known action) are background, as MS-TCN leaves background out.

Example:
    >>> truth = read_step_truth("steps.csv")  # doctest: +SKIP
    >>> score_steps(truth, read_predicted_jsonl("events.jsonl"))["segments"]["edit"]  # doctest: +SKIP
    87.5
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from lrihar.evaluate.step_inputs import MissingStep, Predicted, Segment, StepTruth

OVERLAPS = (0.10, 0.25, 0.50)
CYCLE_IOU = 0.5


# -- the measures, on plain sequences -------------------------------------------------------------

def _iou(a_start: float, a_end: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """IoU of one interval with many, MS-TCN's way (union = the span of both); two identical
    instants (zero-length segments) have IoU 1."""
    inter = np.minimum(a_end, ends) - np.maximum(a_start, starts)
    union = np.maximum(a_end, ends) - np.minimum(a_start, starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where((union == 0) & (starts == a_start), 1.0, iou)


def segment_counts(pred: Sequence[Segment], gt: Sequence[Segment], overlap: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of MS-TCN's segmental F1 at ``overlap``: each predicted segment, in time
    order, takes the same-label ground-truth segment of highest IoU; a hit if IoU ≥ ``overlap``
    and that segment was not hit before, else a false positive (no second choice)."""
    pred = sorted(pred, key=lambda s: (s.start, s.end))
    gt = sorted(gt, key=lambda s: (s.start, s.end))
    starts = np.array([s.start for s in gt], float)
    ends = np.array([s.end for s in gt], float)
    labels = np.array([s.label for s in gt], object)
    hits = np.zeros(len(gt), bool)
    tp = fp = 0
    for p in pred:
        iou = _iou(p.start, p.end, starts, ends) * (labels == p.label) if len(gt) else np.zeros(0)
        best = int(iou.argmax()) if len(gt) else -1
        if best >= 0 and iou[best] >= overlap and not hits[best]:
            tp += 1
            hits[best] = True
        else:
            fp += 1
    return tp, fp, len(gt) - int(hits.sum())


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance (insert, delete, substitute: 1 each) between two label sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def edit_score(pred: Sequence[Hashable], gt: Sequence[Hashable]) -> float:
    """MS-TCN's edit score: (1 − D / max(len(pred), len(gt))) × 100; 100 when both are empty."""
    longest = max(len(pred), len(gt))
    return 100.0 if longest == 0 else (1 - levenshtein(pred, gt) / longest) * 100


def damerau_levenshtein(a: Sequence[Hashable], b: Sequence[Hashable], insert: float = 1, delete: float = 1,
                        substitute: float = 2, transpose: float = 1) -> float:
    """Weighted Damerau–Levenshtein distance from ``a`` to ``b`` (unrestricted: Lowrance–Wagner,
    as weighted_levenshtein's ``dam_lev`` that IndustReal calls), IndustReal's weights by default."""
    big = (len(a) + len(b)) * max(insert, delete, substitute, transpose) + 1
    d = np.full((len(a) + 2, len(b) + 2), big, float)
    d[1:, 1] = np.arange(len(a) + 1) * delete
    d[1, 1:] = np.arange(len(b) + 1) * insert
    last_row: dict[Hashable, int] = {}  # symbol -> last row of a where it was seen
    for i in range(1, len(a) + 1):
        last_col = 0  # last column of b (in this row) that matched a[i-1]
        for j in range(1, len(b) + 1):
            k, m = last_row.get(b[j - 1], 0), last_col
            same = a[i - 1] == b[j - 1]
            if same:
                last_col = j
            d[i + 1, j + 1] = min(
                d[i, j] + (0 if same else substitute),
                d[i + 1, j] + insert,
                d[i, j + 1] + delete,
                # swap a[k-1]..a[i-1] with b[m-1]..b[j-1]: delete what lies between in a, insert in b
                d[k, m] + (i - k - 1) * delete + transpose + (j - m - 1) * insert,
            )
        last_row[a[i - 1]] = i
    return float(d[len(a) + 1, len(b) + 1])


def procedure_order_similarity(gt: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """IndustReal's POS: 1 − min(d / len(gt), 1), d the weighted Damerau–Levenshtein distance
    between the ground-truth and predicted step orders; 1 for two empty orders, 0 when only the
    ground truth is empty and something was predicted."""
    if not gt:
        return 1.0 if not pred else 0.0
    return 1 - min(damerau_levenshtein(gt, pred) / len(gt), 1.0)


@dataclass
class StepCounts:
    """Step-recognition counts: ``early`` false positives are steps reported before they were
    really completed (IndustReal: the step then is not also a false negative)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    early: int = 0

    def add(self, other: StepCounts) -> None:
        self.tp, self.fp, self.fn, self.early = (self.tp + other.tp, self.fp + other.fp,
                                                 self.fn + other.fn, self.early + other.early)

    @property
    def f1(self) -> float:
        """2·tp / (2·tp + fp + fn); 1 when there was nothing to find and nothing was reported."""
        total = 2 * self.tp + self.fp + self.fn
        return 1.0 if total == 0 else 2 * self.tp / total


def match_steps(gt: Sequence[float], pred: Sequence[float], early_tolerance: float = 0.0
                ) -> tuple[StepCounts, list[float]]:
    """Completions of one step (times) matched one to one: each true completion, in time order,
    takes the earliest unmatched report at or after it (``early_tolerance`` seconds before
    counts as on time). Unmatched reports left beside unmatched completions were early (false
    positives, the completion not a false negative); the rest are false positives / negatives.

    Returns:
        The counts and the delay (report − completion, seconds) of each match.
    """
    gt, pred = sorted(gt), sorted(pred)
    used = [False] * len(pred)
    delays, unmatched_gt = [], 0
    for g in gt:
        j = next((j for j, p in enumerate(pred) if not used[j] and p >= g - early_tolerance), None)
        if j is None:
            unmatched_gt += 1
        else:
            used[j] = True
            delays.append(pred[j] - g)
    unmatched_pred = used.count(False)
    early = min(unmatched_gt, unmatched_pred)
    return StepCounts(len(delays), unmatched_pred, unmatched_gt - early, early), delays


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _prf(tp: int, fp: int, fn: int) -> dict:
    f1 = StepCounts(tp, fp, fn).f1 if tp + fp + fn else None
    return {"tp": tp, "fp": fp, "fn": fn, "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": f1}


# -- scoring a run against the ground truth -------------------------------------------------------

def _key(item, key_column: str) -> str:
    return item.source if key_column == "source" else item.post


def _predicted_segments(predicted: Predicted, key_column: str) -> list[Segment]:
    from lrihar.classes import NG

    return [Segment(_key(e, key_column), e.label, e.start, e.end) for e in predicted.events
            if e.label != NG]


def _by_key(segments: Sequence[Segment]) -> dict[str, list[Segment]]:
    out: dict[str, list[Segment]] = defaultdict(list)
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        out[s.key].append(s)
    return out


def score_segments(pred: Sequence[Segment], gt: Sequence[Segment], keys: Sequence[str],
                   overlaps: Sequence[float] = OVERLAPS) -> dict:
    """Segmental F1 (percent, counts summed over ``keys``) and edit score (mean over ``keys``)."""
    pred_by, gt_by = _by_key(pred), _by_key(gt)
    f1 = {}
    for overlap in overlaps:
        counts = np.sum([segment_counts(pred_by.get(k, []), gt_by.get(k, []), overlap) for k in keys], axis=0)
        tp, fp, fn = (int(c) for c in counts)
        row = _prf(tp, fp, fn)
        f1[f"{overlap:.2f}"] = {**row, "f1": None if row["f1"] is None else row["f1"] * 100}
    edits = {k: edit_score([s.label for s in pred_by.get(k, [])], [s.label for s in gt_by.get(k, [])])
             for k in keys}
    return {"ground_truth": sum(len(gt_by.get(k, [])) for k in keys),
            "predicted": sum(len(pred_by.get(k, [])) for k in keys),
            "f1": f1, "edit": float(np.mean(list(edits.values()))) if edits else None, "edit_per_key": edits}


def _units(truth: StepTruth) -> dict[str, list[tuple[str | None, float]]]:
    """Per key, its cycles in time order with their start (one unit per key without cycles)."""
    starts: dict[tuple[str, str | None], float] = {}
    for item in [*truth.segments, *truth.missing]:
        unit = (item.key, item.cycle if truth.has_cycles else None)
        starts[unit] = min(starts.get(unit, item.start), item.start)
    out: dict[str, list[tuple[str | None, float]]] = defaultdict(list)
    for (key, cycle), start in sorted(starts.items(), key=lambda kv: (kv[0][0], kv[1])):
        out[key].append((cycle, start))
    return out


def _unit_of(time: float, cycles: list[tuple[str | None, float]]) -> str | None:
    """The cycle a completion at ``time`` belongs to: cycles split the timeline at their starts
    (before the first: the first)."""
    chosen = cycles[0][0]
    for cycle, start in cycles:
        if time >= start:
            chosen = cycle
    return chosen


def score_procedure(pred: Sequence[Segment], truth: StepTruth, keys: Sequence[str],
                    early_tolerance: float = 0.0) -> dict:
    """IndustReal's POS and step F1 per unit (cycle, or post without cycles), and delays."""
    units = _units(truth)
    completions: dict[tuple[str, str | None], dict[str, list]] = defaultdict(lambda: {"gt": [], "pred": []})
    for s in truth.segments:
        completions[(s.key, s.cycle if truth.has_cycles else None)]["gt"].append((s.end, s.label))
    for s in pred:
        if s.key in units:
            completions[(s.key, _unit_of(s.end, units[s.key]))]["pred"].append((s.end, s.label))
    total, delays, rows = StepCounts(), [], []
    for key in keys:
        for cycle, _ in units.get(key, []):
            unit = completions[(key, cycle)]
            gt, pr = sorted(unit["gt"]), sorted(unit["pred"])
            counts = StepCounts()
            for label in sorted({lab for _, lab in gt} | {lab for _, lab in pr}):
                c, d = match_steps([t for t, lab in gt if lab == label], [t for t, lab in pr if lab == label],
                                   early_tolerance)
                counts.add(c)
                delays += d
            total.add(counts)
            pos = procedure_order_similarity([lab for _, lab in gt], [lab for _, lab in pr])
            rows.append({truth.key_column: key, "cycle": cycle, "pos": pos, "f1": counts.f1,
                         "tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "early": counts.early,
                         "order": [lab for _, lab in gt], "predicted_order": [lab for _, lab in pr]})
    return {"unit": "cycle" if truth.has_cycles else truth.key_column, "units": len(rows),
            "pos": float(np.mean([r["pos"] for r in rows])) if rows else None,
            "f1": float(np.mean([r["f1"] for r in rows])) if rows else None,
            "pooled": {**_prf(total.tp, total.fp, total.fn), "early": total.early},
            "early_tolerance_s": early_tolerance,
            "delay_mean_s": float(np.mean(delays)) if delays else None,
            "delay_median_s": float(np.median(delays)) if delays else None, "matched": len(delays),
            "per_unit": rows}


def match_alerts(missing: Sequence[MissingStep], alerts: Sequence, slack: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of ``missing`` alerts: a ground-truth missing step takes the earliest unused
    alert with its post and step raised in [start, end + ``slack``] (one alert per step)."""
    alerts = sorted(alerts, key=lambda a: a.at)
    used = [False] * len(alerts)
    tp = 0
    for m in sorted(missing, key=lambda m: (m.start, m.end)):
        j = next((j for j, a in enumerate(alerts) if not used[j] and a.post == m.key and a.step == m.step
                  and m.start <= a.at <= m.end + slack), None)
        if j is not None:
            used[j] = True
            tp += 1
    return tp, len(alerts) - tp, len(missing) - tp


def score_alerts(truth: StepTruth, predicted: Predicted, keys: Sequence[str], slack: float) -> dict | None:
    """Missing-step alert precision / recall; None when the ground truth says nothing of missing
    steps (no ``missing`` column)."""
    if not truth.has_missing_column:
        return None
    alerts = [a for a in predicted.alerts if a.kind == "missing" and a.post in keys]
    tp, fp, fn = match_alerts(truth.missing, alerts, slack)
    return {"ground_truth": len(truth.missing), "predicted": len(alerts), **_prf(tp, fp, fn),
            "slack_s": slack}


def score_cycles(truth: StepTruth, predicted: Predicted, keys: Sequence[str]) -> dict | None:
    """Predicted cycles matched one to one to annotated cycles (same post, greedy by IoU ≥ 0.5),
    with the mean absolute cycle-time error of the matches; None without cycles by post."""
    if not truth.has_cycles or truth.key_column != "post":
        return None
    extent: dict[tuple[str, str], list[float]] = {}
    for s in truth.segments:
        lo_hi = extent.setdefault((s.key, s.cycle), [s.start, s.end])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], s.start), max(lo_hi[1], s.end)
    gt = sorted(((k, lo, hi) for (k, _), (lo, hi) in extent.items() if k in keys), key=lambda g: (g[0], g[1]))
    pred = sorted((c for c in predicted.cycles if c.post in keys), key=lambda c: c.start)
    hits, errors = [False] * len(gt), []
    for c in pred:
        iou = [-1.0 if hits[i] or k != c.post else float(_iou(c.start, c.end, np.array([lo]),
                                                                 np.array([hi]))[0])
               for i, (k, lo, hi) in enumerate(gt)]
        if iou and max(iou) >= CYCLE_IOU:
            i = int(np.argmax(iou))
            hits[i] = True
            errors.append(abs(c.cycle_time - (gt[i][2] - gt[i][1])))
    return {"ground_truth": len(gt), "predicted": len(pred), "matched": len(errors), "iou": CYCLE_IOU,
            "cycle_time_error_mean_s": float(np.mean(errors)) if errors else None}


def score_steps(truth: StepTruth, predicted: Predicted, overlaps: Sequence[float] = OVERLAPS,
                early_tolerance: float = 0.0, alert_slack: float = 10.0) -> dict:
    """Every measure of a run against step ground truth, JSON-ready.

    Posts (sources) the ground truth does not cover are left out and listed under ``notes``:
    ground truth must cover the whole run of each post it names.
    """
    keys = truth.keys
    pred = _predicted_segments(predicted, truth.key_column)
    notes = list(predicted.notes)
    others = sorted({s.key for s in pred} - set(keys))
    if others:
        notes.append(f"predictions at {truth.key_column}(s) without ground truth left out: "
                     f"{', '.join(others)}")
    pred = [s for s in pred if s.key in keys]
    return {"ground_truth": truth.path, "predicted": predicted.source, "key": truth.key_column, "keys": keys,
            "segments": score_segments(pred, truth.segments, keys, overlaps),
            "steps": score_procedure(pred, truth, keys, early_tolerance),
            "alerts": score_alerts(truth, predicted, keys, alert_slack),
            "cycles": score_cycles(truth, predicted, keys), "notes": notes}
