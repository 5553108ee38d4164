"""`lrihar bootstrap`: the detector correction loop as one resumable command.

A tiny synthetic set (red "hands", a cheap detector that misplaces the right one with a low
score, one frame with no hand) goes through two rounds driven by `lrihar.cli.main`, the person
played by a COCO file of the suggested frames (round 1) and by the review library (round 2); a
second project is killed (-9) while it trains and must end where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_fixtures import MisplacesTheRightHand, draw_frames
from lrihar.cli import main
from lrihar.models.detectors import register_detector
from lrihar.store.frames import PERSON_BOX

pytest.importorskip("ultralytics")

TESTS = Path(__file__).resolve().parent
# yolo11n at 64 px for 2 epochs: seconds per round on 2 cores (tests/detector_fixtures.py FAST)
TRAIN = {"arch": "yolo11n", "epochs": 2, "imgsz": 64, "batch": 4, "workers": 0, "patience": 5}
W, H = 96, 80


register_detector("misplaces-right")(lambda **kw: MisplacesTheRightHand())


def _frames(folder: Path) -> dict[str, list]:
    """12 frames with 1-2 hands and a 13th with none; the true boxes by file name."""
    truth = draw_frames(folder, 12)
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(30, 90, (H, W, 3), dtype=np.uint8)).save(folder / "frame12.png")
    return truth | {"frame12.png": []}


def _project(root: Path, frames: Path) -> Path:
    """A project with no stored frame yet: its sources, its (cheap) detector, tiny training."""
    root.mkdir(parents=True)
    (root / "lrihar.yaml").write_text(json.dumps({
        "classes": [{"name": "hand"}], "sources": [str(frames)],
        "detector": {"backend": "misplaces-right"}, "train_detector": TRAIN}))
    return root


def _coco(path: Path, images: list[tuple[str, list]]) -> Path:
    """A COCO file: (file name, xyxy boxes) per image, 96 x 80."""
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "hand"}]}
    for i, (name, boxes) in enumerate(images, 1):
        doc["images"].append({"id": i, "file_name": name, "width": W, "height": H})
        for x1, y1, x2, y2 in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i, "category_id": 1,
                                       "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                       "iscrowd": 0})
    path.write_text(json.dumps(doc))
    return path


def _state(root: Path) -> dict:
    return json.loads((root / "models" / "bootstrap.json").read_text())


def _suggested(root: Path, r: int) -> list[dict]:
    return json.loads((root / "models" / "bootstrap" / f"round-{r}" / "suggest.json").read_text())


def _person_draws(root: Path, r: int, truth: dict, out: Path) -> Path:
    """The person's COCO file for round r's suggested frames: every hand drawn (none on the empty one)."""
    return _coco(out, [(s["file"], truth[Path(s["name"]).name]) for s in _suggested(root, r)])


def _person_rows(root: Path, timed: bool = True) -> dict[str, list]:
    """Every row of a person's boxes (with their labels) and of the "no hand" marks; not ``timed``:
    without the time they were written (to compare two projects)."""
    db = sqlite3.connect(root / "lrihar.db")
    queries = {"boxes": f"SELECT * FROM detections d WHERE {PERSON_BOX} ORDER BY d.id",
               "labels": "SELECT l.* FROM labels l JOIN detections d ON d.id = l.detection_id"
                         f" WHERE {PERSON_BOX} ORDER BY d.id",
               "no_hand": "SELECT * FROM frame_reviews ORDER BY source_id, frame_index"}
    try:
        out = {}
        for key, sql in queries.items():
            cur = db.execute(sql)
            keep = [i for i, c in enumerate(cur.description) if timed or c[0] != "at"]
            out[key] = [tuple(row[i] for i in keep) for row in cur]
        return out
    finally:
        db.close()


def _run(root: Path, *args: str) -> int:
    return main(["bootstrap", "-p", str(root), "--no-progress", "--no-plots", *args])


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Two uninterrupted rounds, with what the store and the state held after each stop."""
    base = tmp_path_factory.mktemp("bootstrap")
    truth = _frames(base / "frames")
    heldout = draw_frames(base / "heldout", 4, seed=1)
    gt = _coco(base / "heldout" / "gt.json", sorted(heldout.items()))
    root = _project(base / "p", base / "frames")
    out: dict = {"base": base, "root": root, "truth": truth, "gt": gt, "seconds": {}}

    t = time.perf_counter()
    # round 1: the project's own detector annotates its sources, 30 % of 13 frames are suggested
    assert _run(root, "--rounds", "2", "--budget", "30%", "--gt", str(gt), "--threshold", "0.01") == 0
    out["stop_1"] = _state(root)
    out["suggest_1"] = _suggested(root, 1)
    assert _run(root) == 0  # nobody corrected anything yet: stops again, changes nothing
    out["unchecked"] = _state(root)
    coco = _person_draws(root, 1, truth, base / "round-1.json")
    out["coco_1"] = coco
    assert _run(root, "--corrections", str(coco), "--from", "coco", "--empty-checked") == 0
    out["stop_2"] = _state(root)
    out["rows_1"] = _person_rows(root)
    out["rows_1_untimed"] = _person_rows(root, timed=False)
    out["seconds"]["round 1"] = time.perf_counter() - t

    # round 2: the person fixes one suggested frame in the review page (the library it calls)
    from lrihar.project import Project
    from lrihar.review import edits

    t = time.perf_counter()
    project = Project.open(root)
    picks = {(s["source"], s["frame_index"]) for s in _suggested(root, 2)}
    assert ("frame12.png" not in {Path(s["name"]).name for s in _suggested(root, 2)})  # "no hand": checked
    boxes = [r for r in project.store.detections() if (r.source_uri, r.frame_index) in picks]
    edits.mark_wrong(project.store, [boxes[0].id], "ben")  # one box of one frame; the others need nothing
    project.store.close()
    out["rows_2"] = _person_rows(root)
    assert _run(root) == 0
    out["done"] = _state(root)
    out["rows_done"] = _person_rows(root)
    out["seconds"]["round 2"] = time.perf_counter() - t
    return out


def test_round_one_suggests_stops_and_waits_for_a_person(loop):
    state = loop["stop_1"]
    assert state["initial"]["annotated"] and state["initial"]["frames"] == 13
    [rnd] = state["rounds"]
    assert rnd["step"] == "corrections" and rnd["suggest"]["k"] == 4  # round(0.3 x 13)
    assert rnd["suggest"]["stored_frames"] == 13 and rnd["suggest"]["picked"] == 4
    picked = {Path(s["name"]).name for s in loop["suggest_1"]}
    # the frame with no box and three of the frames whose right hand got a weak, misplaced box
    assert "frame12.png" in picked and len(picked) == 4
    assert all(int(n[5:7]) % 2 for n in picked - {"frame12.png"})
    [again] = loop["unchecked"]["rounds"]  # "none checked": the same stop again
    assert again["step"] == "corrections" and again["suggest"] == rnd["suggest"]
    assert again["corrections"] == {"imported": [], "checked": 0, "of": 4}


def test_two_rounds_record_what_each_gained_and_keep_every_persons_rows(loop):
    r1, r2 = loop["done"]["rounds"]
    assert (r1["step"], r2["step"]) == ("done", "done")
    assert r1["corrections"]["checked"] == r1["corrections"]["of"] == 4
    assert len(r1["corrections"]["imported"]) == 1 and len(loop["done"]["imported"]) == 1
    assert r2["corrections"]["checked"] == 1 < r2["corrections"]["of"]  # some frames left: it went on
    for rnd in (r1, r2):
        assert rnd["train"]["run"] == f"bootstrap-{rnd['round']}" and rnd["train"]["epochs_done"] == 2
        assert rnd["train"]["seconds"] > 0 and Path(rnd["export"]["onnx"]).is_file()
        assert rnd["reannotate"]["boxes_changed"] == rnd["reannotate"]["boxes_added"] + \
            rnd["reannotate"]["boxes_removed"]
        h = rnd["heldout"]
        assert h["images"] == 4 and h["ground_truth_boxes"] == 6 and 0 <= h["recall"] <= 1
        assert set(h["by_class"]) == {"hand"}
    assert r2["suggest"]["compare"] == r1["export"]["onnx"]  # round 2 compares with round 1's detector
    # the person's round-1 rows (drawn boxes, rejected boxes, the "no hand" mark) are untouched by
    # two trainings and re-annotations; round 2's mark went in beside them and stayed too
    rows_1, rows_2, done = loop["rows_1"], loop["rows_2"], loop["rows_done"]
    assert rows_1["boxes"] and len(rows_1["no_hand"]) == 1
    for key in rows_1:
        assert set(rows_1[key]) <= set(rows_2[key]) and rows_2[key] == done[key]
    assert len(rows_2["boxes"]) + len(rows_2["no_hand"]) == len(rows_1["boxes"]) + len(rows_1["no_hand"]) + 1


def test_a_finished_loop_reruns_to_the_same_state_and_prints_the_table(loop, capsys):
    before = loop["done"]
    assert _run(loop["root"], "--corrections", str(loop["coco_1"])) == 0  # imported already: not again
    out = capsys.readouterr().out
    assert "bootstrap rounds" in out and "2 rounds done" in out
    after = _state(loop["root"])
    assert after["rounds"] == before["rounds"] and after["imported"] == before["imported"]


def _whole_zip(path: Path) -> bool:
    """``path`` exists and is a complete zip (a checkpoint torch finished writing)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def test_a_ground_truth_of_the_projects_own_frames_is_refused(loop, capsys):
    frames = loop["base"] / "frames"
    gt = _coco(frames.parent / "own.json", [(f"frames/{n}", b) for n, b in sorted(loop["truth"].items())[:2]])
    before = (loop["root"] / "models" / "bootstrap.json").read_bytes()
    assert _run(loop["root"], "--gt", str(gt)) == 2
    assert "are frames of the project" in capsys.readouterr().err
    assert (loop["root"] / "models" / "bootstrap.json").read_bytes() == before


KILLED = """
import sys
sys.path[:0] = [{tests!r}]
import test_bootstrap_loop  # registers the cheap detector
from lrihar.cli import main
sys.exit(main({argv!r}))
"""


def test_kill_9_while_training_then_rerun_ends_as_an_uninterrupted_run(loop, tmp_path):
    root = _project(tmp_path / "p", loop["base"] / "frames")
    args = ["--rounds", "1", "--budget", "30%", "--gt", str(loop["gt"]), "--threshold", "0.01"]
    assert _run(root, *args) == 0
    assert _suggested(root, 1) == loop["suggest_1"]  # the same frames as the uninterrupted run
    coco = _person_draws(root, 1, loop["truth"], tmp_path / "round-1.json")
    again = ["--corrections", str(coco), "--from", "coco", "--empty-checked"]
    argv = ["bootstrap", "-p", str(root), "--no-progress", "--no-plots", *again]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(tests=str(TESTS), argv=argv)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = root / "models" / "detector" / "bootstrap-1" / "weights" / "last.pt"
    deadline = time.monotonic() + 120
    while not _whole_zip(last) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # killed once epoch 1 is saved, while epoch 2 trains
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    half = _state(root)["rounds"][0]
    assert half["step"] == "train" and half["corrections"]["checked"] == 4

    assert _run(root, *again) == 0  # the same command again: imported already, training resumed
    done = _state(root)
    [rnd], [want] = done["rounds"], loop["stop_2"]["rounds"][:1]
    assert rnd["step"] == "done" and len(done["imported"]) == 1
    assert rnd["train_sessions"] == ["new", "resume"] and want["train_sessions"] == ["new"]
    assert done["imported"][0]["sha256"] == loop["stop_2"]["imported"][0]["sha256"]
    for key in ("suggest", "corrections"):
        assert {k: v for k, v in rnd[key].items() if k not in ("file", "imported")} == \
            {k: v for k, v in want[key].items() if k not in ("file", "imported")}
    assert rnd["train"]["epochs_done"] == want["train"]["epochs_done"]
    assert rnd["heldout"]["images"] == want["heldout"]["images"]
    # the import was not applied twice: the person's rows are those of the uninterrupted run
    assert _person_rows(root, timed=False) == loop["rows_1_untimed"]


def test_an_import_cut_short_after_its_commit_is_not_applied_again(loop, tmp_path, monkeypatch):
    """Killed between the import's commit and the state's update: the rerun with the same file
    finds the import's review actions in the store and does not import it a second time."""
    import lrihar.review.interchange as interchange

    root = _project(tmp_path / "p", loop["base"] / "frames")
    args = ["--rounds", "1", "--budget", "30%", "--epochs", "1"]
    assert _run(root, *args) == 0
    coco = _person_draws(root, 1, loop["truth"], tmp_path / "round-1.json")
    stopped = _state(root)
    wrong = _coco(tmp_path / "wrong.json", [("not-a-frame.jpg", [])])  # refused by the import: exit 2
    assert _run(root, *args, "--corrections", str(wrong)) == 2
    assert _state(root)["rounds"] == stopped["rounds"] and "importing" not in _state(root)
    real = interchange.import_corrections

    def commit_then_die(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt  # as if killed right after the transaction

    monkeypatch.setattr(interchange, "import_corrections", commit_then_die)
    assert _run(root, *args, "--corrections", str(coco), "--empty-checked") == 130
    assert _state(root)["importing"]["sha256"]  # the import was under way
    monkeypatch.setattr(interchange, "import_corrections", real)
    assert _run(root, *args, "--corrections", str(coco), "--empty-checked") == 0
    state = _state(root)
    assert "importing" not in state and len(state["imported"]) == 1
    assert state["rounds"][0]["step"] == "done" and state["rounds"][0]["corrections"]["checked"] == 4
    db = sqlite3.connect(root / "lrihar.db")
    assert db.execute("SELECT COUNT(DISTINCT action_id) FROM review_log").fetchone()[0] == 1
    db.close()
    assert _person_rows(root, timed=False) == loop["rows_1_untimed"]


@pytest.mark.parametrize("args, named", [
    (["--budget", "0%"], "--budget"), (["--budget", "150%"], "--budget"), (["--budget", "x"], "--budget"),
    (["--corrections", "missing.json"], "--corrections"), (["--rounds", "0"], "--rounds"),
    (["--from", "voc"], "--from")])
def test_bad_input_exits_2_and_changes_nothing(tmp_path, capsys, args, named):
    draw_frames(tmp_path / "frames", 2)
    root = _project(tmp_path / "p", tmp_path / "frames")
    before = sorted(p.name for p in root.iterdir())
    assert _run(root, *args) == 2
    assert named in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == before  # no store, no state, no models/


def test_no_project_and_corrections_out_of_turn_are_bad_input(tmp_path, capsys):
    assert _run(tmp_path / "nowhere") == 2
    assert "--project" in capsys.readouterr().err
    draw_frames(tmp_path / "frames", 2)
    root = _project(tmp_path / "p", tmp_path / "frames")
    coco = _coco(tmp_path / "c.json", [])
    assert _run(root, "--corrections", str(coco)) == 2  # no round has suggested anything yet
    assert "round 1 has not suggested its frames yet" in capsys.readouterr().err
    assert not (root / "models" / "bootstrap.json").exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "lrihar.yaml").write_text("{}")  # no sources, nothing stored: nothing to start from
    assert _run(bare) == 2
    assert "no stored frames" in capsys.readouterr().err and not (bare / "models").exists()
