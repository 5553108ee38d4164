"""Many lines and posts in one project: the `lines:` section, the resolver, --line / --post filters
of annotate, classify, export, evaluate and run, and the cost report summed per line.

The project has two lines of two posts each, with different classes per post. Frames are red
rectangles on noise (tests/detector_fixtures.py), annotated through the real `lrihar annotate`
with the colour detector registered as a backend; crops are labelled through the real
`lrihar classify` with a mean-colour encoder registered like the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_fixtures import RED, ColourBoxDetector, draw_frames
from lrihar.cli import main
from lrihar.config import load_project_config, parse_project_config
from lrihar.errors import BadInputError
from lrihar.lines import NO_LINE, project_layout
from lrihar.models.detectors import DETECTORS
from lrihar.models.encoders import ENCODERS, Encoder


class MeanColour(Encoder):
    """A crop's mean colour, centred on grey: red, green and blue crops point three ways."""

    name = "mean-colour"

    def _embed_batch(self, crops):
        return np.stack([c.image.reshape(-1, 3).mean(0) - 128.0 for c in crops]).astype(np.float32)

    @property
    def dim(self) -> int:
        return 3



@pytest.fixture(scope="module", autouse=True)
def test_backends():
    """The colour detector and the mean-colour encoder, registered for this module only (other
    modules list the registered backends)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DETECTORS._factories, "colour-boxes", lambda **kw: ColourBoxDetector())
        mp.setitem(ENCODERS._factories, "mean-colour", lambda **kw: MeanColour())
        yield

GREEN, BLUE = (30, 200, 40), (40, 60, 230)
# post -> (frames, seed): frame i holds 1 + i % 2 boxes, so 3 frames hold 4 boxes and 2 hold 3
FRAMES = {"a1": (3, 1), "a2": (2, 2), "b1": (3, 3), "b2": (2, 4)}
BOXES = {"a1": 4, "a2": 3, "b1": 4, "b2": 3}


def _templates(root: Path, colours: dict[str, tuple[int, int, int]]) -> Path:
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(root / name / "t.png")
    return root


def two_line_file(base: Path) -> dict:
    """Two lines × two posts; a2 takes the project-wide classes, the others have their own."""
    return {
        "classes": [{"name": "red"}, {"name": "blue"}],
        "classify": {"encoder": "mean-colour", "templates": "templates", "lambda": 0.6},
        "detector": {"backend": "colour-boxes"},
        "lines": [
            {"name": "assembly", "posts": [
                {"name": "a1", "classes": [{"name": "red"}, {"name": "green"}], "templates": "tpl-a1",
                 "lambda": 0.5, "procedure": {"steps": [{"class": "red"}, {"class": "green"}]},
                 "sources": [str(base / "frames" / "a1")], "cameras": [str(base / "frames" / "a1")]},
                "a2"]},
            {"name": "packing", "posts": [
                {"name": "b1", "classes": [{"name": "box", "lambda": 0.8}, {"name": "tape"}],
                 "templates": "tpl-b1", "sources": [str(base / "frames" / "b1")],
                 "cameras": [str(base / "frames" / "b1")]},
                {"name": "b2", "classes": [{"name": "crate"}], "templates": "tpl-b2", "lambda": 0.9}]},
        ],
    }


@pytest.fixture(scope="module")
def lines_project(tmp_path_factory):
    """The two-line project, every post annotated through the CLI (its own filters)."""
    base = tmp_path_factory.mktemp("lines")
    for post, (n, seed) in FRAMES.items():
        folder = base / "frames" / post
        draw_frames(folder, n, seed=seed)
        for f in folder.iterdir():  # names unique across posts: ground truth matches by file name
            f.rename(folder / f"{post}-{f.name}")
    root = base / "project"
    _templates(root / "templates", {"red": RED, "blue": BLUE})
    _templates(root / "tpl-a1", {"red": RED, "green": GREEN})
    _templates(root / "tpl-b1", {"box": RED, "tape": BLUE})
    _templates(root / "tpl-b2", {"crate": RED})
    (root / "lrihar.yaml").write_text(json.dumps(two_line_file(base)))
    p = ["-p", str(root), "--no-progress"]
    assert main(["annotate", *p, "--line", "assembly"]) == 0  # a1's own sources (a2 has none)
    assert main(["annotate", str(base / "frames" / "a2"), *p, "--post", "a2"]) == 0
    assert main(["annotate", *p, "--post", "b1"]) == 0
    assert main(["annotate", str(base / "frames" / "b2"), *p, "--line", "packing", "--post", "b2"]) == 0
    return {"root": root, "base": base}


def _store(root: Path):
    from lrihar.project import Project

    return Project.open(root).store


def _labels_by_post(root: Path) -> dict[str, set[tuple[str, float]]]:
    rows = _store(root).db.execute("SELECT s.post, l.label, l.lambda FROM labels l JOIN detections d ON"
                                   " d.id = l.detection_id JOIN sources s ON s.id = d.source_id").fetchall()
    out: dict[str, set] = {}
    for post, label, lam in rows:
        out.setdefault(post, set()).add((label, round(lam, 3)))
    return out


def test_two_line_file_loads_and_the_resolver_answers(tmp_path):
    cfg = parse_project_config(two_line_file(tmp_path), tmp_path / "lrihar.yaml")
    layout = project_layout(cfg)
    assert layout.pairs() == [("assembly", "a1"), ("assembly", "a2"), ("packing", "b1"), ("packing", "b2")]
    a1, a2, b2 = layout.post("a1"), layout.post("a2"), layout.post("b2")
    assert (a1.class_names, a1.templates, a1.lambda_) == (["red", "green"], tmp_path / "tpl-a1", 0.5)
    assert a1.procedure is not None and [s.name for s in a1.procedure.steps] == ["red", "green"]
    assert a1.cameras == (str(tmp_path / "frames" / "a1"),)
    # a2 names nothing of its own: the project-wide classes, templates and λ
    assert (a2.class_names, a2.templates, a2.lambda_, a2.procedure) == (
        ["red", "blue"], tmp_path / "templates", 0.6, None)
    assert (b2.class_names, b2.lambda_, layout.line_of("b2"), layout.line_of("a2")) == (["crate"], 0.9,
                                                                                        "packing", "assembly")
    assert layout.line_of(None) == NO_LINE and layout.line_of("gone") == NO_LINE
    assert layout.classes() == ["red", "blue", "green", "box", "tape", "crate"]
    assert not layout.uniform
    assert layout.select() is None and layout.select("packing") == ["b1", "b2"]
    assert layout.select("packing", "b1") == ["b1"] and layout.select(post="a2") == ["a2"]
    # a post's view is a valid one-line config: its classes, templates and λ where classify looks
    view = layout.config_for("b1")
    assert ([c.name for c in view.classes], view.classify.templates, view.classify.lambda_) == (
        ["box", "tape"], tmp_path / "tpl-b1", 0.6)
    assert (view.line, view.posts, view.lines) == ("packing", ["b1"], [])


@pytest.mark.parametrize(("line", "post", "message"), [
    ("nope", None, "--line nope: not a line of this project; lines: assembly, packing"),
    (None, "zz", "--post zz: not a post of this project; posts: a1, a2, b1, b2"),
    ("packing", "a1", "--post a1 is on line assembly, not on --line packing (whose posts are b1, b2)"),
])
def test_unknown_line_or_post_names_the_valid_ones(tmp_path, line, post, message):
    layout = project_layout(parse_project_config(two_line_file(tmp_path), tmp_path / "lrihar.yaml"))
    with pytest.raises(BadInputError) as err:
        layout.select(line, post)
    assert message in str(err.value)


def test_annotate_records_each_post_and_its_line(lines_project, capsys):
    root, base = lines_project["root"], lines_project["base"]
    store = _store(root)
    per_post = dict(store.db.execute("SELECT s.post, COUNT(*) FROM frames f JOIN sources s ON"
                                     " s.id = f.source_id GROUP BY s.post").fetchall())
    assert per_post == {p: n for p, (n, _) in FRAMES.items()}
    boxes = dict(store.db.execute("SELECT s.post, COUNT(*) FROM detections d JOIN sources s ON"
                                  " s.id = d.source_id GROUP BY s.post").fetchall())
    assert boxes == BOXES
    uris = dict(store.db.execute("SELECT post, uri FROM sources").fetchall())
    assert uris["b1"] == str(base / "frames" / "b1")  # the post's own `sources`
    layout = project_layout(load_project_config(root))
    assert {p: layout.line_of(p) for p in per_post} == {"a1": "assembly", "a2": "assembly", "b1": "packing",
                                                        "b2": "packing"}
    # inputs film one post: a line of two posts needs --post; unknown names are refused, nothing stored
    capsys.readouterr()
    assert main(["annotate", str(base / "frames" / "a2"), "-p", str(root), "--line", "assembly"]) == 2
    assert "--line assembly has posts a1, a2: name the one these inputs film with --post" in \
        capsys.readouterr().err
    assert main(["annotate", str(base / "frames" / "a2"), "-p", str(root), "--post", "a9"]) == 2
    assert "posts: a1, a2, b1, b2" in capsys.readouterr().err
    assert main(["annotate", "-p", str(root), "--line", "paint"]) == 2
    assert "lines: assembly, packing" in capsys.readouterr().err
    assert store.counts()["frames"] == sum(n for n, _ in FRAMES.values())


def test_classify_filters_use_each_posts_templates_and_lambda(lines_project, tmp_path):
    root = lines_project["root"]
    store = _store(root)
    p = ["-p", str(root), "--no-progress", "--no-sheets"]
    assert main(["classify", *p, "--post", "a1"]) == 0
    assert _labels_by_post(root) == {"a1": {("red", 0.5)}}  # a1's crops only, a1's classes and λ
    assert main(["classify", *p, "--line", "packing", "--json", str(tmp_path / "c.json")]) == 0
    runs = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert [r["posts"] for r in runs] == [["b1"], ["b2"]]  # different classes: one run per post
    assert runs[0]["counts"] == {"box": 4, "tape": 0, "NG": 0} and runs[1]["counts"] == {"crate": 3, "NG": 0}
    got = _labels_by_post(root)
    assert got["b1"] == {("box", 0.8)} and got["b2"] == {("crate", 0.9)} and "a2" not in got
    assert main(["classify", *p]) == 0  # every post, each its own way
    assert _labels_by_post(root)["a2"] == {("red", 0.6)}  # the project-wide templates and λ
    counts = dict(store.db.execute("SELECT s.post, COUNT(*) FROM labels l JOIN detections d ON d.id ="
                                   " l.detection_id JOIN sources s ON s.id = d.source_id GROUP BY s.post"))
    assert counts == BOXES


def test_export_filter_takes_that_lines_frames_and_classes(lines_project, tmp_path):
    root = lines_project["root"]
    assert main(["classify", "-p", str(root), "--no-progress", "--no-sheets"]) == 0
    out = tmp_path / "packing"
    assert main(["export", str(out), "-p", str(root), "-f", "imagefolder", "--line", "packing"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["box", "tape", "crate"] and manifest["posts"] == ["b1", "b2"]
    exported = sum(sum(c.values()) for c in manifest["counts"].values())
    assert exported == BOXES["b1"] + BOXES["b2"]
    assert all(src.startswith(str(lines_project["base"] / "frames" / "b"))
               for srcs in manifest["sources"].values() for src in srcs)
    out = tmp_path / "a1"
    assert main(["export", str(out), "-p", str(root), "-f", "yolo", "--post", "a1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["images"].values()) == FRAMES["a1"][0]
    assert main(["export", str(tmp_path / "x"), "-p", str(root), "--post", "c1"]) == 2
    assert not (tmp_path / "x").exists()


RATES = ["--seconds-per-image", "3600", "--hours-per-class-set", "200", "--crops-per-class", "200"]


def _ground_truth(base: Path, posts: list[str], path: Path) -> Path:
    """Exact boxes (what the colour detector finds) of these posts' frames, all of class red."""
    images, anns = [], []
    for post in posts:
        n, seed = FRAMES[post]
        boxes = draw_frames(base / "redraw" / post, n, seed=seed)
        for name, these in boxes.items():
            images.append({"id": len(images) + 1, "file_name": f"{post}-{name}", "width": 96, "height": 80})
            for x1, y1, x2, y2 in these:
                anns.append({"id": len(anns) + 1, "image_id": len(images), "category_id": 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1]})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "red"}]}))
    return path


def test_cost_is_summed_per_line_and_extrapolated_per_20_posts(lines_project, tmp_path, capsys):
    root, base = lines_project["root"], lines_project["base"]
    assert main(["classify", "-p", str(root), "--no-progress", "--no-sheets"]) == 0
    out = tmp_path / "e.json"
    assert main(["evaluate", "-p", str(root), "--json", str(out), *RATES]) == 0
    cost = json.loads(out.read_text())["cost"]
    # 3600 s per image; crops at 200 h per 200 crops per class: 3600 / n s, n = the post's classes.
    # a1: 3 images + 4 crops × 0.5 h = 5 h; a2: 2 + 3 × 0.5 = 3.5 h; b1: 3 + 4 × 0.5 = 5 h;
    # b2 (one class): 2 + 3 × 1 = 5 h.
    assert {r["post"]: (r["line"], r["hours_manual"]) for r in cost["posts"]} == {
        "a1": ("assembly", 5.0), "a2": ("assembly", 3.5), "b1": ("packing", 5.0), "b2": ("packing", 5.0)}
    lines = {r["line"]: r for r in cost["lines"]}
    assert (lines["assembly"]["posts"], lines["assembly"]["hours_manual"]) == (["a1", "a2"], 8.5)
    assert (lines["packing"]["posts"], lines["packing"]["hours_manual"]) == (["b1", "b2"], 10.0)
    assert all(r["hours_lrihar"] is None and r["saved"] is None for r in cost["lines"])  # nothing checked
    # the paper's line of 20 posts like the average one: 18.5 h / 4 × 20
    assert (cost["line"]["posts"], cost["line"]["hours_manual"]) == (20, 92.5)
    printed = capsys.readouterr().out
    assert "annotation cost per line" in printed and "8.5" in printed

    # Ground truth for the assembly line only: it is checked in full, packing is not.
    gt = _ground_truth(base, ["a1", "a2"], tmp_path / "gt.json")
    assert main(["evaluate", "-p", str(root), "--gt", str(gt), "--json", str(out), *RATES]) == 0
    lines = {r["line"]: r for r in json.loads(out.read_text())["cost"]["lines"]}
    # Nothing owed (exact boxes, right labels); done: 7 template crops spread over 4 posts, 1 each
    # at the post's crop rate: a1 0.5 h + a2 0.5 h.
    assert (lines["assembly"]["hours_lrihar"], lines["assembly"]["saved"]) == (1.0, round(1 - 1 / 8.5, 4))
    assert lines["packing"]["hours_lrihar"] is None and lines["packing"]["saved"] is None

    # --line: that line's posts only
    assert main(["evaluate", "-p", str(root), "--line", "packing", "--json", str(out), *RATES]) == 0
    doc = json.loads(out.read_text())
    assert [r["post"] for r in doc["cost"]["posts"]] == ["b1", "b2"] and doc["posts"] == ["b1", "b2"]
    assert [r["line"] for r in doc["cost"]["lines"]] == ["packing"]
    p = ["-p", str(root), *RATES]
    assert main(["evaluate", *p, "--post", "a2", "--gt", str(gt), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["detection"]["matched_images"] == FRAMES["a2"][0]
    row = doc["cost"]["posts"][0]
    assert len(doc["cost"]["posts"]) == 1 and row["post"] == "a2" and row["saved"] is not None
    html = tmp_path / "r.html"
    assert main(["report", *p, "-o", str(html), "--no-timing", "--line", "assembly"]) == 0
    assert "<title>" in (text := html.read_text()) and "assembly" in text


def test_run_reads_the_cameras_of_the_posts_selected(lines_project):
    from lrihar.project import Project
    from lrihar.runtime.session import RunOptions, sources_by_post

    project, base = Project.open(lines_project["root"]), lines_project["base"]
    every = sources_by_post(project, RunOptions())
    assert every == [(str(base / "frames" / "a1"), "a1"), (str(base / "frames" / "b1"), "b1")]
    assert sources_by_post(project, RunOptions(line="packing")) == [(str(base / "frames" / "b1"), "b1")]
    assert sources_by_post(project, RunOptions(sources=[str(base / "frames" / "b2")], line="packing")) == [
        (str(base / "frames" / "b2"), "b1")]  # given sources: the line's first post unless --post
    with pytest.raises(BadInputError, match="lines: assembly, packing"):
        sources_by_post(project, RunOptions(line="paint"))


def test_old_single_line_files_mean_what_they_did(tmp_path):
    from lrihar.classify.by_post import classify_posts
    from lrihar.project import Project, init_project

    cfg = load_project_config(init_project(tmp_path / "example"))  # the commented example file
    assert project_layout(cfg).pairs() == [("dishwasher", "post-01")] and cfg.lines == []
    old = {"line": "L", "posts": ["p1", "p2"], "classes": [{"name": "red"}, {"name": "green"}],
           "classify": {"encoder": "mean-colour", "templates": "tpl"},
           "procedures": {"p2": {"steps": [{"class": "red"}]}}, "run": {"sources": {"p2": ["cam.mp4"]}}}
    layout = project_layout(parse_project_config(old, tmp_path / "lrihar.yaml"))
    assert layout.pairs() == [("L", "p1"), ("L", "p2")] and layout.uniform
    assert layout.post("p2").cameras == ("cam.mp4",) and layout.post("p1").procedure is None
    assert layout.line_of(None) == "L"  # frames at no post are on the only line
    # one classify run labels every crop, frames at no post included, as before
    root = tmp_path / "old"
    _templates(root / "tpl", {"red": RED, "green": GREEN})
    (root / "lrihar.yaml").write_text(json.dumps(old))
    frames = tmp_path / "frames"
    draw_frames(frames / "x", 2)
    draw_frames(frames / "y", 3, seed=5)
    project = Project.open(root)
    from lrihar.annotate.pipeline import annotate

    annotate(project, [str(frames / "x")], detector=ColourBoxDetector())
    annotate(project, [str(frames / "y")], detector=ColourBoxDetector(), post="p1")
    summaries, left_out = classify_posts(project)
    assert len(summaries) == 1 and summaries[0].posts is None and left_out == 0
    assert summaries[0].counts == {"red": 3 + 4, "green": 0, "NG": 0}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["lines"][1]["posts"].append("a2"),
     "post 'a2' is in lines assembly and packing; post names must be unique across the project"),
    (lambda d: d["lines"][1]["posts"][1].update(procedure={"steps": [{"class": "crate"}, {"class": "red"}]}),
     "lines.packing.posts.b2.procedure: unknown class(es) red; this post's classes are crate"),
    (lambda d: d.update(posts=["p1"]), "`lines` replaces posts"),
    (lambda d: d.update(procedures={"a2": {"steps": [{"class": "red"}]}}), "`lines` replaces procedures"),
    (lambda d: d["lines"][0]["posts"].append({"name": "a3", "classes": [{"name": "NG"}]}),
     "'NG' is reserved for the rejection class"),
])
def test_bad_lines_sections_are_named(tmp_path, capsys, change, message):
    doc = two_line_file(tmp_path)
    change(doc)
    (tmp_path / "lrihar.yaml").write_text(json.dumps(doc))
    assert main(["status", "-p", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lrihar.yaml: invalid project file" in err and message in err


def test_calibrate_lambda_of_one_post_uses_its_templates_and_reviews(lines_project, tmp_path):
    from lrihar.review.edits import relabel, start_session

    root = lines_project["root"]
    assert main(["classify", "-p", str(root), "--no-progress", "--no-sheets"]) == 0
    store = _store(root)
    first = dict(store.db.execute("SELECT s.post, MIN(d.id) FROM detections d JOIN sources s ON"
                                  " s.id = d.source_id GROUP BY s.post").fetchall())
    session = start_session(store, "ana")
    relabel(store, [first["b1"]], "box", "ana", session)  # a person confirms a b1 crop
    relabel(store, [first["a1"]], "red", "ana", session)  # and an a1 crop
    out = tmp_path / "cal.json"

    def sweeps(post: str) -> list[str]:
        assert main(["calibrate-lambda", "-p", str(root), "--post", post, "--json", str(out)]) == 0
        return list(json.loads(out.read_text())["sweeps"])

    # b1's classes (box, tape) are nobody else's: its reviewed crop is swept with its templates
    assert sweeps("b1") == ["templates (leave-one-out)", "reviewed labels"]
    # a2 shares the class red with a1, but a1's reviewed crop is not a2's
    assert sweeps("a2") == ["templates (leave-one-out)"]
    assert main(["calibrate-lambda", "-p", str(root), "--post", "b9"]) == 2
