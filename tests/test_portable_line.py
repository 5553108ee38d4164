"""A whole line's trained models in one folder: `lrihar models pack -p` carries the project's
exported detector (and student), `--models-dir` on any command finds them at the plant."""

from __future__ import annotations

import os

from conftest import make_project
from lrihar.artifacts import MODELS_DIR_ENV as ENV
from lrihar.cli import main
from lrihar.project import Project


def test_pack_carries_the_trained_detector_and_run_finds_it_with_models_dir(tiny_yolo, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.delenv(ENV, raising=False)
    out = tmp_path / "carry"
    assert main(["models", "pack", "-p", str(tiny_yolo["project"].root), "-o", str(out)]) == 0
    packed = list((out / "line__line-1" / "detector").glob("*.onnx"))
    assert len(packed) == 1 and packed[0].read_bytes() == tiny_yolo["onnx"].read_bytes()
    assert main(["models", "list", str(out)]) == 0
    assert "line:line-1" in capsys.readouterr().out

    # At the plant: a project with no trained model of its own, same line.
    plant = Project.open(make_project(tmp_path / "plant", line="line-1"))
    from lrihar.runtime.session import resolve_detector

    assert resolve_detector(plant, "auto").name != "yolo"  # nothing packed in view yet
    monkeypatch.setattr(os, "environ", os.environ.copy())
    assert main(["status", "-p", str(plant.root), "--models-dir", str(out)]) == 0  # taken by any command
    assert os.environ[ENV] == str(out.resolve())
    detector = resolve_detector(plant, "auto")
    assert detector.name == "yolo" and detector.describe()["sha256"] == tiny_yolo["export"].sha256


def test_models_dir_must_be_a_folder(tmp_path, capsys):
    assert main(["status", "-p", str(tmp_path), "--models-dir", str(tmp_path / "nope")]) == 2
    assert "--models-dir" in capsys.readouterr().err


def test_pack_without_anything_trained_says_what_to_do(tmp_path, capsys):
    root = make_project(tmp_path / "p")
    assert main(["models", "pack", "-p", str(root), "-o", str(tmp_path / "o")]) == 2
    assert "export-runtime" in capsys.readouterr().err


def _packed(tiny_yolo, out):
    assert main(["models", "pack", "-p", str(tiny_yolo["project"].root), "-o", str(out)]) == 0
    return out / "line__line-1"


def test_a_tampered_or_unlisted_packed_model_is_refused(tiny_yolo, tmp_path, monkeypatch):
    import pytest

    from lrihar.artifacts import packed_line_model
    from lrihar.errors import ModelLoadError

    pack = _packed(tiny_yolo, tmp_path / "carry")
    [onnx] = (pack / "detector").glob("*.onnx")
    assert packed_line_model("line-1", "detector", tmp_path / "carry") == onnx
    # A symlinked ONNX the manifest does not list, sorting after the real one, is never picked.
    (pack / "detector" / "zz-other.onnx").symlink_to(tiny_yolo["onnx"])
    assert packed_line_model("line-1", "detector", tmp_path / "carry") == onnx
    data = bytearray(onnx.read_bytes())
    data[-50] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        packed_line_model("line-1", "detector", tmp_path / "carry")


def test_models_list_flags_entries_outside_the_pack_and_a_corrupt_manifest(tiny_yolo, tmp_path, capsys):
    import json

    out = tmp_path / "carry"
    pack = _packed(tiny_yolo, out)
    (tmp_path / "secret.txt").write_text("not the pack's")
    manifest = pack / "lrihar-model.json"
    doc = json.loads(manifest.read_text())
    doc["files"]["../../secret.txt"] = "0" * 64
    manifest.write_text(json.dumps(doc))
    assert main(["models", "list", str(out)]) == 1  # a changed pack
    assert "CHANGED: ../../secret.txt" in capsys.readouterr().out  # listed as changed, never read
    manifest.write_text("{not json")
    assert main(["models", "list", str(out)]) == 2
    assert "lrihar-model.json" in capsys.readouterr().err


def test_pack_writes_nothing_through_a_planted_link(tiny_yolo, tmp_path):
    out, elsewhere = tmp_path / "carry", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "line__line-1.partial").symlink_to(elsewhere)
    (out / "line__line-1").symlink_to(elsewhere)
    pack = _packed(tiny_yolo, out)
    assert not list(elsewhere.iterdir()) and not pack.is_symlink() and (pack / "detector").is_dir()
