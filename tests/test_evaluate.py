"""Evaluation: standard metrics vs pycocotools, sweeps equal reruns, confusion, cost, report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import CLASSES, load_gt, synthetic_frames
from lrihar.classes import NG
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.evaluate.confusion import Confusion, plot_confusion
from lrihar.evaluate.groundtruth import load_ground_truth
from lrihar.evaluate.metrics import standard_metrics
from lrihar.evaluate.sweep import ImagePredictions, best_pair, keep, plot_surfaces, sweep
from lrihar.models.detectors import create_detector


def test_ap50_agrees_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gts = [np.array([[10, 10, 50, 50], [60, 60, 90, 90]], float), np.array([[5, 5, 40, 45]], float)]
    preds = [np.array([[12, 11, 50, 52], [100, 100, 120, 120], [61, 58, 88, 92]], float),
             np.array([[6, 4, 30, 45]], float)]
    scores = [np.array([0.9, 0.8, 0.4]), np.array([0.7])]
    ours = standard_metrics(preds, scores, gts)

    images = [{"id": i + 1, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in range(2)]
    anns, dets = [], []
    for i, (g, p, s) in enumerate(zip(gts, preds, scores, strict=True)):
        for b in g:
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], w, h], "area": float(w * h)})
        for b, sc in zip(p, s, strict=True):
            dets.append({"image_id": i + 1, "category_id": 1, "score": float(sc),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": 1, "name": "hand"}]}))
    coco = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ours["ap50"] == pytest.approx(ev.stats[1], abs=0.02)
    assert ours["map50_95"] == pytest.approx(ev.stats[0], abs=0.02)
    # IoUs 0.88, 0.80, 0.67 (hand-computed) all match; the box at (100, 100) is a false positive
    assert ours["recall@0.5"] == pytest.approx(1.0) and ours["precision@0.5"] == pytest.approx(3 / 4)


def test_confusion_counts_and_the_papers_two_accuracies():
    truth = ["a", "a", "a", "b", "b", NG, "a"]
    pred = ["a", "a", "b", "b", NG, NG, NG]
    c = Confusion.from_labels(truth, pred, ["a", "b"])
    assert c.classes == ["a", "b", NG]
    assert c.counts.tolist() == [[2, 1, 1], [0, 1, 1], [0, 0, 1]]
    s = c.summary()
    # right: a->a 2, b->b 1, NG->NG 1 = 4 of 7; outside NG: 3 right of 4 labelled a/b
    assert (s["right"], s["wrong"], s["sent_to_ng"]) == (4, 3, 3)
    assert s["accuracy"] == pytest.approx(4 / 7)
    assert s["accuracy_without_ng"] == pytest.approx(3 / 4)
    assert c.row_normalised()[0].tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_confusion_plot(tmp_path):
    c = Confusion.from_labels(["a", "b"], ["a", NG])
    path = plot_confusion(c, tmp_path / "c.png", "test")
    assert path.stat().st_size > 5_000


@pytest.mark.parametrize(("a", "b"), [(0.05, 0.0), (0.2, 0.1), (0.35, 0.3), (0.6, 0.5)])
def test_offline_rethreshold_equals_running_grounding_dino_there(tiny_grounding_dino, a, b):
    frames = synthetic_frames(3, 160, 120)
    low = create_detector("grounding-dino", model=str(tiny_grounding_dino), box_threshold=0.0,
                          text_threshold=0.0, batch_size=1)
    at = create_detector("grounding-dino", model=str(tiny_grounding_dino), box_threshold=a,
                         text_threshold=b, batch_size=1)
    for frame in frames:
        pred = ImagePredictions.from_detections(low(frame))
        offline = pred.xyxy[keep(pred, "box-text", a, b)]
        direct = at(frame).xyxy
        assert len(offline) == len(direct)
        assert np.allclose(np.sort(offline, axis=0), np.sort(direct, axis=0), atol=1e-3)


def test_offline_score_threshold_equals_running_owlv2_there(tiny_owlv2):
    frame = synthetic_frames(1)[0]
    pred = ImagePredictions.from_detections(create_detector("owlv2", model=str(tiny_owlv2),
                                                            box_threshold=0.0)(frame))
    for a in (0.1, 0.4, 0.8):
        direct = create_detector("owlv2", model=str(tiny_owlv2), box_threshold=a)(frame)
        assert len(keep(pred, "score-nms", a, 1.0)) == len(direct)


def test_nms_axis_suppresses_overlaps():
    pred = ImagePredictions(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float),
                            np.array([0.9, 0.8, 0.7]))
    assert keep(pred, "score-nms", 0.0, 1.0).tolist() == [0, 1, 2]
    assert keep(pred, "score-nms", 0.0, 0.5).tolist() == [0, 2]  # IoU 0.82 > 0.5
    assert keep(pred, "score-nms", 0.75, 0.5).tolist() == [0]
    assert keep(pred, "score-nms", 0.75, 1.0).tolist() == [0, 1]


def test_sweep_rows_and_best_pair_at_the_floor():
    preds = [ImagePredictions(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float),
                              np.array([0.9, 0.3]), np.array([0.8, 0.2]))]
    gts = [np.array([[0, 0, 10, 10]], float)]
    rows = sweep(preds, gts, "box-text", [0.1, 0.5], [0.1, 0.5], ious=(0.3,))
    assert len(rows) == 4
    by = {(r["box_threshold"], r["text_threshold"]): r for r in rows}
    assert by[(0.1, 0.1)]["accuracy"] == 0.5 and by[(0.5, 0.1)]["accuracy"] == 1.0
    assert best_pair(rows, 0.3, 1.0)["box_threshold"] in (0.1, 0.5)
    assert best_pair(rows, 0.3, 1.0)["accuracy"] == 1.0
    assert best_pair(rows, 0.4, 0.5) is None  # no rows at that T_IoU


def test_surface_plots_png_and_svg(tmp_path):
    rows = {"m1": [{"box_threshold": a, "text_threshold": b, "iou": 0.3, "recall": a * b,
                    "accuracy": 1 - a, "predictions": 1, "ground_truth": 1}
                   for a in (0.1, 0.5, 0.9) for b in (0.1, 0.5, 0.9)]}
    png, svg = plot_surfaces(rows, "recall", 0.3, tmp_path / "s")
    assert png.stat().st_size > 10_000
    text = svg.read_text()
    assert "threshold 1" in text or "threshold" in text


def _gloves_coco_with_classes(hands_dev, path, limit=None):
    """COCO ground truth of the gloves set with gloved/bare categories (from gt.json)."""
    images, anns = [], []
    for im in load_gt(hands_dev / "gloves_roboflow")[:limit]:
        images.append({"id": len(images) + 1, "file_name": im["file"], "width": im["width"],
                       "height": im["height"]})
        for (x1, y1, x2, y2), cls in zip(im["hands"], im["hand_classes"], strict=True):
            anns.append({"id": len(anns) + 1, "image_id": len(images), "category_id": CLASSES.index(cls) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}))
    return path


def test_ground_truth_from_coco_and_yolo(tmp_path, hands_dev):
    coco = load_ground_truth(hands_dev / "mmpose_hands" / "coco.json")
    assert len(coco.images) == 22 and sum(len(b) for b in coco.boxes.values()) == 32
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text("names: [hand]\nnc: 1\n")
    yolo = load_ground_truth(root)
    assert yolo.boxes[yolo.images[0]].tolist() == [pytest.approx([40.0, 15.0, 60.0, 35.0], abs=1e-4)]
    with pytest.raises(BadInputError, match="ground truth not found"):
        load_ground_truth(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{\"images\": 3}")
    with pytest.raises(BadInputError, match="cannot read ground truth"):
        load_ground_truth(tmp_path / "bad.json")


def test_evaluate_cli_reports_every_figure(gloves_project, hands_dev, tmp_path, capsys):
    from lrihar.classify.pipeline import classify

    classify(gloves_project)
    gt = _gloves_coco_with_classes(hands_dev, tmp_path / "gt.json")
    out = tmp_path / "eval.json"
    code = main(["evaluate", "-p", str(gloves_project.root), "--gt", str(gt), "--images",
                 str(hands_dev / "gloves_roboflow"), "--json", str(out), "--seconds-per-image", "10",
                 "--hours-per-class-set", "2", "--crops-per-class", "50"])
    assert code == 0
    doc = json.loads(out.read_text())
    det = doc["detection"]
    assert det["matched_images"] == 40
    assert 0.3 < det["paper"]["0.3"]["recall"] <= 1 and det["paper"]["0.3"]["accuracy"] > 0.8
    assert set(det["standard"]) == {"ap50", "map50_95", "precision@0.5", "recall@0.5", "f1@0.5"}
    cls = doc["classification"]["(line)"]
    assert cls["classes"] == [*CLASSES, "NG"] and cls["crops"] > 10
    assert 0.5 < cls["accuracy_without_ng"] <= 1
    cost = doc["cost"]
    assert cost["rates"] == {"seconds_per_detector_image": 10.0, "seconds_per_crop": 72.0}  # 2 h / 100
    post = cost["posts"][0]
    assert post["frames_checked"] == post["frames"] == 40 and cost["checked"] == "all"
    assert post["classifier_crops_done"] == 20  # only the templates were touched by a person
    gt_boxes = det["ground_truth_boxes"]
    # every ground-truth hand the detector missed at IoU 0.5 is a box a person still has to draw
    assert post["boxes_to_draw"] == gt_boxes - round(det["standard"]["recall@0.5"] * gt_boxes)
    assert post["detector_images_owed"] > 0 and post["hours_owed"] > 0
    assert 0 < cost["line"]["saved"] < 1
    out_text = capsys.readouterr().out
    assert "recall (eq. 3)" in out_text and f"{cost['line']['saved']:.1%} saved" in out_text


def _tiny_project(root):
    """Four 200×200 image frames of post-1, one ground truth with three hands (hand-made):

    f0: box A on a hand, labelled a, truly b   -> matched, one label to fix
    f1: box B where no hand is; a hand at (0, 0) -> one box to delete, one to draw
    f2: no box; a hand                         -> one box to draw
    f3: no box, no hand                        -> nothing to do
    """
    import supervision as sv

    from lrihar.project import Project
    from lrihar.store import FrameRecord

    root.mkdir(parents=True)
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "a"}, {"name": "b"}]}))
    project = Project.open(root)
    store = project.store
    run = store.start_run("annotate", {}, {})
    src = store.source_id("/imgs", "images", "post-1")

    def boxes(*xyxy):
        n = len(xyxy)
        return sv.Detections(xyxy=np.array(xyxy, float).reshape(-1, 4), confidence=np.full(n, 0.9),
                             class_id=np.zeros(n, int), data={"class_name": np.array(["hand"] * n)})

    frames = [(FrameRecord(0, 0, 200, 200, "action", "/imgs/f0.jpg"), boxes([10, 10, 50, 50])),
              (FrameRecord(1, 1, 200, 200, "action", "/imgs/f1.jpg"), boxes([100, 100, 140, 140])),
              (FrameRecord(2, 2, 200, 200, "empty", "/imgs/f2.jpg"), boxes()),
              (FrameRecord(3, 3, 200, 200, "empty", "/imgs/f3.jpg"), boxes())]
    store.write_frames(run, src, frames, "annotate")
    ids = [r[0] for r in store.db.execute("SELECT id FROM detections ORDER BY id")]
    store.write_auto_labels(run, [(i, "a", 0.9, "b", 0.1, "k", 0.5) for i in ids])
    images = [{"id": i + 1, "file_name": f"f{i}.jpg", "width": 200, "height": 200} for i in range(4)]
    images.append({"id": 9, "file_name": "not-in-the-project.jpg", "width": 200, "height": 200})
    anns = [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 40]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 40]},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 20, 20]}]
    gt = root.parent / "gt" / "coco.json"  # its images are nowhere: sizes come from the JSON
    gt.parent.mkdir()
    gt.write_text(json.dumps({"images": images, "annotations": anns,
                              "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return project, ids, gt


RATES = ["--seconds-per-image", "36", "--hours-per-class-set", "1", "--crops-per-class", "200"]


def test_cost_with_ground_truth_and_no_review_counts_the_work_owed(tmp_path, capsys):
    from lrihar.review.edits import mark_wrong, relabel, start_session

    project, (box_a, box_b), gt = _tiny_project(tmp_path / "p")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "-p", str(project.root), "--gt", str(gt), "--json", str(out), *RATES]) == 0
    doc = json.loads(out.read_text())
    assert doc["detection"]["paper"]["0.3"]["recall"] == pytest.approx(1 / 3)
    row = doc["cost"]["posts"][0]
    assert (row["frames_checked"], row["detector_images_owed"], row["boxes_to_draw"], row["boxes_to_delete"],
            row["relabels_owed"]) == (4, 2, 2, 1, 1)
    # crop rate 3600 / (200 × 2) = 9 s. By hand: the 3 frames showing a hand, 3 crops:
    # 3 × 36 + 3 × 9 = 135 s. With lrihar nothing done yet; owed: 2 images × 36 + 1 relabel × 9 = 81 s.
    assert (row["detector_images_manual"], row["classifier_crops_manual"]) == (3, 3)
    assert (row["hours_manual"], row["hours_done"], row["hours_owed"]) == (round(135 / 3600, 2), 0.0,
                                                                          round(81 / 3600, 2))
    assert row["saved"] == pytest.approx(1 - 81 / 135, abs=1e-4)
    printed = capsys.readouterr().out
    assert "checked against ground truth" in printed
    assert f"{doc['cost']['line']['saved']:.1%} saved" in printed

    # A person deletes the false box and fixes the label: those move from owed to done.
    session = start_session(project.store, "ana")
    mark_wrong(project.store, [box_b], "ana", session)
    relabel(project.store, [box_a], "b", "ana", session)
    assert main(["evaluate", "-p", str(project.root), "--gt", str(gt), "--json", str(out), *RATES]) == 0
    row = json.loads(out.read_text())["cost"]["posts"][0]
    assert (row["detector_images_owed"], row["boxes_to_draw"], row["boxes_to_delete"], row["relabels_owed"],
            row["detector_images_done"], row["classifier_crops_done"]) == (2, 2, 0, 0, 1, 1)
    # done 1 × 36 + 1 × 9 = 45 s, owed 2 × 36 = 72 s (f1 still misses a hand, f2 too)
    assert row["saved"] == pytest.approx(1 - 117 / 135, abs=1e-4)


def test_cost_without_ground_truth_claims_no_saving(tmp_path, capsys):
    from lrihar.evaluate.project_eval import evaluate_project
    from lrihar.evaluate.report import write_report
    from lrihar.review.edits import mark_wrong, start_session

    project, (_box_a, box_b), _gt = _tiny_project(tmp_path / "p")
    mark_wrong(project.store, [box_b], "ana", start_session(project.store, "ana"))
    out = tmp_path / "eval.json"
    assert main(["evaluate", "-p", str(project.root), "--json", str(out), *RATES]) == 0
    printed = capsys.readouterr().out
    assert "nothing was checked against ground truth" in printed and "% saved" not in printed
    cost = json.loads(out.read_text())["cost"]
    assert cost["checked"] == "nothing"
    assert cost["line"]["saved"] is None and cost["line"]["hours_lrihar"] is None
    row = cost["posts"][0]
    assert row["saved"] is None and row["hours_owed"] is None and row["not_earned"]
    assert (row["detector_images_done"], row["hours_done"]) == (1, 0.01)  # the box fixed on f1: 36 s
    assert cost["measured_review"]["sessions"] == 1 and cost["measured_review"]["actions"] == 1

    html = tmp_path / "r.html"
    write_report(project, evaluate_project(project), html)
    text = html.read_text()
    assert "not claimed" in text and "Nothing was checked against ground truth" in text
    assert " % saved" not in text and "frames could not be read again" in text  # /imgs is not on disk


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_html_opens_in_headless_chromium(gloves_project, hands_dev, tmp_path):
    from lrihar.classify.pipeline import classify

    classify(gloves_project)
    gt = _gloves_coco_with_classes(hands_dev, tmp_path / "gt.json")
    sweep_out = tmp_path / "sweep"
    assert main(["sweep", "--gt", str(hands_dev / "mmpose_hands" / "coco.json"), "--detector",
                 "mediapipe-hands", "-o", str(sweep_out), "--no-progress"]) == 0
    html = tmp_path / "report.html"
    assert main(["report", "-p", str(gloves_project.root), "-o", str(html), "--gt", str(gt), "--images",
                 str(hands_dev / "gloves_roboflow"), "--sweep", str(sweep_out)]) == 0
    text = html.read_text()
    headings = ("At a glance", "Frames with their boxes", "Worst misses and false boxes",
                "Detection (eq. 3 recall", "Threshold sweeps (Fig. 7)", "Classification (Fig. 8)",
                "Annotation cost (Table 3)", "Classifiers (Table 4)", "Configuration and store",
                "Versions and hardware")
    at = [text.index(f">{h}") for h in headings]
    assert at == sorted(at)  # headline numbers and pictures first, configuration last
    assert text.count("data:image/png;base64,") >= 5  # 4 surfaces + confusion, inlined
    assert text.count("data:image/jpeg;base64,") >= 6 + 2  # a sample of frames + one GT / lrihar pair
    assert html.stat().st_size < 5e6
    assert html.with_suffix(".md").read_text().startswith("# lrihar report")
    if not _chromium():
        pytest.skip("no chromium on this machine (scripts/install.sh installs it): browser check not run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        assert page.title().startswith("lrihar report")
        natural_widths = "imgs => imgs.map(i => i.naturalWidth)"
        widths = page.eval_on_selector_all("img", natural_widths)
        pictures = page.eval_on_selector_all("img.picture", natural_widths)
        pairs = page.eval_on_selector_all("figure.pair",
                                          "fs => fs.map(f => f.querySelectorAll('img').length)")
        config_folded = page.eval_on_selector("pre", "p => !p.closest('details').open")
        cards = page.inner_text(".cards")
        browser.close()
    assert errors == []
    assert widths and all(w > 100 for w in widths)  # every inlined figure and picture decoded
    assert pictures and all(w == 480 for w in pictures)  # the 640 px frames, scaled down
    assert pairs and all(n == 2 for n in pairs)  # ground truth beside lrihar's boxes
    assert config_folded
    assert "recall (eq. 3, T_IoU 0.3)" in cards and "review time" in cards


def test_reviewed_labels_feed_the_confusion_matrix(gloves_project):
    from lrihar.classify.pipeline import classify
    from lrihar.evaluate.project_eval import confusions
    from lrihar.review.edits import accept, add_box, relabel

    classify(gloves_project)
    store = gloves_project.store
    labels = store.labels()
    ids = [i for i, v in labels.items() if v["label"] in CLASSES][:3]
    accept(store, ids[:2], "ana")  # the matcher was right twice
    wrong_to = next(c for c in CLASSES if c != labels[ids[2]]["label"])
    relabel(store, [ids[2]], wrong_to, "ana")  # and wrong once
    add_box(store, ids[0], [0, 0, 20, 20], CLASSES[0], "ana")  # never matched: not counted
    conf = confusions(store, None, list(CLASSES))["(line)"]
    s = conf.summary()
    assert (s["crops"], s["right"], s["wrong"]) == (3, 2, 1)


@pytest.mark.parametrize(("change", "why"), [
    ("drop f3", "only 3 of 4 frames checked against ground truth"),
    ("one class", "labels not checked: the ground truth has none of the project's classes"),
])
def test_cost_claims_no_saving_for_a_post_checked_in_part(tmp_path, change, why):
    from lrihar.evaluate.groundtruth import load_ground_truth
    from lrihar.evaluate.project_eval import evaluate_project

    project, _ids, gt = _tiny_project(tmp_path / "p")
    doc = json.loads(gt.read_text())
    if change == "drop f3":
        doc["images"] = [im for im in doc["images"] if im["file_name"] != "f3.jpg"]
    else:
        doc["categories"] = [{"id": 1, "name": "hand"}, {"id": 2, "name": "other"}]
    gt.write_text(json.dumps(doc))
    cost = evaluate_project(project, load_ground_truth(gt))["cost"]
    row = cost["posts"][0]
    assert cost["checked"] == "part" and row["not_earned"] == why
    assert row["saved"] is None and row["hours_lrihar"] is None and cost["line"]["saved"] is None
    assert row["boxes_to_draw"] == 2  # what was checked is still counted
