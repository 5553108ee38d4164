"""``lrihar distill``: a small, fast student learns from a finetuned teacher (paper 3.3).

The student trains on the teacher run's split: the labelled training crops (loss α·CE + (1-α)·KD,
:class:`~lrihar.train.tasks.DistillationTask`) and **every unlabelled crop of the project**
(the KD term only), validated on the teacher's validation crops. Unlabelled crops are the
project's detections that carry no label, written to ``<run>/unlabelled/``; a teacher trained
on a ``--data`` folder brings that folder's ``unlabelled/`` instead.

The teacher runs once per crop and augmentation round: its logits for ``rounds`` seeded views
of each crop are computed up front and cached in ``<run>/teacher_logits.safetensors`` (keyed by
the teacher's weights, the crops and the augmentation), and epoch ``e`` shows the student round
``e % rounds`` of each crop, the same view the teacher saw (same seed; only the size differs).

Example:
    >>> s = distill(Project.open("proj"), DistillConfig(teacher="mobilenet-v2-1"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.artifacts import CLASSIFIER, find_run, read_record, resumable_run
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.train.finetune import (
    ClassifierTrainSummary,
    FinetuneConfig,
    _config_from_record,
    _fill_partial,
    build_for_training,
    prepare_run,
    run_training,
)

CACHE = "teacher_logits.safetensors"


@dataclass(frozen=True)
class DistillConfig(FinetuneConfig):
    """Settings of a distill run: those of :class:`FinetuneConfig` (for the student) plus:

    Attributes:
        teacher: the teacher's run name (default: the latest finetune run).
        alpha: weight of the label term (paper's recipe has both terms; 1.0 = no distillation).
        temperature: T of the KL term.
        teacher_temperature: the teacher's own temperature (default T; the paper sharpens with 0.07).
        rounds: augmentation rounds cached per crop (the teacher runs ``rounds`` times per crop).
        unlabelled: also learn from the project's unlabelled crops.
    """

    backbone: str = "mobilenet-v2"
    image_size: int | None = 128
    epochs: int = 30
    teacher: str | None = None
    alpha: float = 0.5
    temperature: float = 2.0
    teacher_temperature: float | None = None
    rounds: int = 8
    unlabelled: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1:
            raise BadInputError(f"--rounds: must be at least 1, not {self.rounds}")


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def teacher_logits(teacher, crops, rounds: int, seed: int, hflip: bool, cache: Path, weights_sha: str,
                   device, precision: str, batch: int = 64, show_progress: bool = True):
    """Teacher logits ``(N, rounds, classes)`` for each crop's seeded augmented views, from the
    cache when its key (teacher weights, crops, augmentation) matches, else computed and cached."""
    import torch
    from safetensors.torch import load_file, save_file

    from lrihar.progress import progress_bar
    from lrihar.train.classifier_data import Augment, augment, sample_seed
    from lrihar.train.loop import autocast

    spec = teacher.spec
    aug = Augment(spec.input_size, hflip=hflip)
    key = _digest(weights_sha, crops.paths, [im.shape for im in crops.images], rounds, seed, repr(aug))
    if cache.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), "pt") as f:
                if (f.metadata() or {}).get("key") == key:
                    return load_file(str(cache))["logits"]
        except Exception:  # a damaged cache is recomputed, never trusted
            pass
    transform = aug.transform()
    out = torch.empty(len(crops), rounds, len(spec.classes))
    teacher.to(device).eval()
    jobs = [(i, r) for r in range(rounds) for i in range(len(crops))]
    with progress_bar("teacher logits", unit="views", enabled=show_progress, total=len(jobs)) as bar, \
            torch.no_grad():
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            x = torch.stack([augment(crops.images[i], transform, sample_seed(seed, r, i), spec.mean, spec.std)
                             for i, r in chunk]).to(device)
            with autocast(device, precision):
                logits = teacher(x).float().cpu()
            for (i, r), row in zip(chunk, logits, strict=True):
                out[i, r] = row
            bar.update(start + len(chunk))
    tmp = cache.with_name(cache.name + ".tmp")
    save_file({"logits": out.contiguous()}, str(tmp), metadata={"key": key, "rounds": str(rounds)})
    tmp.replace(cache)
    return out


def distill(project: Project, cfg: DistillConfig | None = None, name: str | None = None, resume: bool = False,
            show_progress: bool = True) -> ClassifierTrainSummary:
    """Distill the teacher run into a student (or resume); see the module docstring.

    Raises:
        BadInputError: no trained teacher, a damaged teacher checkpoint, an unknown backbone, the
            teacher's data folder gone; a new run's folder is then removed, nothing else touched.
    """
    import torch

    from lrihar.models.classifiers.preprocess import to_pixels
    from lrihar.train.classifier_data import (
        Augment,
        AugmentedCrops,
        CropSet,
        export_unlabelled,
        load_data_folder,
        read_unlabelled,
        train_loader,
    )
    from lrihar.train.classifier_models import check_backbone, load_classifier
    from lrihar.train.loop import fit, resolve_device, resolve_precision
    from lrihar.train.lora import merged_state, trainable_share
    from lrihar.train.tasks import DistillationTask

    if resume:
        run_dir = resumable_run(CLASSIFIER, project, name, "distill")
        cfg = _config_from_record(run_dir, DistillConfig)
    else:
        cfg = cfg or DistillConfig()
        check_backbone(cfg.backbone)
    teacher_dir = find_run(CLASSIFIER, project, cfg.teacher, command="finetune")
    teacher_record = read_record(teacher_dir)
    data_dir = Path(teacher_record.get("summary", {}).get("data") or teacher_dir / "data")
    if not resume:
        run_dir = prepare_run(project, "distill", f"student-{cfg.backbone}", name)
    try:
        from lrihar.paths import sha256_of

        teacher = load_classifier(teacher_dir)
        weights_sha = sha256_of(teacher_dir / "best.safetensors")
        if not (data_dir / "train").is_dir():
            raise BadInputError(f"{data_dir}: the teacher's training data is gone; finetune a new teacher")
        model, spec, mode = build_for_training(cfg, teacher.spec.classes, run_dir)
        sets = load_data_folder(data_dir, max(spec.input_size, teacher.spec.input_size))
        unlabelled = CropSet([], np.zeros(0, np.int64), [])
        if cfg.unlabelled:
            folder = data_dir / "unlabelled"
            if not folder.is_dir() and not teacher_record["config"].get("data"):
                folder = run_dir / "unlabelled"
                if not folder.is_dir():
                    padding = cfg.padding if cfg.padding is not None else project.config.classify.padding
                    export_unlabelled(project, folder, padding)
            unlabelled = read_unlabelled(folder, 2 * max(spec.input_size, teacher.spec.input_size))
    except BaseException:
        if not resume:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    labels = np.concatenate([sets.train.labels, unlabelled.labels])
    crops = CropSet(sets.train.images + unlabelled.images, labels, sets.train.paths + unlabelled.paths)
    settings = cfg.loop(mode)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    logits = teacher_logits(teacher, crops, cfg.rounds, cfg.seed, cfg.hflip, run_dir / CACHE, weights_sha,
                            device, precision, show_progress=show_progress)
    del teacher
    if device.type == "cuda":
        torch.cuda.empty_cache()
    # Balance by the label where there is one, by the teacher's answer where there is not.
    balance = np.where(crops.labels >= 0, crops.labels, logits.mean(1).argmax(-1).numpy())
    trainable, total = trainable_share(model)
    summary = ClassifierTrainSummary(
        run=run_dir.name, folder=str(run_dir), command="distill", backbone=cfg.backbone, init=spec.init,
        mode=mode, input_size=spec.input_size, classes=spec.classes, trainable_params=trainable,
        total_params=total, train_crops=sets.train.counts(spec.classes),
        val_crops=sets.val.counts(spec.classes), unlabelled_crops=len(unlabelled),
        val_is_train=sets.val_is_train, data=str(data_dir), teacher=teacher_dir.name, notes=list(sets.notes))
    dataset = AugmentedCrops(crops, Augment(spec.input_size, hflip=cfg.hflip), spec.mean, spec.std, cfg.seed,
                             teacher=logits)
    micro = settings.micro_batch
    val = (to_pixels(sets.val.images, spec.input_size, spec.mean, spec.std), sets.val.labels)
    task = DistillationTask(model, cfg.alpha, cfg.temperature, cfg.teacher_temperature)

    def train() -> None:
        result = None
        try:
            result = fit(model, task, lambda epoch: train_loader(dataset, micro, epoch, cfg.seed,
                                                                 balance if cfg.balanced else None),
                         math.ceil(len(dataset) / micro), val, settings, run_dir,
                         best_state=lambda: merged_state(model), resume=resume,
                         title=f"distill {run_dir.name} ({spec.backbone} <- {teacher_dir.name})",
                         show_progress=show_progress)
        finally:
            _fill_partial(summary, run_dir, result)

    return run_training(project, "distill", cfg, run_dir, resume, summary, train)
