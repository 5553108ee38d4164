"""The CLI surface: --help everywhere, init, status, detectors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import tiny_gd_project
from lrihar.cli import app, main

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_console_script_runs_and_import_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, lrihar; print(sorted(m for m in "
                          "('torch', 'transformers', 'mediapipe', 'supervision', 'cv2', 'av') "
                          "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_out = subprocess.run([sys.executable, "-m", "lrihar.cli", "--help"], capture_output=True,
                              text=True, check=True)
    assert "annotate" in help_out.stdout


def test_init_then_status(tmp_path, capsys, clip, tiny_grounding_dino):
    assert main(["init", str(tmp_path / "new")]) == 0
    assert main(["init", str(tmp_path / "new")]) == 2  # refuses to overwrite
    root = tiny_gd_project(tmp_path / "p", tiny_grounding_dino)
    assert main(["annotate", str(clip), "-p", str(root), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", "-p", str(root)]) == 0
    out = capsys.readouterr().out
    assert "frames" in out and "annotate" in out and "done" in out


def test_detectors_lists_backends(capsys):
    assert main(["detectors"]) == 0
    listed = capsys.readouterr().out.split()
    builtin = ["grounding-dino", "mediapipe-hands", "owlv2", "yolo"]
    # Sorted; tests may have registered their own tiny detectors (e.g. hue-blobs) beside these.
    assert listed == sorted(listed) and [n for n in listed if n in builtin] == builtin


def test_unknown_command_and_missing_project(tmp_path, capsys):
    assert main(["frobnicate"]) == 2
    assert main(["status", "-p", str(tmp_path / "nowhere")]) == 2
    assert "lrihar init" in capsys.readouterr().err


def test_command_line_overrides_are_validated(tmp_path, clip, capsys):
    assert main(["init", str(tmp_path / "p")]) == 0
    assert main(["annotate", str(clip), "-p", str(tmp_path / "p"), "--box-threshold", "3"]) == 2
    assert "detector.box_threshold" in capsys.readouterr().err
