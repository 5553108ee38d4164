"""``lrihar report``: one self-contained HTML page (and Markdown) with every figure that exists.

Sections appear when their inputs exist: detection metrics (with ground truth), threshold
sweeps (a ``lrihar sweep`` output folder), confusion matrices (ground truth or reviewed labels),
annotation cost, classifier comparison; always the resolved configs, versions and hardware.
Figures are inlined as base64 PNG so the HTML file travels alone.
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
    rows = [[r["post"], r["detector_images_manual"], r["detector_images_lrihar"],
             r["classifier_crops_manual"], r["classifier_crops_lrihar"], r["hours_manual"],
             r["hours_lrihar"], _pct(r["saved"])] for r in cost["posts"]]
    line = cost["line"]
    rows.append([f"line of {line['posts']} posts", "", "", "", "", line["hours_manual"],
                 line["hours_lrihar"], _pct(line["saved"])])
    rates, measured = cost["rates"], cost["measured_review"]
    return _section(
        "cost", "Annotation cost (Table 3)",
        _table(["post", "detector images, manual", "lrihar", "classifier crops, manual", "lrihar",
                "hours, manual", "hours, lrihar", "saved"], rows),
        _text(f"Rates: {rates['seconds_per_detector_image']:.1f} s per detector image, "
              f"{rates['seconds_per_crop']:.1f} s per classifier crop (paper defaults). Measured "
              f"review time: {measured['hours']} h over {measured['sessions']} sessions."),
    )


def classifier_section(t4: dict) -> dict:
    timing = [t4["call_ms_p50"], t4["call_ms_p90"], t4["training_s"]]
    rows = [[t4["classifier"], post, _pct(acc), _pct(t4["accuracy_without_ng"][post]), *timing]
            for post, acc in t4["accuracy"].items()] or [[t4["classifier"], "–", "–", "–", *timing]]
    return _section("classifiers", "Classifiers (Table 4)",
                    _table(["classifier", "post", "accuracy", "without NG", "call p50 ms", "call p90 ms",
                            "set-up s"], rows))


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
    return _section("config", "Resolved configuration of the latest runs", {"kind": "pre", "text": text})


def build_sections(project, evaluation: dict, figures: Path, sweep_dir: Path | None,
                   table4: dict | None) -> list[dict]:
    """The report's sections, in order; a section whose inputs are missing is left out."""
    sections = [_section("summary", "Project", _table(["what", "count"],
                                                      [[k, v] for k, v in evaluation["counts"].items()]))]
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
                 table4: dict | None = None, out_md: Path | None = None) -> list[Path]:
    """Render the HTML (self-contained, figures inlined) and optionally Markdown."""
    import jinja2

    from lrihar.project import machine_info, package_versions

    figures = out_html.parent / f"{out_html.stem}-figures"
    sections = build_sections(project, evaluation, figures, sweep_dir, table4)
    hardware = machine_info()
    versions = package_versions()
    sections.append(_section("versions", "Versions and hardware",
                             _table(["package", "version"], [[k, v] for k, v in versions.items()]),
                             _table(["hardware", ""], [[k, v] for k, v in hardware.items()])))
    template = resources.files("lrihar").joinpath("resources/report.html.j2").read_text(encoding="utf-8")
    html = jinja2.Environment(autoescape=True).from_string(template).render(
        title=project.config.line, sections=sections, versions=versions, hardware=hardware,
        generated=datetime.now(UTC).isoformat(timespec="seconds"))
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    written = [out_html]
    if out_md is not None:
        out_md.write_text(_markdown(project, sections, figures), encoding="utf-8")
        written.append(out_md)
    return written


def _markdown(project, sections: list[dict], figures: Path) -> str:
    lines = [f"# lrihar report: {project.config.line}", ""]
    for s in sections:
        lines += [f"## {s['title']}", ""]
        for b in s["blocks"]:
            if b["kind"] == "table":
                lines.append("| " + " | ".join(map(str, b["header"])) + " |")
                lines.append("|" + "---|" * len(b["header"]))
                lines += ["| " + " | ".join(map(str, r)) + " |" for r in b["rows"]]
            elif b["kind"] == "images":
                figures.mkdir(parents=True, exist_ok=True)
                for img in b["images"]:
                    path = figures / f"{img['alt']}.png"
                    if not path.exists():
                        path.write_bytes(base64.b64decode(img["data"]))
                    lines.append(f"![{img['alt']}]({figures.name}/{path.name})")
            elif b["kind"] == "pre":
                lines += ["```json", b["text"], "```"]
            else:
                lines.append(b["text"])
            lines.append("")
    return "\n".join(lines)
