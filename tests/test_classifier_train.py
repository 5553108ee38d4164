"""Trained classifiers: backbones, LoRA, the KD loss, the loop (resume), finetune / distill, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from classifier_fixtures import TOY_CLASSES, save_tiny_vit, toy_project, write_toy_imagefolder
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.train.classifier_data import Augment, AugmentedCrops, load_data_folder, train_loader
from lrihar.train.classifier_models import build_classifier, load_classifier, rebuild
from lrihar.train.loop import LAST, LoopSettings, fit, load_last
from lrihar.train.lora import LoraSettings, apply_lora, merged_state
from lrihar.train.tasks import ClassificationTask, DistillationTask, kd_loss

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("vit") / "tiny-vit")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_imagefolder(tmp_path_factory.mktemp("toy") / "data")


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.randn(6, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 0, 1, 2])}


def test_a_vit_directory_loads_through_from_pretrained_with_a_new_head(tiny_vit):
    model, spec = build_classifier(str(tiny_vit), list(TOY_CLASSES))
    assert (spec.arch, spec.kind, spec.input_size) == ("vit", "transformer", 32)
    assert spec.init == f"pretrained {tiny_vit}" and len(spec.hf_config["id2label"]) == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_one_lora_step_lowers_the_loss_and_changes_only_adapters_and_head(tiny_vit):
    torch.manual_seed(0)
    model, _ = build_classifier(str(tiny_vit), list(TOY_CLASSES))
    apply_lora(model, LoraSettings(rank=4, alpha=8, dropout=0.0))
    names = {k for k, p in model.named_parameters() if p.requires_grad}
    assert any(".q_proj.lora_A" in k for k in names) and any(".v_proj.lora_B" in k for k in names)
    assert not any(".k_proj." in k for k in names)  # only q and v are adapted
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task, batch = ClassificationTask(model), _batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = task(batch).loss
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert task(batch).loss < loss
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any("lora_" in k for k in changed) and any("modules_to_save" in k for k in changed)
    assert all("lora_" in k or "modules_to_save" in k for k in changed), sorted(changed)


def test_merged_lora_weights_give_the_unmerged_outputs(tiny_vit):
    torch.manual_seed(0)
    model, spec = build_classifier(str(tiny_vit), list(TOY_CLASSES))
    apply_lora(model, LoraSettings(rank=4, alpha=8, dropout=0.0))
    for name, p in model.named_parameters():  # make the adapters non-zero (lora_B starts at 0)
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    plain = rebuild(spec)  # no peft: the exported / deployed network
    plain.net.load_state_dict(merged_state(model))
    x = _batch()["pixels"]
    with torch.no_grad():
        lora_out, plain_out = model.eval()(x), plain.eval()(x)
    assert (lora_out - plain_out).abs().max() < 1e-5
    assert not any("lora" in k for k in plain.state_dict())


def test_kd_loss_equals_the_hand_computed_value_on_a_three_class_toy():
    # student [2,1,0] labelled 0, [0,0,1] unlabelled; teacher [1,2,0], [0,3,0]; α=0.3, T=2.
    # CE(sample 0) = -log(e²/(e²+e+1)) = 0.407606; KL(teacher‖student) at T=2, batch mean = 0.242528;
    # loss = 0.3·0.407606 + 0.7·4·0.242528 = 0.801359
    s = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0]])
    loss = kd_loss(s, t, torch.tensor([0, -1]), alpha=0.3, temperature=2.0)
    assert float(loss) == pytest.approx(0.801359, abs=1e-5)
    # α = 1: the label term alone; unlabelled crops then teach nothing
    assert float(kd_loss(s, t, torch.tensor([0, -1]), 1.0, 2.0)) == pytest.approx(0.407606, abs=1e-5)
    assert float(kd_loss(s, t, torch.tensor([-1, -1]), 1.0, 2.0)) == 0.0
    # a sharper teacher (paper: 0.07) changes only the teacher's distribution
    assert float(kd_loss(s, t, torch.tensor([-1, -1]), 0.0, 2.0, teacher_temperature=0.07)) > float(loss)
    task = DistillationTask(lambda x: x, alpha=0.3, temperature=2.0)
    assert float(task({"pixels": s, "label": torch.tensor([0, -1]), "teacher": t}).loss) == pytest.approx(
        0.801359, abs=1e-5)


def test_augmentation_is_seeded_per_crop_and_round_and_the_same_view_at_any_size(toy_data):
    sets = load_data_folder(toy_data, 32)
    a = AugmentedCrops(sets.train, Augment(32), (0.5,) * 3, (0.5,) * 3, seed=3)
    big = AugmentedCrops(sets.train, Augment(64), (0.5,) * 3, (0.5,) * 3, seed=3)
    a.epoch = big.epoch = 1
    x, y = a[4]["pixels"], big[4]["pixels"]
    assert torch.equal(x, a[4]["pixels"]) and not torch.equal(x, a[5]["pixels"])
    small = torch.nn.functional.interpolate(y[None], size=32, mode="area")[0]
    assert (small - x).abs().mean() < 0.1  # same crop box and jitter, another output size
    a.epoch = 2
    assert not torch.equal(x, a[4]["pixels"])


def test_balanced_sampling_evens_out_a_dominant_class(tmp_path):
    data = write_toy_imagefolder(tmp_path / "d", {"red": 30, "green": 3, "blue": 3})
    sets = load_data_folder(data, 32)
    ds = AugmentedCrops(sets.train, Augment(32), (0.5,) * 3, (0.5,) * 3)
    drawn = torch.cat([b["label"] for e in range(3) for b in train_loader(ds, 12, e, 0, sets.train.labels)])
    red = sets.classes.index("red")
    share = np.bincount(drawn.numpy(), minlength=3) / len(drawn)
    assert abs(share[red] - 1 / 3) < 0.12  # 83 % of the crops, a third of the draws
    plain = torch.cat([b["label"] for b in train_loader(ds, 12, 0, 0, None)])
    assert np.bincount(plain.numpy())[red] == 30  # unbalanced: each crop once


def _toy_fit(tiny_vit, toy_data, run_dir, epochs, interrupt_at=None, resume=False):
    torch.manual_seed(0)
    sets = load_data_folder(toy_data, 32)
    model, spec = build_classifier(str(tiny_vit), sets.classes)
    apply_lora(model, LoraSettings(rank=4, alpha=8))
    from lrihar.models.classifiers.preprocess import to_pixels

    ds = AugmentedCrops(sets.train, Augment(32), spec.mean, spec.std)
    val = (to_pixels(sets.val.images, 32, spec.mean, spec.std), sets.val.labels)

    def loader_for(epoch):
        if epoch == interrupt_at:
            raise KeyboardInterrupt
        return train_loader(ds, 4, epoch, 0, sets.train.labels)

    settings = LoopSettings(epochs=epochs, lr=5e-3, batch=8, micro_batch=4, precision="fp32", device="cpu")
    result = fit(model, ClassificationTask(model), loader_for, math.ceil(len(ds) / 4), val, settings, run_dir,
                 best_state=lambda: merged_state(model), resume=resume, show_progress=False)
    return model, result


def test_an_interrupted_fit_resumes_from_its_stored_step_and_ends_as_an_uninterrupted_one(
        tiny_vit, toy_data, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole, whole_result = _toy_fit(tiny_vit, toy_data, tmp_path / "a", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        _toy_fit(tiny_vit, toy_data, tmp_path / "b", epochs=3, interrupt_at=2)
    stored = load_last(tmp_path / "b" / LAST)["result"]
    steps_per_epoch = math.ceil(math.ceil(24 / 4) / 2)  # 24 crops, micro-batch 4, 2 per step
    assert stored["epochs_done"] == 2 and stored["step"] == 2 * steps_per_epoch
    resumed, result = _toy_fit(tiny_vit, toy_data, tmp_path / "b", epochs=3, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.step == whole_result.step == 3 * steps_per_epoch
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in whole_result.history]
    for (k, v), w in zip(resumed.state_dict().items(), whole.state_dict().values(), strict=True):
        assert torch.allclose(v, w, atol=1e-6), k
    history = (tmp_path / "b" / "history.csv").read_text().splitlines()
    assert len(history) == 4 and (tmp_path / "b" / "curve.png").stat().st_size > 1000


def test_finetune_on_the_project_exports_its_crops_and_keeps_the_best_epoch(tiny_vit, tmp_path):
    root = toy_project(tmp_path / "p", per_class=5)
    out = tmp_path / "summary.json"
    code = main(["finetune", "-p", str(root), "--backbone", str(tiny_vit), "--epochs", "3", "--batch", "8",
                 "--micro-batch", "8", "--lr", "0.01", "--name", "teacher", "--no-progress",
                 "--json", str(out)])
    assert code == 0
    s = json.loads(out.read_text())
    run = root / "models" / "classifier" / "teacher"
    assert s["mode"] == "lora" and s["classes"] == list(TOY_CLASSES) and s["epochs_done"] == 3
    assert sum(s["train_crops"].values()) + sum(s["val_crops"].values()) == 15
    assert (run / "data" / "train" / "red").is_dir() and (run / "best.safetensors").is_file()
    record = json.loads((run / "lrihar-train.json").read_text())
    assert record["command"] == "finetune" and record["summary"]["status"] == "done"
    best = max(s["history"], key=lambda r: r["val_acc"])
    assert s["best_epoch"] == best["epoch"]
    model = load_classifier(run)  # plain weights, LoRA merged: loads without peft
    assert model.spec.classes == list(TOY_CLASSES)
    runs = Project.open(root).store.db.execute("SELECT command, status FROM runs").fetchall()
    assert ("finetune", "done") in runs


def test_two_finetune_runs_with_the_same_seed_end_with_the_same_weights(tiny_vit, toy_data, tmp_path):
    # the new head and LoRA draw from the global RNG: the first run leaves it elsewhere
    from safetensors.torch import load_file

    from lrihar.train.finetune import FinetuneConfig, finetune

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "lrihar.yaml").write_text("{}\n")
    project = Project.open(tmp_path / "p")
    cfg = FinetuneConfig(backbone=str(tiny_vit), data=str(toy_data), epochs=1, batch=8, seed=3)
    weights = [load_file(finetune(project, cfg, name=name, show_progress=False).best)
               for name in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_distill_learns_from_unlabelled_crops_through_cached_teacher_logits(tiny_vit, tmp_path):
    root = toy_project(tmp_path / "p", per_class=4, unlabelled=6)
    assert main(["finetune", "-p", str(root), "--backbone", str(tiny_vit), "--epochs", "1", "--batch", "8",
                 "--name", "t", "--no-progress"]) == 0
    args = ["distill", "-p", str(root), "--backbone", str(tiny_vit), "--mode", "full", "--epochs", "2",
            "--rounds", "2", "--batch", "8", "--name", "s", "--no-progress",
            "--json", str(tmp_path / "s.json")]
    assert main(args) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    run = root / "models" / "classifier" / "s"
    assert s["teacher"] == "t" and s["unlabelled_crops"] == 6 and s["mode"] == "full"
    assert len(list((run / "unlabelled").glob("*.jpg"))) == 6
    from safetensors.torch import load_file

    cached = load_file(str(run / "teacher_logits.safetensors"))["logits"]
    labelled = sum(s["train_crops"].values())
    assert cached.shape == (labelled + 6, 2, 3)
    assert s["history"][0]["samples"] == labelled + 6  # every crop, unlabelled ones too
    # the teacher ran on every (crop, round): its logits differ between the two rounds' views
    assert not torch.allclose(cached[:, 0], cached[:, 1])


def _runs(root: Path) -> list[str]:
    folder = root / "models" / "classifier"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_an_empty_class_folder_is_bad_input_and_leaves_no_run(tmp_path, capsys):
    data = write_toy_imagefolder(tmp_path / "d", {"red": 3, "green": 3, "blue": 0})
    root = toy_project(tmp_path / "p", per_class=1)
    code = main(["finetune", "-p", str(root), "--data", str(data), "--backbone", "resnet18", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "class 'blue' has no training crops" in err and str(data / "train" / "blue") in err
    assert _runs(root) == []


def test_a_project_with_no_labels_is_bad_input(tmp_path, capsys):
    root = toy_project(tmp_path / "p", per_class=2, labelled=False)
    assert main(["finetune", "-p", str(root), "--no-progress"]) == 2
    assert "no labelled detections" in capsys.readouterr().err
    assert _runs(root) == []


def test_an_unknown_backbone_is_bad_input(tmp_path, capsys):
    root = toy_project(tmp_path / "p", per_class=2)
    assert main(["finetune", "-p", str(root), "--backbone", "vit-hyper", "--no-progress"]) == 2
    assert "unknown backbone 'vit-hyper'" in capsys.readouterr().err
    assert _runs(root) == []
    with pytest.raises(BadInputError, match="choose one of mobilenet-v2"):
        build_classifier("efficientnet", ["a", "b"])


def test_damaged_checkpoints_are_bad_input_and_stay_as_they_were(tiny_vit, tmp_path, capsys):
    root = toy_project(tmp_path / "p", per_class=3)
    assert main(["finetune", "-p", str(root), "--backbone", str(tiny_vit), "--epochs", "1", "--name", "t",
                 "--no-progress"]) == 0
    run = root / "models" / "classifier" / "t"
    best = run / "best.safetensors"
    best.write_bytes(best.read_bytes()[:300])  # a truncated copy
    damaged = best.read_bytes()
    assert main(["distill", "-p", str(root), "--backbone", "vit-tiny", "--image-size", "32",
                 "--no-progress"]) == 2
    assert f"{best}: damaged" in capsys.readouterr().err
    assert best.read_bytes() == damaged and _runs(root) == ["t"]
    assert main(["export-runtime", "-p", str(root), "--classifier", "--run", "t"]) == 2
    # a damaged resume state: refused, and left for the user to inspect
    record = json.loads((run / "lrihar-train.json").read_text())
    record["summary"]["status"] = "interrupted"
    (run / "lrihar-train.json").write_text(json.dumps(record))
    (run / LAST).write_bytes(b"not a torch file")
    assert main(["finetune", "-p", str(root), "--resume", "--name", "t", "--no-progress"]) == 2
    assert "damaged resume state" in capsys.readouterr().err
    assert (run / LAST).read_bytes() == b"not a torch file"


@pytest.mark.slow
def test_finetune_killed_mid_run_resumes_to_the_end(tiny_vit, tmp_path):
    data = write_toy_imagefolder(tmp_path / "d", dict.fromkeys(TOY_CLASSES, 8))
    root = toy_project(tmp_path / "p", per_class=1)
    cmd = [sys.executable, "-m", "lrihar.cli", "finetune", "-p", str(root), "--data", str(data),
           "--backbone", str(tiny_vit), "--epochs", "4", "--batch", "4", "--micro-batch", "4",
           "--name", "r", "--no-progress"]
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = root / "models" / "classifier" / "r" / LAST
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = load_last(last)["result"]["epochs_done"]
    assert 1 <= done < 4  # killed after an epoch was saved, before the last
    out = subprocess.run([*cmd[:3], "finetune", "-p", str(root), "--resume", "--name", "r", "--no-progress"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    record = json.loads((last.parent / "lrihar-train.json").read_text())["summary"]
    assert record["status"] == "done" and [r["epoch"] for r in record["history"]] == [1, 2, 3, 4]
