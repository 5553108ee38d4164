"""Commands for the trained action classifiers: finetune (teacher), distill (student)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import ProjectOpt, app, echo_err, train_and_report

Backbone = Annotated[str, typer.Option(
    help="mobilenet-v2 (offline, ImageNet weights), vit-small / vit-tiny / resnet18 (from config, random "
         "init), or a ViT hub id / local dir (e.g. google/vit-large-patch16-224).")]
ImageSize = Annotated[int | None, typer.Option(help="Input size in pixels (default: the backbone's).")]
Mode = Annotated[str, typer.Option(
    help="auto (LoRA for a pretrained transformer, else full), lora or full.")]
Epochs = Annotated[int, typer.Option(help="Passes over the training crops.")]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate (default 5e-3 LoRA, 1e-3 full).")]
Batch = Annotated[int, typer.Option(help="Crops per optimizer step (accumulated over micro-batches).")]
MicroBatch = Annotated[int, typer.Option(help="Crops per forward pass.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[str, typer.Option(help="auto (bf16 where supported), bf16, fp16 (CUDA), fp32.")]
Name = Annotated[str | None, typer.Option(help="Run folder under models/classifier.")]
Resume = Annotated[bool, typer.Option(help="Continue the run --name (default: the latest unfinished one).")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")]


def _common(backbone, image_size, mode, lora_rank, lora_alpha, lora_dropout, lora_targets, epochs, lr, batch,
            micro_batch, warmup, device, precision, seed, patience, hflip, balanced, include_ng,
            val_fraction, data) -> dict:
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    return {"backbone": backbone, "image_size": image_size, "mode": mode, "lora_rank": lora_rank,
            "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "lora_targets": targets, "epochs": epochs,
            "lr": lr, "batch": batch, "micro_batch": micro_batch, "warmup": warmup, "device": device,
            "precision": precision, "seed": seed, "patience": patience, "hflip": hflip, "balanced": balanced,
            "include_ng": include_ng, "val_fraction": val_fraction, "data": str(data) if data else None}


@app.command()
def finetune(
    project: ProjectOpt = Path("."),
    backbone: Backbone = "mobilenet-v2",
    image_size: ImageSize = None,
    mode: Mode = "auto",
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (paper: 16).")] = 16,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (update scaled by alpha/rank).")] = 16.0,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.1,
    lora_targets: Annotated[str | None, typer.Option(
        help="Comma-separated modules to adapt (default q_proj,v_proj on a ViT; all-linear allowed).")]
        = None,
    epochs: Epochs = 15,
    lr: Lr = None,
    batch: Batch = 64,
    micro_batch: MicroBatch = 32,
    warmup: Annotated[float, typer.Option(help="Warm-up epochs before the cosine decay.")] = 1.0,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and augmentation.")] = 0,
    patience: Annotated[int | None, typer.Option(help="Stop after N epochs without a better val accuracy.")]
        = None,
    hflip: Annotated[bool, typer.Option(help="Mirror crops in augmentation (off: handedness matters).")]
        = False,
    balanced: Annotated[bool, typer.Option(help="Class-balanced sampling.")] = True,
    include_ng: Annotated[bool, typer.Option(help="Train NG as a class.")] = False,
    val_fraction: Annotated[float, typer.Option(help="Share of sources held out for validation.")] = 0.2,
    data: Annotated[Path | None, typer.Option(
        help="Train on this ImageFolder folder (train/, val/) instead of the project's crops.")] = None,
    name: Name = None,
    resume: Resume = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    json_out: JsonOut = None,
) -> None:
    """Train the action classifier (teacher) on the project's labelled crops.

    Writes PROJECT/models/classifier/<run>/: data/ (the crops, split by source), classifier.json,
    best.safetensors (best epoch), last.pt (resume state), history.csv and curve.png. Ctrl-C keeps
    the finished epochs: continue with --resume.
    """
    from lrihar.project import Project
    from lrihar.train.finetune import FinetuneConfig
    from lrihar.train.finetune import finetune as run_finetune

    cfg = FinetuneConfig(**_common(backbone, image_size, mode, lora_rank, lora_alpha, lora_dropout,
                                   lora_targets, epochs, lr, batch, micro_batch, warmup, device, precision,
                                   seed, patience, hflip, balanced, include_ng, val_fraction, data))
    proj = Project.open(project)
    train_and_report(lambda: run_finetune(proj, cfg, name=name, resume=resume, show_progress=progress),
                     "training", f"lrihar finetune -p {project}", name, print_summary, json_out)


@app.command()
def distill(
    project: ProjectOpt = Path("."),
    teacher: Annotated[str | None, typer.Option(help="Teacher run (default: the latest finetune run).")]
        = None,
    backbone: Backbone = "mobilenet-v2",
    image_size: Annotated[int | None, typer.Option(help="Student input size (96-128 px for a CPU).")] = 128,
    mode: Mode = "auto",
    alpha: Annotated[float, typer.Option(help="Weight of the label term; 1 - alpha goes to the teacher.")]
        = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 2.0,
    teacher_temperature: Annotated[float | None, typer.Option(
        help="The teacher's own temperature (default T; the paper sharpens with 0.07).")] = None,
    rounds: Annotated[int, typer.Option(help="Augmented views per crop whose teacher logits are cached.")]
        = 8,
    unlabelled: Annotated[bool, typer.Option(help="Also learn from the project's unlabelled crops.")] = True,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (mode lora).")] = 16,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha.")] = 16.0,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.1,
    lora_targets: Annotated[str | None, typer.Option(help="Comma-separated modules to adapt.")] = None,
    epochs: Epochs = 30,
    lr: Lr = None,
    batch: Batch = 64,
    micro_batch: MicroBatch = 32,
    warmup: Annotated[float, typer.Option(help="Warm-up epochs before the cosine decay.")] = 1.0,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Annotated[int, typer.Option(help="Seed of sampling and augmentation.")] = 0,
    patience: Annotated[int | None, typer.Option(help="Stop after N epochs without a better val accuracy.")]
        = None,
    hflip: Annotated[bool, typer.Option(help="Mirror crops in augmentation.")] = False,
    balanced: Annotated[bool, typer.Option(help="Class-balanced sampling (by the teacher where unlabelled).")]
        = True,
    name: Name = None,
    resume: Resume = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    json_out: JsonOut = None,
) -> None:
    """Distill the teacher into a small, fast student; unlabelled crops learn from the teacher's answers.

    Uses the teacher run's split; writes PROJECT/models/classifier/<run>/ like finetune, plus
    teacher_logits.safetensors (the teacher's cached answers) and unlabelled/ (the crops).
    """
    from lrihar.project import Project
    from lrihar.train.distill import DistillConfig
    from lrihar.train.distill import distill as run_distill

    options = _common(backbone, image_size, mode, lora_rank, lora_alpha, lora_dropout, lora_targets, epochs,
                      lr, batch, micro_batch, warmup, device, precision, seed, patience, hflip, balanced,
                      False, 0.2, None)
    cfg = DistillConfig(**options, teacher=teacher, alpha=alpha, temperature=temperature,
                        teacher_temperature=teacher_temperature, rounds=rounds, unlabelled=unlabelled)
    proj = Project.open(project)
    train_and_report(lambda: run_distill(proj, cfg, name=name, resume=resume, show_progress=progress),
                     "distillation", f"lrihar distill -p {project}", name, print_summary, json_out)


def print_summary(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{s.command} {s.run}", show_header=False)
    rows = [("backbone", f"{s.backbone} ({s.init}), {s.input_size} px"),
            ("mode", f"{s.mode}: {s.trainable_params:,} of {s.total_params:,} parameters trained"),
            ("classes", ", ".join(s.classes)),
            ("train / val crops", f"{sum(s.train_crops.values())} / {sum(s.val_crops.values())}")]
    if s.command == "distill":
        rows += [("teacher", s.teacher), ("unlabelled crops", s.unlabelled_crops)]
    best = f"{s.best_val_acc:.1%} (epoch {s.best_epoch})" if s.best_val_acc is not None else "-"
    rows += [("epochs done", s.epochs_done), ("best val accuracy", best),
             ("device / precision", f"{s.device} / {s.precision}"), ("training time", f"{s.seconds:.1f} s"),
             ("best checkpoint", s.best or "-"), ("curve", s.curve or "-")]
    for key, value in rows:
        table.add_row(key, str(value))
    Console().print(table)
    for note in s.notes:
        echo_err(f"warning: {note}")
