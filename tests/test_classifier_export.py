"""Exported classifiers: ONNX fp32 / INT8 with parity and hashes, the ONNX Runtime backend,
``classify --classifier`` (provenance 'model'), and the store's schema-6 upgrade."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch

from classifier_fixtures import TOY_CLASSES, save_tiny_vit, toy_project
from lrihar.cli import main
from lrihar.crops import iter_crops
from lrihar.deploy.onnx_classifier import export_classifier, parity
from lrihar.errors import BadInputError
from lrihar.models.classifiers import OnnxClassifier
from lrihar.models.classifiers.preprocess import to_pixels
from lrihar.paths import sha256_of
from lrihar.project import Project
from lrihar.store import SCHEMA_VERSION, FrameRecord, Store
from lrihar.train.classifier_models import load_classifier
from lrihar.train.finetune import FinetuneConfig, finetune

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A toy project with a tiny-ViT teacher run ``vit`` (LoRA, 2 epochs) and a ResNet-18 run ``cnn``."""
    tmp = tmp_path_factory.mktemp("export")
    vit = save_tiny_vit(tmp / "tiny-vit")
    root = toy_project(tmp / "p", per_class=6, unlabelled=3)
    project = Project.open(root)
    finetune(project, FinetuneConfig(backbone=str(vit), epochs=2, batch=8, lr=1e-2), name="vit",
             show_progress=False)
    finetune(project, FinetuneConfig(backbone="resnet18", image_size=32, epochs=1, batch=8), name="cnn",
             show_progress=False)
    return root


def test_a_transformer_exports_to_fp32_and_int8_with_parity_and_hashes(trained):
    project = Project.open(trained)
    s = export_classifier(project, "vit")
    fp32, int8 = s.files
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert fp32.parity.ok and fp32.parity.top1_agreement == 1.0 and fp32.parity.max_abs_diff < 1e-4
    assert int8.parity.crops == fp32.parity.crops > 0  # reported either way
    assert 0 <= int8.parity.top1_agreement <= 1 and int8.parity.accuracy_drop == pytest.approx(
        int8.parity.accuracy_torch - int8.parity.accuracy_onnx)
    for f in s.files:
        assert sha256_of(Path(f.path)) == f.sha256 and Path(f.path).stat().st_size == f.bytes
    record = json.loads(Path(s.record).read_text())
    assert [f["sha256"] for f in record["files"]] == [fp32.sha256, int8.sha256]
    assert Path(record["deployed"]).name == Path(s.deployed).name
    stats = project.store.db.execute("SELECT status, stats FROM runs WHERE command='export-runtime'"
                                     " ORDER BY id DESC").fetchone()
    assert stats[0] == "done" and fp32.sha256 in stats[1]


def test_the_onnx_runtime_backend_matches_pytorch_on_real_crops(trained):
    export_classifier(Project.open(trained), "vit")
    model = load_classifier(trained / "models" / "classifier" / "vit")
    onnx = OnnxClassifier(trained / "models/classifier/vit/export/classifier-32.onnx", batch_size=4)
    crops = [img for _, img in iter_crops(Project.open(trained).store)]
    assert onnx.classes == list(TOY_CLASSES) and onnx.input_size == 32 and len(crops) == 21
    with torch.no_grad():
        expected = model(torch.from_numpy(to_pixels(crops, 32, model.spec.mean, model.spec.std))).numpy()
    got = onnx.logits(crops)  # 6 batches of 4 (the last one short)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    result = onnx.classify(crops)
    assert (result.label == expected.argmax(1)).all()
    assert np.allclose(result.probabilities.sum(1), 1) and (result.margin >= 0).all()


def test_parity_counts_near_ties_as_agreement():
    torch_logits = np.array([[1.0, 0.9995, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    onnx_logits = np.array([[0.9990, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.0, 0.0]])
    p = parity(torch_logits, onnx_logits, np.array([0, 0, 1]))
    assert (p.near_ties, p.disagreements) == (1, 1)
    assert p.top1_agreement == pytest.approx(1 / 3, abs=1e-4)
    assert (p.accuracy_torch, p.accuracy_onnx) == (1.0, pytest.approx(1 / 3, abs=1e-4))


def test_cnns_are_never_quantised(trained, capsys):
    s = export_classifier(Project.open(trained), "cnn")
    assert [f.precision for f in s.files] == ["fp32"] and s.files[0].parity.ok
    with pytest.raises(BadInputError, match="only transformer students are quantised"):
        export_classifier(Project.open(trained), "cnn", int8=True)
    assert main(["export-runtime", "-p", str(trained), "--classifier", "--run", "cnn", "--int8"]) == 2


def test_the_runtime_backend_imports_no_torch(trained):
    export_classifier(Project.open(trained), "cnn")
    onnx = trained / "models" / "classifier" / "cnn" / "export" / "classifier-32.onnx"
    code = ("import sys, numpy as np; from lrihar.models.classifiers import OnnxClassifier; "
            f"c = OnnxClassifier({str(onnx)!r}); c.classify([np.zeros((20, 30, 3), np.uint8)]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO / "src")},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_classify_with_the_exported_model_labels_crops_and_keeps_corrections(trained, capsys):
    from lrihar.review.edits import relabel

    assert main(["export-runtime", "-p", str(trained), "--classifier", "--run", "vit"]) == 0
    store = Project.open(trained).store
    first = next(store.detections()).id
    relabel(store, [first], "green", reviewer="ann")
    assert main(["classify", "-p", str(trained), "--classifier", "vit", "--no-progress"]) == 0
    labels = Project.open(trained).store.labels()
    onnx = OnnxClassifier(json.loads((trained / "models/classifier/vit/export/classifier.json").read_text())
                          ["deployed"])
    rows = list(iter_crops(store))
    predicted = onnx.classify([img for _, img in rows])
    assert len(labels) == 21
    for (row, _), best in zip(rows, predicted.label, strict=True):
        lab = labels[row.id]
        assert lab["auto_label"] == onnx.classes[best]
        if row.id == first:
            assert (lab["provenance"], lab["label"]) == ("corrected", "green")
        else:
            assert (lab["provenance"], lab["label"]) == ("model", onnx.classes[best])
    # the template matcher's next run leaves the model's labels alone
    store.write_auto_labels(1, [(rows[1][0].id, "blue", 0.5, None, None, "k", 0.5)])
    assert store.labels()[rows[1][0].id]["provenance"] == "model"


def test_classify_with_no_exported_classifier_is_bad_input(tmp_path, capsys):
    root = toy_project(tmp_path / "p", per_class=1)
    assert main(["classify", "-p", str(root), "--classifier", "student", "--no-progress"]) == 2
    assert "no exported student" in capsys.readouterr().err
    assert main(["classify", "-p", str(root), "--classifier", str(tmp_path / "x.onnx")]) == 2


def test_a_schema_5_store_is_upgraded_to_accept_model_labels_without_losing_rows(tmp_path):
    path = tmp_path / "p.db"
    store = Store(path)
    run = store.start_run("t", {}, {})
    boxes = sv.Detections(xyxy=np.array([[1.0, 2, 30, 40], [5, 5, 20, 20]]), confidence=np.array([0.9, 0.8]))
    source = store.source_id("/v.mp4", "video")
    store.write_frames(run, source, [(FrameRecord(0, 0.0, 64, 48, "action"), boxes)], "t")
    first, second = (r.id for r in store.detections())
    store.db.executescript(f"""
        DROP TABLE labels;
        CREATE TABLE labels (detection_id INTEGER PRIMARY KEY, label TEXT NOT NULL, auto_label TEXT,
            score REAL, runner_up TEXT, margin REAL, encoder_key TEXT, lambda REAL,
            provenance TEXT NOT NULL CHECK (provenance IN ('auto', 'corrected')),
            run_id INTEGER REFERENCES runs(id), at TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0);
        INSERT INTO labels (detection_id, label, provenance, at, version)
            VALUES ({first}, 'a', 'corrected', 'x', 3);
        UPDATE meta SET value='5' WHERE key='schema_version';
    """)
    store.close()
    old = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):  # the old table refuses 'model'
        old.execute(f"INSERT INTO labels (detection_id, label, provenance, at) "
                    f"VALUES ({second}, 'b', 'model', 'x')")
    old.close()
    store = Store(path)
    assert int(store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]) \
        == SCHEMA_VERSION == 8
    kept = store.db.execute("SELECT label, provenance, version FROM labels").fetchall()
    assert kept == [("a", "corrected", 3)]
    store.write_model_labels(run, [(second, "b", 0.9, None, 0.5, "m"), (first, "b", 0.9, None, 0.5, "m")])
    got = store.labels()
    assert (got[second]["provenance"], got[second]["label"]) == ("model", "b")
    assert (got[first]["provenance"], got[first]["label"]) == ("corrected", "a")
    assert got[first]["auto_label"] == "b"


def test_table_4_puts_the_template_matcher_beside_every_trained_classifier(trained, tmp_path):
    from lrihar.deploy.onnx_classifier import export_classifier as export

    export(Project.open(trained), "cnn")
    out = tmp_path / "t4.json"
    assert main(["evaluate", "-p", str(trained), "--classifiers", "--json", str(out)]) == 0
    t4 = json.loads(out.read_text())
    names = [r["classifier"] for r in t4["rows"]]
    assert names[0].startswith("template matching (mobilenet-v2, 6 templates)")
    assert any("[vit, " in n for n in names) and any("[cnn, ONNX fp32]" in n for n in names)
    data = trained / "models" / "classifier" / "cnn" / "data"
    assert t4["split"] == "val" and t4["crops"] == len(list((data / "val").rglob("*.jpg"))) > 0
    for row in t4["rows"]:
        assert set(row["accuracy"]) >= {"all"} and 0 <= row["accuracy"]["all"] <= 1
        assert row["call_ms_p50"] > 0 and row["call_ms_p90"] >= row["call_ms_p50"]
    assert next(r for r in t4["rows"] if "[cnn" in r["classifier"])["training_note"].startswith("init random")
    html = tmp_path / "report.html"
    assert main(["report", "-p", str(trained), "-o", str(html), "--classifiers"]) == 0
    text = html.read_text()
    assert "Classifiers (Table 4)" in text and "[cnn, ONNX fp32]" in text
