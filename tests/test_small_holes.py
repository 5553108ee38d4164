"""Small holes a careless plant network or a curious user finds: formulas in CSV cells, an MQTT
topic prefix no broker accepts."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from pydantic import ValidationError

from lrihar.config import MqttConfig
from lrihar.csv_cells import safe_cell
from lrihar.events import Gap
from lrihar.runtime.sinks.files import CsvSink
from test_runtime_sinks import event


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\t=x", "\r=x",
                                  '=HYPERLINK("http://evil","x")'])
def test_a_text_that_would_be_a_formula_is_written_as_text(text):
    assert safe_cell(text) == "'" + text
    assert safe_cell("pick") == "pick" and safe_cell(-1.5) == -1.5 and safe_cell(None) is None


def test_the_csv_sinks_escape_labels_and_sources(tmp_path):
    sink = CsvSink(tmp_path)
    sink.emit(dataclasses.replace(event(1, state="end", end=3.0), label="=cmd|' /C calc'!A0"))
    sink.emit(Gap(id=1, source="@cam", post="post-1", start=4.0, end=6.0, reason="-dropped"))
    sink.close()
    with (tmp_path / "events.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["label"] == "'=cmd|' /C calc'!A0" and row["end"] == "3.0"
    with (tmp_path / "gaps.csv").open(newline="") as f:
        (gap,) = list(csv.DictReader(f))
    assert (gap["source"], gap["reason"]) == ("'@cam", "'-dropped")


def test_the_detections_csv_escapes_labels(tmp_path):
    import io

    from detector_fixtures import annotated_project, draw_frames
    from lrihar.dump import dump_detections
    from lrihar.review.edits import relabel

    draw_frames(tmp_path / "frames", 2)
    project = annotated_project(tmp_path / "p", tmp_path / "frames", classes=[{"name": "=evil"}])
    row = next(project.store.detections())
    relabel(project.store, [row.id], "=evil", "ana")
    buf = io.StringIO()
    dump_detections(project.store, "csv", buf)
    labels = [r["action"] for r in csv.DictReader(io.StringIO(buf.getvalue()))]
    assert "'=evil" in labels and "=evil" not in labels


@pytest.mark.parametrize("prefix", ["lrihar/#", "line+1", "/lrihar", "lrihar/", "$SYS/x"])
def test_an_mqtt_prefix_no_broker_accepts_is_refused_when_read(prefix):
    with pytest.raises(ValidationError, match="not a topic to publish to"):
        MqttConfig(topic_prefix=prefix)


def test_an_mqtt_prefix_with_levels_is_fine():
    assert MqttConfig(topic_prefix="plant-2/line-1").topic_prefix == "plant-2/line-1"


def test_run_on_an_unreadable_video_is_bad_input_and_the_others_still_run(tmp_path, capsys):
    from conftest import make_project
    from lrihar.cli import main
    from lrihar.project import Project
    from runtime_fixtures import scripted_clip
    from test_run_line import RUN

    good = scripted_clip(tmp_path / "good.mp4", [("pick", 2, 9)], 20)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 400)
    root = make_project(tmp_path / "p", posts=["post-1"], run=RUN)
    assert main(["run", str(good), str(bad), "-p", str(root), "--post", "post-1"]) == 2
    err = capsys.readouterr().err
    assert "bad.mp4: no frame could be read" in err and "good.mp4" not in err
    store = Project.open(root).store
    assert [e.label for e in store.events()] == ["pick"]  # the readable file ran
    assert store.runs()[-1]["status"] == "failed"


def test_ids_a_killed_run_may_have_sent_are_never_handed_out_again(tmp_path):
    import threading

    from lrihar.runtime.ids import IdCounter
    from lrihar.store import Store

    store = Store(tmp_path / "lrihar.db")
    ids = IdCounter(store.last_runtime_ids(), reserve=store.reserve_runtime_ids, block=4)
    sent = [ids.next("event") for _ in range(6)]  # sent to JSONL / MQTT; the store never got them
    gap = []
    worker = threading.Thread(target=lambda: gap.append(ids.next("gap")))  # a capture thread
    worker.start()
    worker.join()
    # kill -9 here: nothing was stored. The next run starts above every id handed out.
    again = IdCounter(Store(tmp_path / "lrihar.db").last_runtime_ids())
    assert sent == [1, 2, 3, 4, 5, 6] and again.next("event") > 6 and again.next("gap") > gap[0]


def test_an_event_a_crash_left_open_ends_on_the_other_sinks_too(tmp_path):
    import json

    from conftest import make_project
    from lrihar.cli import main
    from lrihar.project import Project
    from runtime_fixtures import scripted_clip
    from test_run_line import RUN

    clip = scripted_clip(tmp_path / "c.mp4", [("pick", 2, 9)], 20)
    root = make_project(tmp_path / "p", posts=["post-1"], run=RUN)
    assert main(["run", str(clip), "-p", str(root), "--post", "post-1"]) == 0
    store = Project.open(root).store
    [left] = store.events()
    store.db.execute("UPDATE events SET state = 'update' WHERE id = ?", (left.id,))  # as a crash leaves it
    store.db.commit()
    jsonl = tmp_path / "events.jsonl"
    assert main(["run", str(clip), "-p", str(root), "--post", "post-1", "--jsonl", str(jsonl)]) == 0
    sent = [json.loads(line) for line in jsonl.read_text().splitlines()]
    first = sent[0]
    assert (first["type"], first["id"], first["state"]) == ("event", left.id, "end")


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES"])
def test_a_full_or_read_only_disk_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys, code):
    import errno

    import lrihar.dump
    from conftest import make_project
    from lrihar.cli import main

    root = make_project(tmp_path / "p")

    def full(*args, **kwargs):
        raise OSError(getattr(errno, code), "No space left on device", str(root / "models" / "x.onnx"))

    monkeypatch.setattr(lrihar.dump, "dump_detections", full)
    assert main(["detections", "-p", str(root), "-o", str(tmp_path / "d.csv"), "-f", "csv"]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "x.onnx" in err and "Traceback" not in err


def test_other_os_errors_keep_their_traceback(tmp_path, monkeypatch):
    import errno

    import lrihar.dump
    from conftest import make_project
    from lrihar.cli import main

    root = make_project(tmp_path / "p")

    def broken(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(lrihar.dump, "dump_detections", broken)
    with pytest.raises(OSError):
        main(["detections", "-p", str(root), "-f", "csv"])


def test_the_training_counts_leave_out_the_images_ultralytics_cannot_read(tmp_path):
    import numpy as np
    import yaml
    from PIL import Image

    from lrihar.train.detector import check_yolo_data

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / split / f"{k}.jpg")
            (tmp_path / "labels" / split / f"{k}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "images" / "train" / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path), "train": "images/train", "val": "images/val",
                                    "names": {0: "hand"}}))
    info = check_yolo_data(data)
    assert info["_images"] == {"train": 2, "val": 3} and info["_boxes"] == {"train": 2, "val": 3}
    assert info["_unreadable"] == {"train": [str(tmp_path / "images" / "train" / "1.jpg")]}
