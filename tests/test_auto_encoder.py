"""``classify.encoder: auto``: the right encoder chosen per project, the table shown and stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_project, tiny_gd_project
from lrihar.annotate.pipeline import annotate
from lrihar.classify.auto import rank_candidates
from lrihar.classify.pipeline import classify
from lrihar.cli import main
from lrihar.project import Project

POSE_CHOICES = ("hand-pose", "fusion w=0.25", "fusion w=0.5", "fusion w=0.75")


def _asl_templates(asl: Path, root: Path, per_letter: int, letters: str | None = None) -> Path:
    """GT crops of the first ``per_letter`` unaugmented `valid` images of each letter."""
    images = json.loads((asl / "gt.json").read_text())["images"]
    counts: dict[str, int] = {}
    for im in sorted((im for im in images if im["split"] == "valid"), key=lambda im: im["file"]):
        letter = im["label"]
        if (letters and letter not in letters) or counts.get(letter, 0) >= per_letter:
            continue
        counts[letter] = counts.get(letter, 0) + 1
        folder = root / letter
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(asl / im["file"]).convert("RGB").crop([round(v) for v in im["hands"][0]]).save(
            folder / Path(im["file"]).name)
    return root


def _asl_test_images(asl: Path, folder: Path, n: int) -> Path:
    images = json.loads((asl / "gt.json").read_text())["images"]
    folder.mkdir(parents=True)
    for im in sorted((im for im in images if im["split"] == "test"), key=lambda im: im["file"])[:n]:
        shutil.copy(asl / im["file"], folder)
    return folder


@pytest.fixture(scope="module")
def asl_project(tmp_path_factory):
    """26 letters, 2 templates each (X has 1), detections of 4 `test` images by mediapipe-hands."""
    from conftest import HANDS_DEV

    asl = HANDS_DEV / "asl_letters"
    if not asl.is_dir():
        pytest.skip(f"ASL letters dev set not found at {asl} (only present in the lrihar workspace)")
    tmp = tmp_path_factory.mktemp("asl")
    _asl_templates(asl, tmp / "p" / "templates", 2)
    root = make_project(tmp / "p", classify={"templates": "templates"})
    project = Project.open(root)
    annotate(project, [str(_asl_test_images(asl, tmp / "frames", 4))])
    return project


def _last_run(project, command="classify") -> dict:
    run = [r for r in project.store.runs() if r["command"] == command][-1]
    return {"config": json.loads(run["config"]), "stats": json.loads(run["stats"])}


def test_auto_picks_pose_on_asl_letters_prints_and_stores_the_table(asl_project, capsys):
    root = str(asl_project.root)
    assert main(["classify", "-p", root, "--no-progress", "--no-sheets"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-out" in out and "mobilenet-v2" in out and "fusion w=0.5" in out
    chosen = out.split("encoder: auto -> ", 1)[1].split(" (", 1)[0]
    assert chosen in POSE_CHOICES
    run = _last_run(asl_project)
    for selection in (run["config"]["encoder_selection"], run["stats"]["encoder_selection"]):
        assert selection["chosen"] == chosen and selection["templates"] == 51  # X has one template
        rows = {r["label"]: r for r in selection["candidates"]}
        assert list(rows) == ["mobilenet-v2", "fusion w=0.25", "fusion w=0.5", "fusion w=0.75", "hand-pose"]
        assert rows[chosen]["score"] == max(r["score"] for r in rows.values())
        assert rows["mobilenet-v2"]["templates_accuracy"] < rows["hand-pose"]["templates_accuracy"]
    assert run["config"]["encoder"]["encoder"] in ("hand-pose", "fusion")
    db = asl_project.store.db
    before = db.execute("SELECT COUNT(*) FROM template_embeddings").fetchone()[0]
    again = classify(asl_project)  # a rerun reuses every cached embedding
    assert again.embedded == 0 and again.encoder_selection["chosen"] == chosen
    assert db.execute("SELECT COUNT(*) FROM template_embeddings").fetchone()[0] == before


def test_calibrate_lambda_and_the_report_use_the_chosen_encoder(asl_project, tmp_path, capsys):
    from lrihar.evaluate.report import encoder_section

    classify(asl_project)
    chosen = _last_run(asl_project)["config"]["encoder_selection"]["chosen"]
    assert main(["calibrate-lambda", "-p", str(asl_project.root), "--json", str(tmp_path / "l.json")]) == 0
    assert f"encoder: auto -> {chosen}" in capsys.readouterr().out
    doc = json.loads((tmp_path / "l.json").read_text())
    assert doc["encoder_selection"]["chosen"] == chosen
    assert doc["encoder"]["encoder"] == ("hand-pose" if chosen == "hand-pose" else "fusion")
    section = encoder_section(asl_project)
    table = next(b for b in section["blocks"] if b["kind"] == "table")
    assert table["rows"][0][0] == "mobilenet-v2"
    assert next(r for r in table["rows"] if r[0] == chosen)[-1] == "chosen"


def test_fusion_embeddings_are_the_cached_parts_side_by_side(asl_project):
    from lrihar.classify.embed import embed_detections
    from lrihar.crops import iter_crops
    from lrihar.models.build import build_encoder
    from lrihar.models.encoders import Crop

    store = asl_project.store
    fusion = build_encoder(asl_project.config, "fusion", {"pose_weight": 0.4})
    appearance_key = store.register_encoder(fusion.appearance.describe())
    embed_detections(store, fusion.appearance, appearance_key, 0.0, [])
    ids, appearance = store.detection_embeddings(appearance_key)
    # a stored appearance part that differs from what the network gives shows it is reused
    marked = np.roll(appearance[0], 1)
    store.put_detection_embeddings(appearance_key, [int(ids[0])], marked[None])
    key = store.register_encoder(fusion.describe())
    assert embed_detections(store, fusion, key, 0.0, []) == len(ids) > 1
    fused_ids, fused = store.detection_embeddings(key)
    assert np.array_equal(fused_ids, ids)
    assert np.array_equal(fused[0, :fusion.appearance.dim], marked)
    store.put_detection_embeddings(appearance_key, [int(ids[0])], appearance[:1])  # the module's project
    row, crop = next(iter_crops(store, only={int(ids[1])}))
    direct = fusion.embed([Crop(crop, np.asarray(row.world_landmarks), row.handedness)])[0]
    assert np.allclose(fused[1], direct, atol=1e-5)  # the parts side by side = the fusion embedding


def test_auto_picks_appearance_or_fusion_on_gloves(gloves_project):
    summary = classify(gloves_project)
    selection = summary.encoder_selection
    assert selection["chosen"] in ("mobilenet-v2", "fusion w=0.25", "fusion w=0.5", "fusion w=0.75")
    rows = {r["label"]: r for r in selection["candidates"]}
    assert rows["mobilenet-v2"]["templates_accuracy"] > rows["hand-pose"]["templates_accuracy"]
    assert selection["detections_with_landmarks"] == 1.0  # every mediapipe-hands box has them


def test_pose_candidates_without_landmarks_are_left_out_with_the_reason(tiny_grounding_dino, hands_dev,
                                                                        tmp_path, capsys):
    root = tiny_gd_project(tmp_path / "p", tiny_grounding_dino, box_threshold=0.0, text_threshold=0.0)
    _asl_templates(hands_dev / "asl_letters", root / "templates", 2, letters="AB")
    (root / "lrihar.yaml").write_text(json.dumps(
        json.loads((root / "lrihar.yaml").read_text()) | {"classify": {"templates": "templates"}}))
    project = Project.open(root)
    annotate(project, [str(_asl_test_images(hands_dev / "asl_letters", tmp_path / "frames", 2))])
    assert project.store.counts()["detections"] > 0
    assert main(["classify", "-p", str(root), "--no-progress", "--no-sheets"]) == 0
    out = capsys.readouterr().out
    assert "encoder: auto -> mobilenet-v2" in out and "no stored detection has hand landmarks" in out
    rows = _last_run(project)["config"]["encoder_selection"]["candidates"]
    for row in rows[1:]:
        assert "boxes from grounding-dino" in row["left_out"] and row["score"] is None
    assert rows[0]["score"] is not None and rows[0]["left_out"] == ""


# Hand-computed: 4 templates of 2 classes. Appearance cannot tell them apart (all rows equal:
# class 0 wins every tie, so leave-one-out gets 2 of 4), pose can (4 of 4).
APPEARANCE = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], np.float32)
POSE = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
CLASS = np.array([0, 0, 1, 1])


@pytest.mark.parametrize(("kwargs", "chosen", "scores"), [
    # fusion at any weight is right on all 4 (same class 1, other class 1 - w): ties -> least pose
    ({}, "fusion w=0.25", [0.5, 1.0, 1.0, 1.0, 1.0]),
    # half the detections without landmarks: hand-pose 0.5 * 1.0; fusion 0.5 * 1.0 + 0.5 * 0.5
    ({"detections_with_landmarks": 0.5}, "fusion w=0.25", [0.5, 0.75, 0.75, 0.75, 0.5]),
    ({"pose_unavailable": "no landmarks"}, "mobilenet-v2", [0.5, None, None, None, None]),
    # equal appearance and pose: a tie at 1.0 goes to appearance
    ({"pose": APPEARANCE * 0 + POSE, "appearance": POSE}, "mobilenet-v2", [1.0] * 5),
    # 4 reviewed crops of class 1 without landmarks: appearance says class 0 (wrong), hand-pose NG
    # (wrong), fusion appearance alone (wrong): appearance (4 * 0.5 + 0) / 8, the rest (4 * 1 + 0) / 8
    ({"reviewed": (APPEARANCE, np.zeros_like(POSE), np.ones(4, int))}, "fusion w=0.25",
     [0.25, 0.5, 0.5, 0.5, 0.5]),
    # 12 reviewed crops of class 0 whose pose looks like class 1: appearance right on all
    # (tie -> class 0), every pose candidate wrong (class 1 scores 1 vs 1 - w):
    # appearance (4 * 0.5 + 12 * 1) / 16, the rest (4 * 1 + 0) / 16
    ({"reviewed": (np.tile(APPEARANCE[:1], (12, 1)), np.tile(POSE[2:3], (12, 1)), np.zeros(12, int))},
     "mobilenet-v2", [0.875, 0.25, 0.25, 0.25, 0.25]),
])
def test_rank_candidates_hand_computed(kwargs, chosen, scores):
    args = {"appearance": APPEARANCE, "pose": POSE} | kwargs
    label, rows = rank_candidates(args.pop("appearance"), args.pop("pose"), CLASS, 2, **args)
    assert label == chosen
    assert [r.score for r in rows] == [None if x is None else pytest.approx(x) for x in scores]


@pytest.mark.parametrize(("options", "message"), [
    ({"pose_weights": [0.5, 1.5]}, "classify.options.pose_weights"),
    ({"appearance": "hand-pose"}, "classify.options.appearance: name an image encoder"),
])
def test_bad_auto_options_are_bad_input(tmp_path, capsys, options, message):
    for name in ("a", "b"):
        (tmp_path / "p" / "templates" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "p" / "templates" / name / "x.png")
    root = make_project(tmp_path / "p", classify={"templates": "templates", "options": options})
    assert main(["classify", "-p", str(root), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
