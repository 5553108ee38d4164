"""``lrihar finetune``: train the action classifier (the paper's teacher) on the project's crops.

The project's labelled crops (a person's correction wins over the matcher's label; NG only with
``include_ng``) are exported as an ImageFolder set into ``PROJECT/models/classifier/<run>/data``,
split by source, then a backbone (:mod:`~lrihar.train.classifier_models`) gets a new head and is
trained with cross-entropy through :func:`lrihar.train.loop.fit`: LoRA through peft
(:mod:`~lrihar.train.lora`) or a full fine-tune, class-balanced sampling, augmentation without
horizontal flips unless asked. The best epoch's weights are the teacher (``best.safetensors``).

``mode="auto"`` picks LoRA for a pretrained transformer (the paper's recipe) and a full fine-tune
for a CNN or a ViT built from its config: on the packaged MobileNetV2, LoRA on the convolutions
trained slower per step and reached a lower accuracy than the full fine-tune (docs/classifier.md).

Example:
    >>> s = finetune(Project.open("proj"), FinetuneConfig(epochs=10))  # doctest: +SKIP
    >>> s.best_val_acc  # doctest: +SKIP
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrihar.artifacts import CLASSIFIER, next_run_name, read_record, resumable_run, runs_root
from lrihar.errors import BadInputError
from lrihar.project import Project, ending_status, recorded_run
from lrihar.train.classifier_runs import write_record

MODES = ("auto", "lora", "full")
DEFAULT_LR = {"lora": 5e-3, "full": 1e-3}  # lora: the paper's; full: measured on ASL letters


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a finetune run (the CLI's options).

    Attributes:
        backbone: ``mobilenet-v2`` (offline, ImageNet weights), ``vit-small``, ``vit-tiny``,
            ``resnet18`` (from config, random init), or a ViT hub id / local directory.
        image_size: input square (default: the backbone's).
        mode: ``auto``, ``lora`` or ``full`` (see the module docstring).
        lora_rank, lora_alpha, lora_dropout, lora_targets: LoRA settings (:class:`LoraSettings`).
        epochs, lr, batch, micro_batch, warmup, weight_decay, device, precision, seed, patience:
            optimisation (:class:`~lrihar.train.loop.LoopSettings`); ``lr`` None: 5e-3 for LoRA
            (paper), 1e-3 for a full fine-tune.
        val_fraction: share of the sources held out for validation.
        include_ng: NG becomes a class.
        hflip: mirror crops in augmentation (off: handedness can matter).
        balanced: draw crops class-balanced (NG tends to dominate).
        padding: crop padding per side (default the project's ``classify.padding``).
        label_smoothing: cross-entropy label smoothing.
        data: train on this ImageFolder folder (train/, val/) instead of exporting the project.
    """

    backbone: str = "mobilenet-v2"
    image_size: int | None = None
    mode: str = "auto"
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] | None = None
    epochs: int = 15
    lr: float | None = None
    batch: int = 64
    micro_batch: int = 32
    warmup: float = 1.0
    weight_decay: float = 0.05
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    patience: int | None = None
    val_fraction: float = 0.2
    include_ng: bool = False
    hflip: bool = False
    balanced: bool = True
    padding: float | None = None
    label_smoothing: float = 0.1
    data: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadInputError(f"--mode: {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.lora_targets is not None:
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        self.loop()  # validate the optimisation settings now
        self.lora()

    def resolved_mode(self, spec) -> str:
        if self.mode != "auto":
            return self.mode
        pretrained_transformer = spec.kind == "transformer" and spec.init.startswith("pretrained")
        return "lora" if pretrained_transformer else "full"

    def loop(self, mode: str = "full"):
        from lrihar.train.loop import LoopSettings

        return LoopSettings(epochs=self.epochs, lr=self.lr or DEFAULT_LR[mode],
                            weight_decay=self.weight_decay, warmup=self.warmup, batch=self.batch,
                            micro_batch=min(self.micro_batch, self.batch),
                            device=self.device, precision=self.precision, seed=self.seed,
                            patience=self.patience)

    def lora(self):
        from lrihar.train.lora import LoraSettings

        return LoraSettings(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_targets)


@dataclass
class ClassifierTrainSummary:
    """What a finetune or distill run produced."""

    run: str
    folder: str
    command: str = "finetune"
    status: str = "running"
    backbone: str = ""
    init: str = ""
    mode: str = ""
    input_size: int = 0
    classes: list[str] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    train_crops: dict[str, int] = field(default_factory=dict)
    val_crops: dict[str, int] = field(default_factory=dict)
    unlabelled_crops: int = 0
    val_is_train: bool = False
    epochs_done: int = 0
    best_epoch: int = 0
    best_val_acc: float | None = None
    stopped_early: bool = False
    device: str = ""
    precision: str = ""
    seconds: float = 0.0
    data: str = ""
    best: str | None = None
    curve: str | None = None
    teacher: str | None = None
    notes: list[str] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_run(project: Project, command: str, stem: str, name: str | None) -> Path:
    """A new, empty run folder under ``models/classifier`` (``name`` or ``<stem>-<n>``)."""
    from lrihar.naming import safe_file_name

    root = runs_root(CLASSIFIER, project)
    run_name = safe_file_name(name) if name else next_run_name(root, Path(stem).name if "/" in stem else stem)
    run_dir = root / run_name
    if run_dir.exists():
        raise BadInputError(f"--name {run_name!r}: {run_dir} exists; pass --resume to continue it, "
                            "or choose another --name")
    run_dir.mkdir(parents=True)
    return run_dir


def project_data(project: Project, cfg, run_dir: Path) -> Path:
    """The data folder a run trains on: ``cfg.data`` as given, else the project exported into
    ``run_dir/data``."""
    from lrihar.train.classifier_data import export_project_set

    if cfg.data:
        data = Path(cfg.data).expanduser().resolve()
        if not data.is_dir():
            raise BadInputError(f"--data: {data} is not a folder; give an ImageFolder set with train/ "
                                "and val/")
        return data
    padding = cfg.padding if cfg.padding is not None else project.config.classify.padding
    export_project_set(project, run_dir / "data", cfg.val_fraction, cfg.seed, cfg.include_ng, padding)
    return run_dir / "data"


def build_for_training(cfg, classes: list[str], run_dir: Path):
    """The model (adapters applied per the resolved mode), its spec (saved) and the mode."""
    import torch

    from lrihar.train.classifier_models import build_classifier
    from lrihar.train.lora import apply_lora

    # The new head, LoRA and random-init weights draw from the global RNG, which torch seeds at
    # random in each process: seed it, or two runs with the same --seed start apart.
    torch.manual_seed(cfg.seed)
    model, spec = build_classifier(cfg.backbone, classes, cfg.image_size)
    mode = cfg.resolved_mode(spec)
    if mode == "lora":
        apply_lora(model, cfg.lora())
    else:
        model.train()
    spec.save(run_dir)
    return model, spec, mode


def run_training(project: Project, command: str, cfg, run_dir: Path, resume: bool, summary,
                 train_fn) -> Any:
    """Record the run (store + ``lrihar-train.json``) around ``train_fn(run_id)``, whatever happens."""

    def close(seconds: float) -> dict:
        return summary.as_dict() | {"wall_seconds": seconds}

    config = {command: asdict(cfg), "run": run_dir.name, "resume": resume}
    with recorded_run(project.store, command, config, close) as run_id:
        write_record(run_dir, command, cfg, summary.as_dict(), run_id)

        def finish(status: str) -> None:
            summary.status = status
            write_record(run_dir, command, cfg, summary.as_dict(), run_id)

        with ending_status(finish):
            train_fn()
    return summary


def fill_from_fit(summary, result, run_dir: Path) -> None:
    from lrihar.train.loop import BEST, CURVE

    summary.epochs_done, summary.best_epoch = result.epochs_done, result.best_epoch
    summary.best_val_acc = round(result.best_val_acc, 5) if result.best_epoch else None
    summary.stopped_early, summary.history = result.stopped_early, result.history
    summary.device, summary.precision, summary.seconds = result.device, result.precision, result.seconds
    summary.best = str(run_dir / BEST) if (run_dir / BEST).is_file() else None
    summary.curve = str(run_dir / CURVE) if (run_dir / CURVE).is_file() else None


def _config_from_record(run_dir: Path, cls):
    cfg = dict(read_record(run_dir)["config"])
    if cfg.get("lora_targets") is not None:
        cfg["lora_targets"] = tuple(cfg["lora_targets"])
    return cls(**cfg)


def finetune(project: Project, cfg: FinetuneConfig | None = None, name: str | None = None,
             resume: bool = False, show_progress: bool = True) -> ClassifierTrainSummary:
    """Train (or resume) a classifier on the project's labelled crops; see the module docstring.

    Args:
        project: the opened project.
        cfg: settings (defaults: :class:`FinetuneConfig`).
        name: run folder name under ``models/classifier`` (default ``<backbone>-<n>``).
        resume: continue the run ``name`` (default the latest unfinished finetune) from ``last.pt``.
        show_progress: draw a progress bar on stderr.

    Raises:
        BadInputError: no labelled crops, a class without training crops, an unknown backbone, a
            damaged resume state; a new run's folder is then removed, nothing else is touched.
    """
    from lrihar.models.classifiers.preprocess import to_pixels
    from lrihar.train.classifier_data import (
        Augment,
        AugmentedCrops,
        class_folders,
        load_data_folder,
        train_loader,
    )
    from lrihar.train.classifier_models import check_backbone
    from lrihar.train.loop import fit
    from lrihar.train.lora import merged_state, trainable_share
    from lrihar.train.tasks import ClassificationTask

    if resume:
        run_dir = resumable_run(CLASSIFIER, project, name, "finetune")
        cfg = _config_from_record(run_dir, FinetuneConfig)
        data_dir = Path(read_record(run_dir)["summary"]["data"])
    else:
        cfg = cfg or FinetuneConfig()
        check_backbone(cfg.backbone)  # fail before anything is written
        run_dir = prepare_run(project, "finetune", cfg.backbone, name)
    try:
        if not resume:
            data_dir = project_data(project, cfg, run_dir)
        if not (data_dir / "train").is_dir():
            raise BadInputError(f"{data_dir}: no train/ folder; give an ImageFolder set with train/<class>/")
        classes = list(class_folders(data_dir / "train"))
        model, spec, mode = build_for_training(cfg, classes, run_dir)
        sets = load_data_folder(data_dir, spec.input_size)
    except BaseException:
        if not resume:  # nothing trained yet: leave no half-made run folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainable, total = trainable_share(model)
    summary = ClassifierTrainSummary(
        run=run_dir.name, folder=str(run_dir), backbone=cfg.backbone, init=spec.init, mode=mode,
        input_size=spec.input_size, classes=sets.classes, trainable_params=trainable, total_params=total,
        train_crops=sets.train.counts(sets.classes), val_crops=sets.val.counts(sets.classes),
        val_is_train=sets.val_is_train, data=str(data_dir), notes=list(sets.notes))
    settings = cfg.loop(mode)
    dataset = AugmentedCrops(sets.train, Augment(spec.input_size, hflip=cfg.hflip), spec.mean, spec.std,
                             cfg.seed)
    balance = sets.train.labels if cfg.balanced else None
    micro = settings.micro_batch
    val = (to_pixels(sets.val.images, spec.input_size, spec.mean, spec.std), sets.val.labels)

    def train() -> None:
        result = None
        try:
            result = fit(model, ClassificationTask(model, cfg.label_smoothing),
                         lambda epoch: train_loader(dataset, micro, epoch, cfg.seed, balance),
                         math.ceil(len(dataset) / micro), val, settings, run_dir,
                         best_state=lambda: merged_state(model), resume=resume,
                         title=f"finetune {run_dir.name} ({spec.backbone}, {mode})",
                         show_progress=show_progress)
        finally:
            _fill_partial(summary, run_dir, result)

    return run_training(project, "finetune", cfg, run_dir, resume, summary, train)


def _fill_partial(summary, run_dir: Path, result) -> None:
    """The summary from the fit result, or (interrupted) from the last saved state."""
    from lrihar.train.loop import LAST, FitResult, load_last

    if result is None and (run_dir / LAST).is_file():
        stored = load_last(run_dir / LAST)["result"]
        result = FitResult(**stored)
    if result is not None:
        fill_from_fit(summary, result, run_dir)
