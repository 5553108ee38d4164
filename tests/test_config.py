"""The project file: the example validates, bad files give one clear message and exit 2."""

from __future__ import annotations

import pytest

from lrihar.cli import main
from lrihar.config import EXAMPLE_PROJECT, load_project_config, with_overrides
from lrihar.errors import BadInputError
from lrihar.project import init_project


def test_init_writes_an_example_that_validates(tmp_path):
    path = init_project(tmp_path / "proj")
    assert path.read_text() == EXAMPLE_PROJECT
    cfg = load_project_config(tmp_path / "proj")
    assert cfg.detector.backend == "mediapipe-hands"
    # no example classes whose templates do not exist: the template folders will be the classes
    assert cfg.classes == []
    assert "#     - name: door_open" in EXAMPLE_PROJECT  # kept as a commented example
    # the templates folder is resolved against the project folder, and init creates it
    assert cfg.classify.templates == tmp_path / "proj" / "templates"
    assert cfg.classify.templates.is_dir() and not any(cfg.classify.templates.iterdir())


def test_init_refuses_to_overwrite(tmp_path):
    init_project(tmp_path)
    with pytest.raises(BadInputError, match="already exists"):
        init_project(tmp_path)
    init_project(tmp_path, force=True)


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("detector:\n  box_threshold: 1.5\n", "detector.box_threshold", "less than or equal to 1"),
        ("detector:\n  batch_size: 0\n", "detector.batch_size", "greater than or equal to 1"),
        ("detector:\n  device: gpu\n", "detector.device", "'cpu', 'cuda' or 'cuda:N'"),
        ("detectr:\n  backend: x\n", "detectr", "Extra inputs are not permitted"),
        ("classes:\n  - name: a\n  - name: a\n", "(top level)", "repeated: a"),
        ("classes:\n  - name: NG\n", "(top level)", "'NG' is reserved"),
        ("sampling:\n  stride: two\n", "sampling.stride", "valid integer"),
    ],
)
def test_bad_fields_are_named(tmp_path, text, field, hint):
    (tmp_path / "lrihar.yaml").write_text(text)
    with pytest.raises(BadInputError) as err:
        load_project_config(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "lrihar.yaml") in message
    assert field in message and hint in message


def test_not_yaml_and_not_a_mapping(tmp_path):
    (tmp_path / "lrihar.yaml").write_text("detector: [unclosed\n")
    with pytest.raises(BadInputError, match="not valid YAML"):
        load_project_config(tmp_path)
    (tmp_path / "lrihar.yaml").write_text("- a list\n")
    with pytest.raises(BadInputError, match="YAML mapping"):
        load_project_config(tmp_path)


def test_missing_project_file_says_how_to_create_one(tmp_path):
    with pytest.raises(BadInputError, match="lrihar init"):
        load_project_config(tmp_path)


def test_overrides_are_validated_too(tmp_path):
    cfg = load_project_config(init_project(tmp_path))
    assert with_overrides(cfg, "detector", box_threshold=0.2, model=None).detector.box_threshold == 0.2
    with pytest.raises(BadInputError, match=r"detector\.box_threshold"):
        with_overrides(cfg, "detector", box_threshold=2.0)


def test_cli_bad_project_file_exits_2_without_traceback(tmp_path, capsys, clip):
    (tmp_path / "lrihar.yaml").write_text("detector:\n  box_threshold: 7\n")
    assert main(["annotate", str(clip), "-p", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "detector.box_threshold" in err and "Traceback" not in err
    assert not (tmp_path / "lrihar.db").exists()  # nothing was started


def test_the_readme_project_file_example_is_valid(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "lrihar.yaml").write_text(block)
    cfg = load_project_config(tmp_path)
    assert cfg.classes[1].lambda_ == 0.7 and cfg.gate.motion and cfg.classify.encoder == "mobilenet-v2"
