"""Models load only as recorded: a crafted detector checkpoint runs no code (export-runtime and
train-detector --resume refuse it, exit 2, naming the file and the foreign global) while lrihar's
own checkpoints still load; an exported ONNX changed since its export is refused; an export cut
short never leaves a file a detector could be loaded from."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from lrihar.checkpoints import check_checkpoint, trusted_global
from lrihar.cli import main
from lrihar.errors import BadInputError


class _Payload:
    """Unpickling this calls ``os.system`` with a command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(path: Path, marker: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "epoch": 0}, path)
    return path


def _copy_project(tiny, root: Path, export: bool = False):
    """A copy of the tiny trained project (its store through SQLite's backup, WAL included)."""
    from lrihar.project import Project

    ignore = ["lrihar.db*"] + ([] if export else ["export"])
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns(*ignore))
    with sqlite3.connect(tiny.root / "lrihar.db") as src, sqlite3.connect(root / "lrihar.db") as dst:
        src.backup(dst)
    return Project.open(root)


@pytest.fixture
def crafted_run(tiny_yolo, tmp_path):
    """A copy of the tiny trained project whose run's checkpoints are replaced by a payload."""
    project = _copy_project(tiny_yolo["project"], tmp_path / "project")
    run = project.root / "models" / "detector" / "tiny"
    marker = tmp_path / "payload-ran"
    for name in ("best.pt", "last.pt"):
        _crafted(run / "weights" / name, marker)
    return project, run, marker


def test_export_refuses_a_crafted_checkpoint_and_runs_nothing(crafted_run, capsys):
    project, run, marker = crafted_run
    code = main(["export-runtime", "-p", str(project.root), "--detector", "--run", "tiny",
                 "--imgsz", "64"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert str(run / "weights" / "best.pt") in err and "system" in err
    assert not (run / "export").exists()  # nothing written


def test_resume_refuses_a_crafted_checkpoint_and_runs_nothing(crafted_run, capsys):
    from lrihar.artifacts import read_record, write_record

    project, run, marker = crafted_run
    record = read_record(run)
    record["summary"]["status"] = "interrupted"  # so that --resume picks it
    write_record(run, record)
    code = main(["train-detector", "-p", str(project.root), "--resume", "--name", "tiny"])
    assert code == 2 and not marker.exists()
    assert "last.pt" in capsys.readouterr().err


def test_lrihar_and_ultralytics_checkpoints_pass(tiny_yolo):
    run = tiny_yolo["project"].root / "models" / "detector" / "tiny" / "weights"
    for name in ("best.pt", "last.pt"):
        check_checkpoint(run / name)  # raises if refused


def test_a_pickle_that_is_no_checkpoint_is_refused(tmp_path):
    import pickle

    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BadInputError, match="not a readable torch checkpoint"):
        check_checkpoint(legacy)


@pytest.mark.parametrize("name, trusted", [
    ("torch.nn.modules.conv.Conv2d", True),
    ("ultralytics.nn.tasks.DetectionModel", True),
    ("torchvision.models.mobilenetv2.InvertedResidual", True),
    ("collections.OrderedDict", True),
    ("os.system", False),
    ("posix.system", False),
    ("builtins.eval", False),
    ("builtins.getattr", False),
    ("torch.load", False),  # a function, even in torch
    ("torch.hub.load", False),
    ("ultralytics.models.yolo.model.YOLO", False),  # a layer that loads another file
    ("torch.jit._script.RecursiveScriptModule", False),
    ("torch.utils.data.dataloader.DataLoader", False),
    ("somepackage.Evil", False),
])
def test_only_layers_of_trusted_packages_are_allowed(name, trusted):
    assert trusted_global(name) is trusted


def test_an_export_changed_since_it_was_recorded_is_refused(tiny_yolo, tmp_path):
    from lrihar.errors import ModelLoadError
    from lrihar.models.detectors import create_detector

    project = _copy_project(tiny_yolo["project"], tmp_path / "project", export=True)
    onnx = project.root / "models/detector/tiny/export/detector-64.onnx"
    run = project.root / "models/detector/tiny"
    assert create_detector("yolo", model=str(run)).path == onnx  # intact: loads
    data = bytearray(onnx.read_bytes())
    data[-100] ^= 0xFF  # one byte of the weights
    onnx.write_bytes(bytes(data))
    for model in (run, onnx):
        with pytest.raises(ModelLoadError, match="SHA-256"):
            create_detector("yolo", model=str(model))


def test_an_onnx_file_without_its_record_is_never_picked(tiny_yolo, tmp_path):
    from lrihar.models.detectors import create_detector

    project = _copy_project(tiny_yolo["project"], tmp_path / "project", export=True)
    recorded = project.root / "models/detector/tiny/export/detector-64.onnx"
    stray = recorded.with_name("detector-96.onnx")
    stray.write_bytes(recorded.read_bytes()[:1000])  # what a full disk left, newer than the export
    assert create_detector("yolo", model=str(recorded.parent.parent)).path == recorded


def test_an_export_cut_short_leaves_no_model_file(tiny_yolo, tmp_path, monkeypatch):
    import lrihar.deploy.onnx_detector as onnx_detector

    project = _copy_project(tiny_yolo["project"], tmp_path / "project")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_detector, "parity_check", disk_full)
    with pytest.raises(OSError):
        onnx_detector.export_detector(project, "tiny", imgsz=64, parity_frames=2)
    export = project.root / "models/detector/tiny/export"
    assert not list(export.rglob("*.onnx")) and not list(export.glob(".partial-*"))
