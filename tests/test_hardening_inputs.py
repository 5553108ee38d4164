"""Inputs that must not abort or hang a run: hostile names, YAML bombs, image bombs, 16-bit
images, two annotate runs at once, runs left 'running' by a killed process (issue 8)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import make_project, synthetic_frames, tiny_gd_project, write_video
from lrihar.annotate.pipeline import annotate
from lrihar.classify.templates import template_crops
from lrihar.cli import main
from lrihar.config import load_project_config, with_overrides
from lrihar.errors import BadInputError
from lrihar.lines import class_folders
from lrihar.project import Project
from lrihar.sources import read_frame, read_image
from test_annotate import assert_same_rows, frame_rows

# -- class names ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "problem"), [
    ("door\u202eopen", "U+202E"),                            # right-to-left override
    ("<img src=x onerror=alert(1)></img>", "path separator"),  # markup with a slash
    ("../../etc", "starts with a dot"),
    ("x\\..\\y", "path separator"),
])
def test_hostile_class_names_in_the_project_file_are_refused_naming_the_field(tmp_path, name, problem):
    make_project(tmp_path, classes=[{"name": "fine"}, {"name": name}])
    with pytest.raises(BadInputError) as err:
        load_project_config(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "lrihar.yaml") in message and "classes.1.name" in message and problem in message


def test_template_folder_names_are_class_names_and_hidden_folders_are_ignored(tmp_path):
    root = tmp_path / "templates"
    for folder in ("door_open", ".cache", ".ipynb_checkpoints"):
        (root / folder).mkdir(parents=True)
    cfg = load_project_config(make_project(tmp_path / "p"))
    assert list(class_folders(cfg, root)) == ["door_open"]  # no class named '.cache'

    (root / "sneaky\u202egnp.exe").mkdir()
    with pytest.raises(BadInputError) as err:
        class_folders(cfg, root)
    message = str(err.value)
    assert f"{root}: template folder" in message and "U+202E" in message
    assert "\u202e" not in message  # shown escaped, never as a live bidi control


# -- the project file's YAML -----------------------------------------------------------------

ALIAS_BOMB = "".join(
    [f'{chr(97)}: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n']
    + [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]\n" for i in range(1, 9)]
)


def test_a_yaml_alias_bomb_is_refused_in_well_under_a_second(tmp_path, capsys):
    (tmp_path / "lrihar.yaml").write_text(ALIAS_BOMB)
    started = time.perf_counter()
    assert main(["status", "-p", str(tmp_path)]) == 2
    assert time.perf_counter() - started < 1.0
    err = capsys.readouterr().err
    assert str(tmp_path / "lrihar.yaml") in err and "line 1" in err and "aliases" in err
    assert "Traceback" not in err


def test_duplicate_keys_are_refused_naming_key_and_line(tmp_path):
    (tmp_path / "lrihar.yaml").write_text("line: a\nsampling:\n  stride: 2\n  fps: 1\n  stride: 3\n")
    with pytest.raises(BadInputError) as err:
        load_project_config(tmp_path)
    message = str(err.value)
    assert "'stride' appears twice" in message and "first on line 3" in message and "line 5" in message


@pytest.mark.parametrize(("text", "field"), [
    ("sampling:\n  fps: .inf\n", "sampling.fps"),
    ("classify:\n  options: {pose_weight: .nan}\n", "classify.options"),
    ("detector:\n  options: {zoom_out: .inf}\n", "detector.options"),
])
def test_infinite_and_nan_numbers_are_refused(tmp_path, text, field):
    (tmp_path / "lrihar.yaml").write_text(text)
    with pytest.raises(BadInputError, match=field.replace(".", r"\.")):
        load_project_config(tmp_path)


def test_an_infinite_fps_on_the_command_line_is_refused(tmp_path):
    cfg = load_project_config(make_project(tmp_path))
    with pytest.raises(BadInputError, match=r"sampling\.fps.*finite"):
        with_overrides(cfg, "sampling", fps=float("inf"))


# -- images ---------------------------------------------------------------------------------


def bomb_png(path, width=20_000, height=20_000):
    """A valid 1-bit PNG that claims width × height pixels in about 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_in_a_folder_is_reported_and_the_rest_stored(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    frames = synthetic_frames(3)
    Image.fromarray(frames[0]).save(folder / "a.png")
    bomb_png(folder / "b_bomb.png")
    Image.fromarray(frames[2]).save(folder / "c.png")
    root = make_project(tmp_path / "p")
    code = main(["annotate", str(folder), "-p", str(root), "--no-progress",
                 "--json", str(tmp_path / "s.json")])
    assert code == 0  # the folder was read; one image in it was not (README: exit 1 = unreadable input)
    err = capsys.readouterr().err
    assert "b_bomb.png: image larger than the limit of 89,478,485 pixels" in err and "Traceback" not in err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_read"] == 2 and len(summary["errors"]) == 1 and not summary["failed_sources"]
    store = Project.open(root).store
    stored = [rec.name for _, _, rec in store.frames()]
    assert stored == [str(folder / "a.png"), str(folder / "c.png")]
    assert store.counts()["errors"] == 1


def test_the_pixel_limit_is_an_option(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(synthetic_frames(1)[0]).save(folder / "big.png")  # 160 × 120 = 19,200 pixels
    Image.new("RGB", (50, 50), (90, 60, 30)).save(folder / "small.png")
    root = make_project(tmp_path / "p")
    assert main(["annotate", str(folder), "-p", str(root), "--no-progress",
                 "--max-image-pixels", "10000"]) == 0
    assert "big.png: image larger than the limit of 10,000 pixels" in capsys.readouterr().err
    assert [rec.name for _, _, rec in Project.open(root).store.frames()] == [str(folder / "small.png")]
    assert main(["annotate", str(folder), "-p", str(root), "--no-progress",
                 "--max-image-pixels", "0"]) == 2  # must be ≥ 1


def test_a_bomb_read_again_or_used_as_template_is_bad_input_not_a_crash(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(BadInputError, match="decompression bomb"):
        read_frame(str(bomb), 0, 0.0, str(bomb))
    from lrihar.classify.templates import TemplateFile

    with pytest.raises(BadInputError, match=r"bomb\.png"):
        template_crops([TemplateFile("a", bomb, "0")], with_landmarks=False)


def test_deep_grey_images_are_scaled_to_8_bits_not_clipped_white(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, size=(24, 32), dtype=np.uint8)
    expected = np.repeat(grey[:, :, None], 3, axis=2)
    deep16 = grey.astype(np.uint16) * 257  # the 16-bit twin of the 8-bit picture
    Image.fromarray(deep16).save(tmp_path / "le.png")                                   # I;16
    Image.frombytes("I;16B", (32, 24), deep16.astype(">u2").tobytes()).save(tmp_path / "be.tif")
    Image.fromarray(deep16.astype(np.int32), "I").save(tmp_path / "i32.tif")            # I
    Image.fromarray(grey.astype(np.float32) / 255, "F").save(tmp_path / "f.tif")        # F in [0, 1]
    for name in ("le.png", "be.tif", "i32.tif"):
        assert np.array_equal(read_image(tmp_path / name), expected), name
    assert np.abs(read_image(tmp_path / "f.tif").astype(int) - expected).max() <= 1


def test_a_16_bit_png_is_detected_like_its_8_bit_twin(tmp_path, hands_dev):
    folder = tmp_path / "images"
    folder.mkdir()
    photo = hands_dev / "mmpose_hands" / "images" / "freihand__00017620.jpg"
    grey = Image.open(photo).convert("L")
    grey.save(folder / "a_8bit.png")
    twin = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    twin.save(folder / "b_16bit.png")
    assert Image.open(folder / "b_16bit.png").mode == "I;16"
    project = Project.open(make_project(tmp_path / "p"))  # the default offline detector
    summary = annotate(project, [str(folder)])
    assert summary.frames_read == 2 and not summary.errors
    boxes = {0: [], 1: []}
    for row in project.store.detections():
        boxes[row.frame_index].append(row.xyxy)
    assert len(boxes[0]) > 0
    assert len(boxes[1]) == len(boxes[0])
    assert np.allclose(sorted(boxes[1]), sorted(boxes[0]), atol=1e-3)


# -- two annotate runs at once ----------------------------------------------------------------


def test_annotate_refuses_to_run_while_another_holds_the_project(tmp_path, clip, capsys):
    root = make_project(tmp_path / "p")
    with Project.open(root).lock("annotate"):  # as another annotate would
        assert main(["annotate", str(clip), "-p", str(root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"another annotate is running on this project (pid {os.getpid()} on" in err
    assert "wait for it or stop it" in err and "Traceback" not in err
    assert Project.open(root).store.counts()["runs"] == 0  # refused before anything started


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, clip):
    root = make_project(tmp_path / "p")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lrihar.project import Project\n"
         f"with Project.open({str(root)!r}).lock('annotate'):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert "pid" in (root / "lrihar.lock").read_text()  # what the dead holder left behind
    assert main(["annotate", str(clip), "-p", str(root), "--no-progress"]) == 0


def _annotate_cmd(video, root):
    return [sys.executable, "-m", "lrihar.cli", "annotate", str(video), "-p", str(root),
            "--batch-size", "1", "--no-progress"]


@pytest.mark.slow
def test_two_annotate_runs_at_once_end_with_the_rows_of_one_run(tmp_path, tiny_grounding_dino):
    video = write_video(tmp_path / "clip.mp4", synthetic_frames(40))
    root = tiny_gd_project(tmp_path / "p", tiny_grounding_dino)
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    # Started together, both read an empty store and then write the same frames in the same order.
    procs = [subprocess.Popen(_annotate_cmd(video, root), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert "Traceback" not in err and "UNIQUE" not in err, err
        assert code == 0 or (code == 1 and "another annotate is running on this project (pid " in err), err
    assert 0 in [code for code, _ in results]

    clean = tiny_gd_project(tmp_path / "clean", tiny_grounding_dino)
    annotate(Project.open(clean), [str(video)])
    assert_same_rows(frame_rows(root / "lrihar.db"), frame_rows(clean / "lrihar.db"))


# -- runs left 'running' -----------------------------------------------------------------------


def _insert_run(db_path, pid, start):
    with sqlite3.connect(db_path) as db:
        return db.execute("INSERT INTO runs (command, started_at, config, versions, host, pid, pid_start)"
                          " VALUES ('annotate', 'then', '{}', '{}', ?, ?, ?)",
                          (socket.gethostname(), pid, start)).lastrowid


def test_a_run_whose_process_died_is_shown_interrupted_at_the_next_command(tmp_path, capsys):
    root = make_project(tmp_path / "p")
    store = Project.open(root).store
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _insert_run(store.path, dead.pid, None)
    alive = store.start_run("annotate", {}, {})  # this process: alive, left alone
    reused = _insert_run(store.path, os.getpid(), 12345)  # its pid now belongs to another process
    assert main(["status", "-p", str(root)]) == 0
    assert "interrupted" in capsys.readouterr().out
    statuses = {r["id"]: r["status"] for r in Project.open(root).store.runs()}
    assert statuses == {gone: "interrupted", alive: "running", reused: "interrupted"}
