"""``--engine ray`` on a local Ray cluster: the same store rows as the local engine, idempotent, a
lost worker's shard redone; a clear message without Ray."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_video
from detector_fixtures import ColourBoxDetector
from lrihar.annotate.pipeline import annotate
from lrihar.classify.pipeline import classify
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.project import Project
from ray_fixtures import CrashOnceDetector, red_box_frames

TESTS = Path(__file__).resolve().parent
# 24 frames per clip; shards of 10 frames cut the still run 8-13 at frame 10, so the motion gate
# drops frame 10 only if its shard was shown frame 9 first.
SHARD = 10
GATE = {"motion": True}


@pytest.fixture(scope="module")
def ray_cluster():
    """One small local cluster for the module; the engine joins it (and leaves it running)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'lrihar[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is an optional extra: pip install 'lrihar[ray]'")
    paths = os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])  # workers import the test detectors
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": paths, "RAY_USAGE_STATS_ENABLED": "0"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    base = tmp_path_factory.mktemp("clips")
    return [str(write_video(base / f"post{i}.mp4", red_box_frames(24, i, still=range(8, 14))))
            for i in range(2)]


def new_project(root: Path, **sections) -> Project:
    root.mkdir(parents=True)
    (root / "lrihar.yaml").write_text(json.dumps(sections))
    return Project.open(root)


def store_rows(project: Project) -> dict[str, list]:
    """Every table annotate and classify write, without run ids and timestamps."""
    db = sqlite3.connect(project.store.path)
    queries = {
        "sources": "SELECT id, uri, kind, post FROM sources ORDER BY id",
        "frames": "SELECT source_id, frame_index, timestamp, width, height, name, status FROM frames"
                  " ORDER BY 1, 2",
        "detections": "SELECT id, source_id, frame_index, x1, y1, x2, y2, score, text_score, label, backend,"
                      " box_threshold, text_threshold, handedness, landmarks, world_landmarks, rejected"
                      " FROM detections ORDER BY id",
        "errors": "SELECT source_uri, frame_index, message FROM errors ORDER BY id",
        "labels": "SELECT detection_id, label, auto_label, runner_up, encoder_key, lambda, provenance"
                  " FROM labels ORDER BY 1",
        "embeddings": "SELECT detection_id, encoder_key FROM detection_embeddings ORDER BY 1, 2",
    }
    out = {name: db.execute(sql).fetchall() for name, sql in queries.items()}
    out["vectors"] = [np.frombuffer(v, np.float32) for (v,) in db.execute(
        "SELECT vector FROM detection_embeddings ORDER BY detection_id, encoder_key")]
    db.close()
    return out


def assert_same_store(a: Project, b: Project) -> None:
    rows_a, rows_b = store_rows(a), store_rows(b)
    for table in ("sources", "frames", "detections", "errors", "labels", "embeddings"):
        assert rows_a[table] == rows_b[table], table
    assert len(rows_a["vectors"]) == len(rows_b["vectors"])
    for va, vb in zip(rows_a["vectors"], rows_b["vectors"], strict=True):
        np.testing.assert_allclose(va, vb, atol=1e-4)  # ONNX Runtime batches differ in the last digits


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, clips) -> Project:
    project = new_project(tmp_path_factory.mktemp("local") / "p", gate=GATE)
    annotate(project, clips, detector=ColourBoxDetector())
    return project


def ray_options(**kw):
    from lrihar.engines.ray_cluster import RayOptions

    return RayOptions(**{"workers": 2, "batch_size": 4, "shard_frames": SHARD} | kw)


def test_ray_annotate_stores_the_local_rows_and_a_second_run_adds_nothing(ray_cluster, clips, local_store,
                                                                         tmp_path):
    from lrihar.engines.ray_annotate import annotate_with_ray

    project = new_project(tmp_path / "p", gate=GATE)
    summary = annotate_with_ray(project, clips, ray_options(), detector_factory=ColourBoxDetector)
    local = local_store.store.runs()[-1]
    assert summary.frames_read == 48 and summary.frames_gated == json.loads(local["stats"])["frames_gated"]
    assert summary.frames_gated >= 10  # the still frames, across a shard boundary
    assert_same_store(project, local_store)
    assert summary.gate == json.loads(local["stats"])["gate"]

    again = annotate_with_ray(project, clips, ray_options(), detector_factory=ColourBoxDetector)
    assert (again.frames_resumed, again.boxes, again.frames_action) == (48, 0, 0)
    assert_same_store(project, local_store)


def test_ray_annotate_redoes_the_shard_of_a_worker_that_died(ray_cluster, clips, tmp_path):
    """keepalive makes every video one shard; the first detector call kills its actor's process."""
    from lrihar.engines.ray_annotate import annotate_with_ray

    gate = GATE | {"keepalive": 3}
    local = new_project(tmp_path / "local", gate=gate)
    annotate(local, clips, detector=ColourBoxDetector())
    marker = tmp_path / "crashed"
    project = new_project(tmp_path / "p", gate=gate)
    annotate_with_ray(project, clips, ray_options(), detector_factory=partial(CrashOnceDetector, str(marker)))
    assert marker.exists()  # a worker did die
    assert_same_store(project, local)
    assert project.store.runs()[-1]["status"] == "done"


def test_ray_classify_gives_the_local_labels_and_embeddings(ray_cluster, clips, tmp_path):
    from lrihar.engines.ray_classify import classify_with_ray

    templates = tmp_path / "templates"
    rng = np.random.default_rng(0)
    for cls, colour in (("red_part", (220, 40, 30)), ("grey_part", (60, 60, 60))):
        (templates / cls).mkdir(parents=True)
        for k in range(3):
            crop = np.clip(rng.normal(colour, 12, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(crop).save(templates / cls / f"t{k}.png")
    settings = dict(gate=GATE, classify={"encoder": "mobilenet-v2", "lambda": 0.2, "padding": 0.5})
    projects = [new_project(tmp_path / name, **settings) for name in ("local", "ray")]
    for project in projects:  # the same boxes, stored by the local engine
        annotate(project, clips, detector=ColourBoxDetector())
    local = classify(projects[0], templates=templates)
    remote = classify_with_ray(projects[1], ray_options(batch_size=8), templates=templates)
    assert remote.embedded == local.embedded == projects[0].store.counts()["detections"] > 0
    assert remote.counts == local.counts and sum(local.counts.values()) == local.embedded
    assert_same_store(projects[1], projects[0])
    assert classify_with_ray(projects[1], ray_options(), templates=templates).embedded == 0


def test_cli_annotate_with_ray_runs_the_project_detector(ray_cluster, clips, tmp_path):
    root = tmp_path / "p"
    new_project(root)  # the default detector: MediaPipe Hands, built in the actor
    assert main(["annotate", clips[0], "-p", str(root), "--engine", "ray", "--ray-workers", "1",
                 "--ray-batch-size", "8", "--no-progress"]) == 0
    counts = Project.open(root).store.counts()
    assert counts["frames"] == 24
    run = Project.open(root).store.runs()[-1]
    assert json.loads(run["config"])["detector"]["backend"] == "mediapipe-hands"


def test_engine_ray_without_ray_installed_says_how_to_install(monkeypatch, clips, tmp_path, capsys):
    root = tmp_path / "p"
    new_project(root)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    from lrihar.engines.ray_annotate import annotate_with_ray
    from lrihar.engines.ray_cluster import RayOptions

    with pytest.raises(BadInputError, match=r"pip install 'lrihar\[ray\]'"):
        annotate_with_ray(Project.open(root), clips, RayOptions())
    assert main(["classify", "-p", str(root), "--engine", "ray"]) == 2
    assert "pip install 'lrihar[ray]'" in capsys.readouterr().err
    assert Project.open(root).store.counts()["runs"] == 0  # refused before anything ran
    assert main(["annotate", clips[0], "-p", str(root), "--ray-workers", "2"]) == 2  # local engine
