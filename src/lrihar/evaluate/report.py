"""``lrihar report``: one self-contained HTML page (and Markdown) with every figure that exists.

It opens with the headline numbers and pictures (frames with their boxes and labels drawn; with
ground truth, the worst misses and false boxes beside the truth). Then the sections whose inputs
exist: detection metrics (with ground truth), threshold sweeps (a ``lrihar sweep`` output
folder), confusion matrices (ground truth or reviewed labels), annotation cost, classifier
comparison; folded away at the end, the resolved configs, store counts, versions and hardware.
Figures are inlined (base64 PNG, pictures as small JPEG) so the HTML file travels alone.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.evaluate.confusion import Confusion, plot_confusion
from lrihar.evaluate.project_eval import project_classes
from lrihar.naming import safe_file_name

SCORE_KEYS = ("iou", "recall", "accuracy", "predictions", "ground_truth")


def _table(header: list[str], rows: list[list[Any]]) -> dict:
    return {"kind": "table", "header": header, "rows": rows}


def _text(text: str) -> dict:
    return {"kind": "p", "text": text}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _images(paths: list[Path]) -> dict:
    return {"kind": "images",
            "images": [{"alt": p.stem, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]}


def _section(sid: str, title: str, *blocks: dict) -> dict:
    return {"id": sid, "title": title, "blocks": list(blocks)}


def _folded(summary: str, *blocks: dict) -> dict:
    """Blocks folded away behind ``summary`` (HTML <details>); Markdown shows them as usual."""
    return {"kind": "details", "summary": summary, "blocks": list(blocks)}


def headline_section(project, evaluation: dict) -> dict:
    """The numbers a reader wants first: frames, boxes, recall / accuracy where ground truth
    exists, labels per class, review time, and whether any saving was earned."""
    counts, cost = evaluation["counts"], evaluation["cost"]
    cards = [{"label": "frames", "value": counts["frames"],
              "note": f"{counts.get('frames_action', 0)} with hands found"},
             {"label": "boxes", "value": counts["detections"] - counts["detections_rejected"],
              "note": f"{counts['detections_rejected']} more marked wrong by a person"}]
    det = evaluation.get("detection") or {}
    if det.get("matched_images"):
        t, v = next(iter(det["paper"].items()))
        cards.append({"label": f"recall (eq. 3, T_IoU {t})", "value": _pct(v["recall"]),
                      "note": f"accuracy (eq. 4) {_pct(v['accuracy'])}; {det['matched_images']} frames "
                              "with ground truth"})
    line = (evaluation.get("classification") or {}).get("(line)")
    if line:
        cards.append({"label": "label accuracy", "value": _pct(line["accuracy"]),
                      "note": f"{line['crops']} crops checked; "
                              f"{_pct(line['accuracy_without_ng'])} without NG"})
    measured = cost["measured_review"]
    cards.append({"label": "review time", "value": f"{measured['hours']:.2f} h",
                  "note": f"{measured['sessions']} sessions, {measured['actions']} actions"})
    saved = cost["line"]["saved"]
    cards.append({"label": "annotation time saved", "value": "not claimed" if saved is None else _pct(saved),
                  "note": _cost_basis(cost)})
    rows = project.store.db.execute(
        "SELECT l.label, COUNT(*), SUM(l.provenance = 'corrected') FROM labels l JOIN detections d"
        " ON d.id = l.detection_id WHERE d.rejected = 0 GROUP BY l.label ORDER BY l.label").fetchall()
    blocks: list[dict] = [{"kind": "cards", "cards": cards}]
    if rows:
        blocks.append(_table(["class", "labels", "set by a person"], [list(r) for r in rows]))
    else:
        blocks.append(_text("No labels yet (run lrihar classify)."))
    return _section("headline", "At a glance", *blocks)


def _cost_basis(cost: dict) -> str:
    if cost["checked"] == "nothing":
        return "nothing was checked against ground truth"
    if cost["checked"] == "part":
        return "checked against ground truth only in part"
    return "checked against ground truth: work done plus work still owed"


def pictures_sections(project, evaluation: dict, classes: list[str]) -> list[dict]:
    """A sample of frames with their boxes and labels, and with ground truth the frames with the
    most misses and false boxes, truth and lrihar side by side."""
    from lrihar.evaluate.pictures import GT_HIT, GT_MISSED, PRED_FALSE, PRED_HIT, sample_frames, worst_pairs

    out = []
    sample, unreadable = sample_frames(project.store, classes)
    blocks = [_text("An even spread over the project's frames with boxes: each box with its current "
                    "label and the matcher's score.")]
    blocks.append({"kind": "images", "images": sample} if sample else _text("No frame with boxes to show."))
    if unreadable:
        blocks.append(_text(f"{len(unreadable)} frames could not be read again: {unreadable[0]}"))
    out.append(_section("frames", "Frames with their boxes", *blocks))
    det = evaluation.get("detection")
    if det is not None and det.get("matched_images"):
        worst = det.get("worst_frames") or []
        pairs, unreadable = worst_pairs(worst)
        legend = {"kind": "legend", "entries": [[GT_HIT, "ground truth found"], [GT_MISSED, "missed"],
                                               [PRED_HIT, "lrihar box on a hand"], [PRED_FALSE, "false box"]]}
        blocks = [_text("The frames with the most missed hands and false boxes (matched one to one at "
                        "IoU 0.5): ground truth on the left, lrihar's boxes on the right."), legend]
        if pairs:
            blocks.append({"kind": "pairs", "pairs": pairs})
        else:
            blocks.append(_text("No frame checked against ground truth has a missed hand or a false box."))
        if unreadable:
            blocks.append(_text(f"{len(unreadable)} frames could not be read again: {unreadable[0]}"))
        out.append(_section("worst", "Worst misses and false boxes", *blocks))
    return out


def _rate(scores: dict, which: str) -> str:
    """A rate with the counts behind it: ``66.67 % (2 / 3)``."""
    hit, total = (scores["gt_hit"], scores["gt_total"]) if which == "recall" else (scores["pred_hit"],
                                                                                   scores["pred_total"])
    return f"{_pct(scores[which])} ({hit} / {total})"


def detection_parts(det: dict) -> list[dict]:
    """Eq. 3 / eq. 4 per ground-truth class and per source, each rate with its counts."""
    ious = list(det["paper"])
    rates = [f"{what} @ T_IoU {t}" for t in ious for what in ("recall", "accuracy")]

    def cells(paper: dict) -> list[str]:
        return [_rate(paper[t], what) for t in ious for what in ("recall", "accuracy")]

    blocks: list[dict] = []
    by_class = det.get("by_class") or {}
    if by_class:
        blocks.append(_text("Per ground-truth class: recall is eq. 3 over the class's boxes (each box found "
                            "or not by any lrihar box, as in the overall figure); a box has no class, so "
                            "accuracy is eq. 4 over the boxes on the images showing the class (an image "
                            "showing two classes counts for both)."))
        blocks.append(_table(["class", "GT boxes", "images", *rates],
                             [[c, r["boxes"], r["images"], *cells(r["paper"])] for c, r in by_class.items()]))
    empty = det.get("no_ground_truth_box") or {}
    if empty.get("images"):
        blocks.append(_text(f"{empty['images']} images show no hand in the ground truth; the "
                            f"{empty['predictions']} boxes on them are false (counted in the overall "
                            "accuracy only)."))
    by_source = det.get("by_source") or {}
    if by_source:
        blocks.append(_text("Per source (a folder's images, or a video):"))
        blocks.append(_table(["source", "post", "images", "GT boxes", *rates],
                             [[uri, r["post"], r["images"], r["ground_truth_boxes"], *cells(r["paper"])]
                              for uri, r in by_source.items()]))
    return blocks


def detection_section(det: dict) -> dict:
    if not det.get("matched_images"):
        return _section("detection", "Detection", _text(det["note"]))
    rows = [[f"T_IoU {t}", _pct(v["recall"]), _pct(v["accuracy"]), v["gt_hit"], v["gt_total"],
             v["pred_hit"], v["pred_total"]] for t, v in det["paper"].items()]
    std = det["standard"]
    return _section(
        "detection", "Detection (eq. 3 recall, eq. 4 accuracy)",
        _table(["", "recall", "accuracy", "GT hit", "GT", "pred hit", "pred"], rows),
        _table(["precision@0.5", "recall@0.5", "F1@0.5", "AP50", "mAP50-95"],
               [[_pct(std[k]) for k in ("precision@0.5", "recall@0.5", "f1@0.5", "ap50", "map50_95")]]),
        _text(f"{det['matched_images']} of {det['ground_truth_images']} ground-truth images are "
              "among the project's frames."),
        *detection_parts(det),
    )


def sweep_section(sweep_dir: Path) -> dict:
    doc = json.loads((sweep_dir / "sweep.json").read_text())
    rows = []
    for model, by_iou in doc["best"].items():
        for t, best in by_iou.items():
            if best is None:
                rows.append([model, t, "no pair reaches the accuracy floor", "", ""])
                continue
            pair = ", ".join(f"{k}={v}" for k, v in best.items() if k not in SCORE_KEYS)
            rows.append([model, t, pair, _pct(best["recall"]), _pct(best["accuracy"])])
    return _section(
        "sweep", "Threshold sweeps (Fig. 7)",
        _text(f"Best recall with accuracy ≥ {doc['accuracy_floor']:.0%}; {doc['images']} images, "
              f"{doc['ground_truth_boxes']} ground-truth boxes."),
        _table(["model", "T_IoU", "thresholds", "recall", "accuracy"], rows),
        _images(sorted(sweep_dir.glob("surface-*.png"))),
    )


def classification_section(cls: dict, figures: Path) -> dict:
    paths, rows = [], []
    for post, c in cls.items():
        conf = Confusion(c["classes"], np.array(c["counts"]))
        path = figures / f"confusion-{safe_file_name(post)}.png"
        paths.append(plot_confusion(conf, path, f"confusion: {post}"))
        rows.append([post, c["crops"], c["right"], c["wrong"], c["sent_to_ng"], _pct(c["accuracy"]),
                     _pct(c["accuracy_without_ng"])])
    return _section("classification", "Classification (Fig. 8)",
                    _table(["post", "crops", "right", "wrong", "to NG", "accuracy", "accuracy without NG"],
                           rows),
                    _images(paths))


def cost_section(cost: dict) -> dict:
    def owed(r: dict, key: str):
        return "?" if r["hours_owed"] is None else r[key]

    rows = [[r["post"], f"{r['frames_checked']} of {r['frames']}", r["detector_images_manual"],
             r["classifier_crops_manual"], r["hours_manual"], r["detector_images_done"],
             r["classifier_crops_done"], r["hours_done"], owed(r, "detector_images_owed"),
             owed(r, "boxes_to_draw"), owed(r, "boxes_to_delete"), owed(r, "relabels_owed"),
             owed(r, "hours_owed"), "–" if r["hours_lrihar"] is None else r["hours_lrihar"],
             _pct(r["saved"]) if r["saved"] is not None else f"not claimed: {r['not_earned'] or 'no work'}"]
            for r in cost["posts"]]
    if len(cost["lines"]) > 1:  # a project of several lines: each line's posts summed
        rows += [[f"line {r['line']} ({len(r['posts'])} posts)", f"{r['frames_checked']} of {r['frames']}",
                  "", "", r["hours_manual"], "", "", r["hours_done"], "", "", "", "", "",
                  "–" if r["hours_lrihar"] is None else r["hours_lrihar"],
                  "not claimed" if r["saved"] is None else _pct(r["saved"])] for r in cost["lines"]]
    line = cost["line"]
    rows.append([f"line of {line['posts']} posts", "", "", "", line["hours_manual"], "", "", "", "", "", "",
                 "", "", "–" if line["hours_lrihar"] is None else line["hours_lrihar"],
                 "not claimed" if line["saved"] is None else _pct(line["saved"])])
    rates, measured, done = cost["rates"], cost["measured_review"], cost["done"]
    if cost["checked"] == "nothing":
        verdict = ("Nothing was checked against ground truth, so the work still owed is unknown and no "
                   f"saving is claimed. Done so far: {done['detector_images']} images with box fixes, "
                   f"{done['classifier_crops']} labels and templates set by a person ({done['hours']} h at "
                   "these rates). Give --gt to count the boxes and labels still to fix.")
    elif cost["checked"] == "part":
        reasons = "; ".join(f"{r['post']}: {r['not_earned']}" for r in cost["posts"] if r["not_earned"])
        verdict = ("Checked against ground truth only in part, so no saving is claimed for the line: "
                   f"{reasons}.")
    else:
        verdict = ("Every frame was checked against ground truth: lrihar's hours are the work done so far "
                   "plus the work still owed.")
    return _section(
        "cost", "Annotation cost (Table 3)",
        _text(verdict),
        _table(["post", "frames checked", "by hand: images", "crops", "hours", "done: images", "crops",
                "hours", "owed: images to fix", "boxes to draw", "to delete", "labels to fix", "hours",
                "lrihar hours", "saved"], rows),
        _text(f"Rates (paper defaults unless changed): {rates['seconds_per_detector_image']:.1f} s per "
              "detector image, boxed by hand or opened to fix its boxes (any miss or false box at IoU "
              f"0.5); {rates['seconds_per_crop']:.1f} s per classifier crop, labelled by hand or "
              f"relabelled. Measured review time: {measured['hours']} h over {measured['sessions']} "
              f"sessions ({measured['actions']} actions)."),
    )


def classifier_section(table4: dict | list[dict]) -> dict:
    """Table 4: one row per classifier and post (a dict or a list of them, see classifier_table)."""
    rows = []
    for t4 in [table4] if isinstance(table4, dict) else table4:
        timing = [t4["call_ms_p50"], t4["call_ms_p90"], t4["training_s"]]
        rows += [[t4["classifier"], post, _pct(acc), _pct(t4["accuracy_without_ng"][post]), *timing]
                 for post, acc in t4["accuracy"].items()] or [[t4["classifier"], "–", "–", "–", *timing]]
    return _section("classifiers", "Classifiers (Table 4)",
                    _table(["classifier", "post", "accuracy", "without NG", "call p50 ms", "call p90 ms",
                            "set-up / training s"], rows))


def encoder_section(project) -> dict | None:
    """What ``classify.encoder: auto`` measured and chose in the latest classify run, if it ran."""
    runs = [r for r in project.store.runs() if r["command"] == "classify"]
    selection = json.loads(runs[-1]["config"]).get("encoder_selection") if runs else None
    if not selection:
        return None
    rows = [[c["label"], _pct(c["templates_accuracy"]), _pct(c["reviewed_accuracy"]), _pct(c["score"]),
             c["left_out"] or ("chosen" if c["label"] == selection["chosen"] else "")]
            for c in selection["candidates"]]
    return _section("encoder", "Encoder (classify.encoder: auto)",
                    _text(f"Chosen: {selection['chosen']}, the best leave-one-out accuracy on "
                          f"{selection['templates']} templates and {selection['reviewed']} reviewed labels "
                          "(ties go to appearance)."),
                    _table(["candidate", "templates, leave-one-out", "reviewed labels", "score", "note"],
                           rows))


def config_section(project) -> dict:
    latest = {run["command"]: run for run in project.store.runs()}
    text = json.dumps({cmd: json.loads(r["config"]) for cmd, r in latest.items()}, indent=2)
    counts = project.store.counts()
    return _section("config", "Configuration and store",
                    _folded(f"resolved configuration of the latest runs ({', '.join(latest) or 'none'})",
                            {"kind": "pre", "text": text}),
                    _folded("store counts", _table(["what", "count"], [[k, v] for k, v in counts.items()])))


def build_sections(project, evaluation: dict, figures: Path, sweep_dir: Path | None,
                   table4: dict | list[dict] | None) -> list[dict]:
    """The report's sections, in order; a section whose inputs are missing is left out."""
    sections = [headline_section(project, evaluation)]
    sections += pictures_sections(project, evaluation, project_classes(project))
    if evaluation.get("detection"):
        sections.append(detection_section(evaluation["detection"]))
    if sweep_dir is not None and (sweep_dir / "sweep.json").exists():
        sections.append(sweep_section(sweep_dir))
    if evaluation.get("classification"):
        sections.append(classification_section(evaluation["classification"], figures))
    if (encoder := encoder_section(project)) is not None:
        sections.append(encoder)
    sections.append(cost_section(evaluation["cost"]))
    if table4:
        sections.append(classifier_section(table4))
    sections.append(config_section(project))
    return sections


def write_report(project, evaluation: dict, out_html: Path, sweep_dir: Path | None = None,
                 table4: dict | list[dict] | None = None, out_md: Path | None = None) -> list[Path]:
    """Render the HTML (self-contained, figures inlined) and optionally Markdown."""
    import jinja2

    from lrihar.versions import machine_info, package_versions

    figures = out_html.parent / f"{out_html.stem}-figures"
    sections = build_sections(project, evaluation, figures, sweep_dir, table4)
    hardware = machine_info()
    versions = package_versions()
    sections.append(_section("versions", "Versions and hardware", _folded(
        "package versions and hardware",
        _table(["package", "version"], [[k, v] for k, v in versions.items()]),
        _table(["hardware", ""], [[k, v] for k, v in hardware.items()]))))
    template = resources.files("lrihar").joinpath("resources/report.html.j2").read_text(encoding="utf-8")
    html = jinja2.Environment(autoescape=True).from_string(template).render(
        title=_title(project, evaluation), sections=sections, versions=versions, hardware=hardware,
        generated=datetime.now(UTC).isoformat(timespec="seconds"))
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    written = [out_html]
    if out_md is not None:
        out_md.write_text(_markdown(_title(project, evaluation), sections, figures), encoding="utf-8")
        written.append(out_md)
    return written


def _title(project, evaluation: dict) -> str:
    """The line(s) reported on: those of the posts selected (``--line`` / ``--post``), else all."""
    from lrihar.lines import project_layout

    layout = project_layout(project.config)
    posts = evaluation.get("posts")
    lines = dict.fromkeys(layout.line_of(p) for p in posts) if posts else layout.lines
    title = ", ".join(lines)
    return f"{title}: {', '.join(posts)}" if posts and len(posts) < len(layout.posts) else title


def _markdown(title: str, sections: list[dict], figures: Path) -> str:
    lines = [f"# lrihar report: {title}", ""]
    for s in sections:
        lines += [f"## {s['title']}", ""]
        lines += _markdown_blocks(s["blocks"], figures)
    return "\n".join(lines)


def _markdown_image(img: dict, figures: Path) -> str:
    """Write an inlined image beside the Markdown file once; its Markdown reference."""
    figures.mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if img.get("mime") == "image/jpeg" else ".png"
    path = figures / f"{safe_file_name(img.get('name', img['alt']))}{suffix}"
    if not path.exists():
        path.write_bytes(base64.b64decode(img["data"]))
    return f"![{img['alt']}]({figures.name}/{path.name})"


def _markdown_blocks(blocks: list[dict], figures: Path) -> list[str]:
    lines: list[str] = []
    for b in blocks:
        if b["kind"] == "table":
            lines.append("| " + " | ".join(map(str, b["header"])) + " |")
            lines.append("|" + "---|" * len(b["header"]))
            lines += ["| " + " | ".join(map(str, r)) + " |" for r in b["rows"]]
        elif b["kind"] == "images":
            lines += [_markdown_image(img, figures) for img in b["images"]]
        elif b["kind"] == "pairs":
            for pair in b["pairs"]:
                lines += [f"{pair['caption']}:", "", _markdown_image(pair["left"], figures) + " "
                          + _markdown_image(pair["right"], figures), ""]
        elif b["kind"] == "cards":
            lines += [f"- **{c['label']}**: {c['value']} ({c['note']})" for c in b["cards"]]
        elif b["kind"] == "legend":
            lines.append("Colours: " + ", ".join(f"{colour} {what}" for colour, what in b["entries"]))
        elif b["kind"] == "details":
            lines += [f"*{b['summary']}*", "", *_markdown_blocks(b["blocks"], figures)]
            continue
        elif b["kind"] == "pre":
            lines += ["```json", b["text"], "```"]
        else:
            lines.append(b["text"])
        lines.append("")
    return lines
