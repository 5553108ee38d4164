"""Classes from the template folders: a fresh project declares none, the sub-folders of the
templates root are the classes, and classify, calibrate-lambda, review and export agree."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import CLASSES, make_project
from lrihar.cli import main
from lrihar.project import Project


def test_a_fresh_project_says_where_the_class_folders_go(tmp_path, capsys):
    root = tmp_path / "p"
    assert main(["init", str(root)]) == 0
    assert "templates" in capsys.readouterr().out
    assert Project.open(root).classes == []
    assert main(["classify", "-p", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{root.resolve() / 'templates'}: no class folders" in err and "Traceback" not in err


def test_classes_come_from_the_template_folders(gloves_project, tmp_path):
    from fastapi.testclient import TestClient

    from lrihar.dataset.export import export_dataset
    from lrihar.evaluate.project_eval import project_classes
    from lrihar.review.server import create_app

    root = gloves_project.root
    # the fixture's templates are root/templates/<class>; the project file now names no class
    (root / "lrihar.yaml").write_text(json.dumps({"classify": {"templates": "templates", "lambda": 0.6}}))
    folders = sorted(CLASSES)  # ["bare_hand", "gloved_hand"]: folder names, sorted
    assert Project.open(root).classes == folders

    # the review page offers the folder classes before anything is classified
    client = TestClient(create_app(root), base_url="http://127.0.0.1:8765")
    assert client.get("/api/meta").json()["classes"] == folders
    item = client.get("/api/crops", params={"limit": 1}).json()["items"][0]
    r = client.post("/api/relabel", json={"ids": [item["id"]], "label": "gloved_hand", "reviewer": "ana",
                                          "seen": {str(item["id"]): item["version"]}})
    assert r.status_code == 200, r.text

    out = tmp_path / "classify.json"
    assert main(["classify", "-p", str(root), "--no-progress", "--no-sheets", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["templates"] == {"bare_hand": 10, "gloved_hand": 10}
    assert list(summary["counts"])[:3] == [*folders, "NG"]
    assert summary["counts"]["bare_hand"] > 0 and summary["counts"]["gloved_hand"] > 0
    labels = {row["label"] for row in Project.open(root).store.labels().values()}
    assert labels <= {*folders, "NG"}
    assert main(["calibrate-lambda", "-p", str(root)]) == 0
    exported = export_dataset(Project.open(root), tmp_path / "set", "imagefolder")
    assert exported.classes == folders

    # classified with --templates elsewhere (the file names neither): the stored labels are the classes
    (root / "lrihar.yaml").write_text("{}")
    assert Project.open(root).classes == folders
    # a class list in the file wins for review; evaluation still counts every label stored
    (root / "lrihar.yaml").write_text(json.dumps({"classes": [{"name": "gloved_hand"}]}))
    assert Project.open(root).classes == ["gloved_hand"]
    assert project_classes(Project.open(root)) == ["gloved_hand", "bare_hand"]


@pytest.mark.parametrize(
    ("folder", "message"),
    [("b", "class 'b' has no template images"),
     ("NG", "'NG' is reserved for the rejection class"),
     ("x" * 70, "template folder"),
     ],
)
def test_an_empty_or_invalid_class_folder_exits_2(tmp_path, capsys, folder, message):
    templates = tmp_path / "p" / "templates"
    (templates / "a").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 150, 120)).save(templates / "a" / "t.png")
    (templates / folder).mkdir()  # empty: no images, or a name that cannot be a class
    root = make_project(tmp_path / "p", classify={"templates": "templates"})
    for command in ("classify", "calibrate-lambda"):
        code = main([command, "-p", str(root), *(["--no-progress"] if command == "classify" else [])])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (command, err)
