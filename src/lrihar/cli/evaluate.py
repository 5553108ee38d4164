"""Commands for evaluation: evaluate, sweep, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import LineOpt, PostOpt, ProjectOpt, app, echo_err
from lrihar.errors import BadInputError


def _ious(values: list[float] | None) -> tuple[float, ...]:
    return tuple(values) if values else (0.3, 0.4)


# The cost table's rates (paper defaults), shared by `evaluate` and `report`.
SecondsPerImage = Annotated[float, typer.Option(
    help="Manual seconds per detector image (paper: 4 h / 500 images).")]
HoursPerClassSet = Annotated[float, typer.Option(
    help="Manual hours to label --crops-per-class crops of every class (paper: 24 h).")]
CropsPerClass = Annotated[int, typer.Option(help="Crops per class a manual baseline labels (paper: 200).")]
PostsPerLine = Annotated[int, typer.Option(help="Posts per line for the cost table.")]


def _rates(seconds_per_image: float, hours_per_class_set: float, crops_per_class: int):
    from lrihar.evaluate.cost import CostRates

    return CostRates(seconds_per_image, crops_per_class, hours_per_class_set)

@app.command()
def evaluate(
    project: ProjectOpt = Path("."),
    gt: Annotated[Path | None, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")] = None,
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    posts_per_line: PostsPerLine = 20,
    seconds_per_image: SecondsPerImage = 28.8,
    hours_per_class_set: HoursPerClassSet = 24.0,
    crops_per_class: CropsPerClass = 200,
    json_out: Annotated[Path | None, typer.Option("--json", "-o", help="Write every figure as JSON.")] = None,
    events: Annotated[Path | None, typer.Option(
        "--events", help="Score `lrihar run`'s events, cycles and alerts instead, against this CSV of "
                         "annotated step segments (post or source, start, end, class; optional cycle, "
                         "missing).")] = None,
    predicted: Annotated[Path | None, typer.Option(
        help="--events: the run's JSONL output (default: the events stored in the project).")] = None,
    early_tolerance: Annotated[float, typer.Option(
        min=0, help="--events: a step reported up to this many seconds before it really completed "
                    "still counts as on time (IndustReal: 0).")] = 0.0,
    alert_slack: Annotated[float, typer.Option(
        min=0, help="--events: a missing-step alert may come this many seconds after its cycle's "
                    "end (a cycle ends at the next start action or after the idle gap).")] = 10.0,
    classifiers: Annotated[bool, typer.Option(
        "--classifiers", help="Table 4 instead: the template matcher and every trained classifier on one "
                              "held-out split (accuracy per post, training time, call time).")] = False,
    data: Annotated[Path | None, typer.Option(
        help="--classifiers: compare on this ImageFolder's test/ (or val/) split (default: the crops "
             "the latest student's teacher held out).")] = None,
    line: LineOpt = None,
    post: PostOpt = None,
) -> None:
    """Detection metrics (eq. 3 / eq. 4, P/R/F1, AP50, mAP50-95), confusion matrices, cost
    (per post, per line, and for a line of --posts-per-line posts)."""
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.project_eval import evaluate_project
    from lrihar.lines import project_layout
    from lrihar.project import Project

    proj = Project.open(project)
    posts = project_layout(proj.config).select(line, post)
    if posts is not None and (events is not None or classifiers):
        raise BadInputError("--line / --post select the stored frames that detection, labels and cost are "
                            "measured on; leave them out with --events or --classifiers")
    if events is not None:
        if gt is not None or classifiers:
            raise BadInputError("--events scores a run's events on its own: leave out --gt and --classifiers")
        return _evaluate_events(proj, events, predicted, early_tolerance, alert_slack, json_out)
    if predicted is not None:
        raise BadInputError("--predicted goes with --events GT.csv (the step segments to score it against)")
    if classifiers:

        return classifier_table_command(proj, data, json_out)
    truth = load_ground_truth(gt, images) if gt else None
    result = evaluate_project(proj, truth, _ious(iou), _rates(seconds_per_image, hours_per_class_set,
                                                              crops_per_class), posts_per_line, posts)
    _print_evaluation(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

def _evaluate_events(proj, events: Path, predicted: Path | None, early_tolerance: float,
                     alert_slack: float, json_out: Path | None) -> None:
    """`evaluate --events`: a run's events, cycles and alerts against annotated step segments."""
    from lrihar.evaluate.segments import score_steps
    from lrihar.evaluate.step_inputs import load_predicted_from_store, read_predicted_jsonl, read_step_truth
    from lrihar.lines import project_layout

    layout = project_layout(proj.config)
    steps = {c for p in layout.posts.values() if p.procedure for s in p.procedure.steps for c in s.classes}
    truth = read_step_truth(events, [*proj.classes, *sorted(steps - set(proj.classes))], list(layout.posts))
    found = read_predicted_jsonl(predicted) if predicted else load_predicted_from_store(proj)
    result = score_steps(truth, found, early_tolerance=early_tolerance, alert_slack=alert_slack)
    _print_steps(result)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _num(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _print_steps(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    seg, steps, alerts, cycles = result["segments"], result["steps"], result["alerts"], result["cycles"]
    table = Table("measure", "value", "counts", title=f"step recognition vs {result['ground_truth']} "
                  f"({len(result['keys'])} {result['key']}(s))")
    for overlap, row in seg["f1"].items():
        table.add_row(f"segmental F1@{overlap} (%)", _num(row["f1"], ".1f"),
                      f"tp {row['tp']} fp {row['fp']} fn {row['fn']}")
    table.add_row("edit score (%)", _num(seg["edit"], ".1f"),
                  f"{seg['predicted']} predicted, {seg['ground_truth']} true segments")
    pooled = steps["pooled"]
    table.add_row("POS", _num(steps["pos"]), f"mean of {steps['units']} {steps['unit']}(s)")
    table.add_row("step F1", _num(steps["f1"]), f"tp {pooled['tp']} fp {pooled['fp']} (early "
                  f"{pooled['early']}) fn {pooled['fn']}")
    table.add_row("average delay (s)", _num(steps["delay_mean_s"], ".2f"),
                  f"{steps['matched']} steps matched, median {_num(steps['delay_median_s'], '.2f')}")
    if alerts is not None:
        table.add_row("missing-step alerts P / R", f"{_num(alerts['precision'])} / {_num(alerts['recall'])}",
                      f"tp {alerts['tp']} fp {alerts['fp']} fn {alerts['fn']}")
    if cycles is not None:
        table.add_row("cycles matched", f"{cycles['matched']} of {cycles['ground_truth']}",
                      f"{cycles['predicted']} predicted; |cycle-time error| "
                      f"{_num(cycles['cycle_time_error_mean_s'], '.2f')} s")
    console.print(table)
    for note in result["notes"]:
        echo_err(f"note: {note}")


def _print_evaluation(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    det = result.get("detection")
    if det and det.get("matched_images"):
        table = Table("T_IoU", "recall (eq. 3)", "accuracy (eq. 4)", title="detection")
        for t, v in det["paper"].items():
            table.add_row(t, f"{v['recall']:.2%}", f"{v['accuracy']:.2%}")
        console.print(table)
        console.print("  ".join(f"{k} {v:.3f}" for k, v in det["standard"].items()))
        _print_detection_parts(console, det)
    elif det:
        echo_err(f"warning: {det['note']}")
    for post, c in result["classification"].items():
        console.print(f"classification {post}: {c['crops']} crops, {c['right']} right, {c['wrong']} wrong, "
                      f"{c['sent_to_ng']} to NG; accuracy {c['accuracy']:.2%}, "
                      f"without NG {c['accuracy_without_ng']:.2%}")
    if not result["classification"]:
        console.print("classification: no ground-truth classes or reviewed labels to compare with")
    _print_cost(console, result["cost"])


def _rate(scores: dict, which: str) -> str:
    """A rate with the counts behind it: ``66.7% (2/3)``."""
    hit, total = (scores["gt_hit"], scores["gt_total"]) if which == "recall" else (scores["pred_hit"],
                                                                                   scores["pred_total"])
    return f"{scores[which]:.1%} ({hit}/{total})"


def _print_detection_parts(console, det: dict) -> None:
    """Eq. 3 / eq. 4 per ground-truth class and per source: where the detector falls short."""
    from rich.table import Column, Table

    from lrihar.cli.annotate import short_sources
    from lrihar.evaluate.project_eval import LINE

    ious = list(det["paper"])
    rates = [f"{what} @{t}" for t in ious for what in ("recall", "accuracy")]

    def cells(paper: dict) -> list[str]:
        return [_rate(paper[t], what) for t in ious for what in ("recall", "accuracy")]

    def whole(header: str, names) -> Column:  # names are never cut short
        return Column(header, no_wrap=True, min_width=max([len(header), *map(len, names)]))

    by_class = det.get("by_class") or {}
    if by_class:
        table = Table(whole("class", by_class), "GT boxes", "images", *rates,
                      title="detection per ground-truth class (recall: of its boxes; accuracy: of the "
                            "boxes on images showing it)")
        for cls, row in by_class.items():
            table.add_row(cls, str(row["boxes"]), str(row["images"]), *cells(row["paper"]))
        console.print(table)
    empty = det.get("no_ground_truth_box") or {}
    if empty.get("images"):
        console.print(f"images with no ground-truth box: {empty['images']}, with {empty['predictions']} "
                      "(false) boxes on them")
    by_source = det.get("by_source") or {}
    if by_source:
        shown, under = short_sources(list(by_source))
        posts = any(row["post"] != LINE for row in by_source.values())
        table = Table(whole("source", shown.values()), *(["post"] if posts else []), "images", "GT boxes",
                      *rates, title="detection per source")
        for uri, row in by_source.items():
            table.add_row(shown[uri], *([row["post"]] if posts else []), str(row["images"]),
                          str(row["ground_truth_boxes"]), *cells(row["paper"]))
        console.print(table)
        if under:
            console.print(f"(sources under {under})", soft_wrap=True)


def _print_cost(console, cost: dict) -> None:
    """Table 3 as work done and still owed; a saving only where one was earned."""
    from rich.table import Table

    def known(row: dict, key: str):
        return "?" if row["hours_owed"] is None else row[key]

    several = len(cost["lines"]) > 1
    table = Table(*(["line"] if several else []), "post", "frames checked", "images to fix", "draw", "delete",
                  "relabel", "h by hand", "h done", "h owed", "saved",
                  title="annotation cost (Table 3): work done and still owed")
    for r in cost["posts"]:
        table.add_row(*([r["line"]] if several else []), r["post"], f"{r['frames_checked']} of {r['frames']}",
                      *(str(known(r, k)) for k in ("detector_images_owed", "boxes_to_draw", "boxes_to_delete",
                                                   "relabels_owed")),
                      str(r["hours_manual"]), str(r["hours_done"]), str(known(r, "hours_owed")),
                      "–" if r["saved"] is None else f"{r['saved']:.1%}")
    console.print(table)
    if several:
        lines = Table("line", "posts", "frames checked", "h by hand", "h done", "h with lrihar", "saved",
                      title="annotation cost per line (sums of its posts)")
        for r in cost["lines"]:
            lines.add_row(r["line"], str(len(r["posts"])), f"{r['frames_checked']} of {r['frames']}",
                          str(r["hours_manual"]), str(r["hours_done"]),
                          "–" if r["hours_lrihar"] is None else str(r["hours_lrihar"]),
                          "–" if r["saved"] is None else f"{r['saved']:.1%}")
        console.print(lines)
    line, done, measured, rates = cost["line"], cost["done"], cost["measured_review"], cost["rates"]
    console.print(f"rates: {rates['seconds_per_detector_image']:g} s per detector image (boxed by hand, or "
                  f"needing any box fix), {rates['seconds_per_crop']:g} s per classifier crop (labelled "
                  "by hand, or relabelled)")
    so_far = (f"done so far: {measured['hours']} h of review measured over {measured['sessions']} sessions "
              f"({measured['actions']} actions); {done['detector_images']} images with box fixes and "
              f"{done['classifier_crops']} labels and templates set by a person, "
              f"{done['hours']} h at these rates")
    by_hand = f"by hand, a line of {line['posts']} posts: {line['hours_manual']} h"
    if cost["checked"] == "nothing":
        console.print("annotation cost: nothing was checked against ground truth (give --gt), so no "
                      f"saving is claimed. {so_far}; {by_hand}.")
    elif cost["checked"] == "part":
        reasons = "; ".join(f"{r['post']}: {r['not_earned']}" for r in cost["posts"] if r["not_earned"])
        console.print(f"annotation cost: checked only in part ({reasons}), so no saving is claimed for "
                      f"the line. {so_far}; {by_hand}.")
    else:
        saved = "no saving" if line["saved"] is None else f"{line['saved']:.1%} saved"
        console.print(f"annotation cost, checked against ground truth: {by_hand}, with lrihar "
                      f"{line['hours_lrihar']} h (done so far + still owed), {saved}")

@app.command()
def sweep(
    gt: Annotated[Path, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")],
    detector: Annotated[list[str], typer.Option(
        help="Detector to sweep: NAME or NAME=MODEL (repeatable; one colour each).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("sweep"),
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    accuracy_floor: Annotated[float, typer.Option(help="Best pair: highest recall at this accuracy.")] = 0.9,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Sweep each detector's two thresholds offline: CSV grid, best pair, 3-D surfaces (Fig. 7)."""
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.run_sweep import DetectorSpec, run_sweep

    truth = load_ground_truth(gt, images)
    specs = [DetectorSpec.parse(d) for d in detector]
    result = run_sweep(specs, truth, out, _ious(iou), accuracy_floor, show_progress=progress)
    for model, by_iou in result.best.items():
        for t, best in by_iou.items():
            if best is None:
                typer.echo(f"{model} @ T_IoU {t}: no threshold pair reaches accuracy {accuracy_floor:.0%}")
            else:
                pair = ", ".join(f"{k}={v}" for k, v in best.items()
                                 if k not in ("iou", "recall", "accuracy", "predictions", "ground_truth"))
                typer.echo(f"{model} @ T_IoU {t}: best {pair}: recall {best['recall']:.2%}, "
                           f"accuracy {best['accuracy']:.2%}")
    typer.echo(f"wrote {len(result.files)} files to {out}")

@app.command()
def report(
    project: ProjectOpt = Path("."),
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="HTML file (default PROJECT/report.html).")] = None,
    gt: Annotated[Path | None, typer.Option(help="Ground truth: COCO .json or YOLO dataset folder.")] = None,
    images: Annotated[Path | None, typer.Option(help="Images folder of the ground truth.")] = None,
    sweep_dir: Annotated[Path | None, typer.Option("--sweep", help="A `lrihar sweep` output folder.")] = None,
    iou: Annotated[list[float] | None, typer.Option(help="T_IoU (repeatable; default 0.3 and 0.4).")] = None,
    markdown: Annotated[bool, typer.Option(help="Also write a Markdown version beside it.")] = True,
    timing: Annotated[bool, typer.Option(help="Time the classifier call (Table 4).")] = True,
    classifiers: Annotated[bool, typer.Option(
        "--classifiers", help="Add the trained classifiers to Table 4 (see evaluate --classifiers).")]
        = False,
    posts_per_line: PostsPerLine = 20,
    seconds_per_image: SecondsPerImage = 28.8,
    hours_per_class_set: HoursPerClassSet = 24.0,
    crops_per_class: CropsPerClass = 200,
    line: LineOpt = None,
    post: PostOpt = None,
) -> None:
    """Write one self-contained HTML report (and Markdown) with every table and figure that exists."""

    from lrihar.evaluate.classifier_table import template_matcher_row
    from lrihar.evaluate.confusion import Confusion
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.project_eval import evaluate_project
    from lrihar.evaluate.report import write_report
    from lrihar.lines import project_layout
    from lrihar.project import Project

    proj = Project.open(project)
    posts = project_layout(proj.config).select(line, post)
    truth = load_ground_truth(gt, images) if gt else None
    result = evaluate_project(proj, truth, _ious(iou), _rates(seconds_per_image, hours_per_class_set,
                                                              crops_per_class), posts_per_line, posts)
    table4 = None
    if timing and proj.store.counts()["detections"]:
        confs = {post: Confusion(c["classes"], c["counts"])
                 for post, c in result["classification"].items()}
        try:
            table4 = template_matcher_row(proj, confs)
        except BadInputError as exc:  # no templates yet: the table is left out, not the report
            echo_err(f"warning: classifier table skipped: {exc}")
    if classifiers:
        from lrihar.evaluate.classifier_table import classifier_comparison

        table4 = [*([table4] if table4 else []), *classifier_comparison(proj)["rows"]]
    html = output or proj.root / "report.html"
    written = write_report(proj, result, html, sweep_dir, table4,
                           html.with_suffix(".md") if markdown else None)
    for path in written:
        typer.echo(f"wrote {path}")


def classifier_table_command(proj, data: Path | None, json_out: Path | None) -> None:
    """``evaluate --classifiers``: Table 4 on stdout (and as JSON)."""
    from rich.console import Console
    from rich.table import Table

    from lrihar.evaluate.classifier_table import classifier_comparison

    t = classifier_comparison(proj, data)
    table = Table("classifier", "post", "accuracy", "training s", "call p50 ms", "call p90 ms",
                  title=f"Table 4: {t['crops']} held-out crops ({t['split']} of {t['data']})")
    for row in t["rows"]:
        for post, acc in row["accuracy"].items():
            table.add_row(row["classifier"], post, f"{acc:.1%}", str(row["training_s"]),
                          str(row["call_ms_p50"]), str(row["call_ms_p90"]))
    Console().print(table)
    for note in t["notes"]:
        echo_err(f"note: {note}")
    if json_out:
        json_out.write_text(json.dumps(t, indent=2) + "\n", encoding="utf-8")
