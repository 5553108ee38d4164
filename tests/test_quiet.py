"""Third-party log noise stays off the terminal unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import HANDS_DEV
from lrihar.project import init_project
from lrihar.quiet import keep_line, verbose_requested

NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "WARNING: All log messages before absl")


@pytest.mark.parametrize(("line", "kept"), [
    (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", False),
    (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", False),
    (b"W0000 00:00:1795678575.850667     994 inference_feedback_manager.cc:114] Feedback manager", False),
    (b"I1126 07:15:01.123456  12 landmark_projection_calculator.cc:186] Using NORM_RECT", False),
    (b"error: tests/x.mp4: cannot open", True),
    (b"Traceback (most recent call last):", True),
    (b"W0000 is not a log line", True),
    (b"", True),
])
def test_keep_line(line, kept):
    assert keep_line(line) is kept


@pytest.mark.parametrize(("argv", "env", "verbose"), [
    (["annotate", "x", "-p", "p"], "", False),
    (["--verbose", "annotate", "x"], "", True),
    (["annotate", "x", "--verbose"], "", False),  # a global option: before the command
    (["annotate", "x"], "1", True),
    (["annotate", "x"], "no", False),
])
def test_verbose_requested(monkeypatch, argv, env, verbose):
    monkeypatch.setenv("LRIHAR_VERBOSE", env)
    assert verbose_requested(argv) is verbose


@pytest.mark.skipif(not (HANDS_DEV / "mmpose_hands").is_dir(), reason="needs ../shared/data/hands-dev")
def test_annotate_prints_no_native_log_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LRIHAR_VERBOSE"}
    images = HANDS_DEV / "mmpose_hands" / "images"

    def annotate(*extra: str) -> subprocess.CompletedProcess:
        project = tmp_path / f"p{len(extra)}"
        init_project(project)
        return subprocess.run([sys.executable, "-m", "lrihar.cli", *extra, "annotate", str(images),
                               "-p", str(project)], env=env, capture_output=True, text=True, timeout=300)

    quiet = annotate()
    assert quiet.returncode == 0, quiet.stderr
    assert "frames read" in quiet.stdout  # lrihar's own summary still shows
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    assert ".cc:" not in quiet.stderr
    loud = annotate("--verbose")  # the same run shows them again: the check above can fail
    assert loud.returncode == 0, loud.stderr
    assert any(n in loud.stderr for n in NOISE), loud.stderr
