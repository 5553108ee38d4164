"""Crops for training a classifier: the project's ImageFolder export read back, augmented, balanced.

A data folder holds ``train/<class>/*.jpg``, ``val/<class>/*.jpg`` (optional: without it the
training crops are scored, and the run says so) and, for distillation, ``unlabelled/*.jpg``.
``lrihar export -f imagefolder`` writes exactly this (plus a ``manifest.json`` that maps class
names to their file-safe folders); ``finetune`` exports the project into its run folder itself.

Crops are decoded once and kept in memory (the longer side capped at twice the largest input
size), which suits the few thousand crops of a project on a CPU. Augmentation is seeded per
crop and per epoch (or per augmentation seed in distillation), so a resumed run sees the same
pixels and a teacher's logits can be cached per (crop, seed). Horizontal flips are off by
default: left and right hands can mean different actions.

Example:
    >>> sets = load_data_folder(Path("run/data"), max_size=224)  # doctest: +SKIP
    >>> loader = train_loader(AugmentedCrops(sets.train, Augment(224)), batch=32, epoch=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrihar.errors import BadInputError
from lrihar.sources import IMAGE_SUFFIXES

UNLABELLED = -1


@dataclass
class CropSet:
    """Decoded crops with their class index (``-1``: unlabelled) and file paths."""

    images: list[np.ndarray]
    labels: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def counts(self, classes: list[str]) -> dict[str, int]:
        c = Counter(int(v) for v in self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(classes)}


@dataclass
class DataSets:
    """The train / val (/ unlabelled) crops of a data folder and its class names."""

    classes: list[str]
    train: CropSet
    val: CropSet
    unlabelled: CropSet | None = None
    val_is_train: bool = False
    folder: str = ""
    notes: list[str] = field(default_factory=list)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(split_dir: Path) -> dict[str, str]:
    """Class name -> folder name for an ImageFolder split: from the export's ``manifest.json``
    when there is one (class names may have been made file-safe), else the sub-folders, sorted."""
    manifest = split_dir.parent / "manifest.json"
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            folders = doc.get("folders") or {c: c for c in doc["classes"]}
            return {c: folders[c] for c in doc["classes"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{manifest}: not an lrihar export manifest ({exc}); remove it to use "
                                "the class folders as they are") from None
    return {p.name: p.name for p in sorted(split_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def read_image(path: Path, max_side: int) -> np.ndarray:
    """An RGB crop, the longer side capped at ``max_side``; an unreadable file is bad input."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise BadInputError(f"{path}: not a readable image ({exc}); remove or replace it") from None
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    return image


def read_split(split_dir: Path, folders: dict[str, str], max_side: int, require_each: bool) -> CropSet:
    """Crops of one split; ``require_each``: every class folder must hold an image (training)."""
    images, labels, paths = [], [], []
    for index, (name, folder) in enumerate(folders.items()):
        class_dir = split_dir / folder
        files = _images_in(class_dir) if class_dir.is_dir() else []
        if require_each and not files:
            raise BadInputError(
                f"{class_dir}: class {name!r} has no training crops; label some crops of it (lrihar review) "
                "or remove the class from lrihar.yaml / the folder, then train again")
        for path in files:
            images.append(read_image(path, max_side))
            labels.append(index)
            paths.append(str(path))
    return CropSet(images, np.asarray(labels, dtype=np.int64), paths)


def read_unlabelled(folder: Path, max_side: int) -> CropSet:
    files = _images_in(folder) if folder.is_dir() else []
    return CropSet([read_image(p, max_side) for p in files], np.full(len(files), UNLABELLED, np.int64),
                   [str(p) for p in files])


def load_data_folder(root: Path, max_size: int, with_unlabelled: bool = False) -> DataSets:
    """Read ``root/train``, ``root/val`` and (``with_unlabelled``) ``root/unlabelled``.

    Raises:
        BadInputError: no ``train`` folder, fewer than two classes, a class with no training crop,
            an unreadable image.
    """
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise BadInputError(f"{root}: no train/ folder; give an ImageFolder set with train/<class>/ and "
                            "val/<class>/ (lrihar export -f imagefolder writes one)")
    folders = class_folders(train_dir)
    if len(folders) < 2:
        raise BadInputError(f"{train_dir}: {len(folders)} class folder(s); a classifier needs at least two")
    max_side = 2 * max_size
    sets = DataSets(list(folders), read_split(train_dir, folders, max_side, require_each=True),
                    CropSet([], np.zeros(0, np.int64), []), folder=str(root))
    if (root / "val").is_dir():
        sets.val = read_split(root / "val", folders, max_side, require_each=False)
    if not len(sets.val):
        sets.val, sets.val_is_train = sets.train, True
        sets.notes.append("no validation crops: accuracy is measured on the training crops (optimistic)")
    if with_unlabelled:
        sets.unlabelled = read_unlabelled(root / "unlabelled", max_side)
    return sets


@dataclass(frozen=True)
class Augment:
    """Training augmentation for hand crops (torchvision v2), seeded per call.

    Attributes:
        size: output square in pixels.
        hflip: mirror half the crops (off by default: handedness can carry meaning).
        scale: area range of the random resized crop.
        rotation: maximum rotation in degrees (applied to half the crops).
        jitter: brightness / contrast / saturation jitter.
    """

    size: int
    hflip: bool = False
    scale: tuple[float, float] = (0.8, 1.0)
    rotation: float = 15.0
    jitter: float = 0.3

    def transform(self):
        from torchvision.transforms import v2

        ops = [v2.RandomResizedCrop(self.size, scale=self.scale, ratio=(0.75, 4 / 3), antialias=True)]
        if self.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if self.rotation:
            ops.append(v2.RandomApply([v2.RandomRotation(self.rotation)], p=0.5))
        if self.jitter:
            # no hue jitter: skin tone carries little, and hue is the slowest op by far
            ops.append(v2.ColorJitter(self.jitter, self.jitter, self.jitter))
        return v2.Compose(ops)


def sample_seed(seed: int, round_: int, index: int) -> int:
    """The augmentation seed of crop ``index`` in epoch (or augmentation round) ``round_``."""
    return ((seed * 1_000_003 + round_) * 1_000_033 + index) % (2**63)


def augment(image: np.ndarray, transform, seed: int, mean, std):
    """One augmented, normalised CHW float tensor; the global torch RNG is left untouched.

    The random draws (crop box, rotation, jitter) do not depend on the output size, so the same
    seed gives the same view at a teacher's and at a student's input size.
    """
    import torch

    threads = torch.get_num_threads()
    # Ops on one small image: the intra-op thread pool only adds overhead (4× slower with 2).
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = transform(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    finally:
        torch.set_num_threads(threads)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (out.float() / 255.0 - m) / s


class AugmentedCrops:
    """A map-style dataset of augmented crops: ``{"pixels", "label", "teacher"}`` per item.

    Args:
        crops: the crops.
        augment: the augmentation (its ``size`` is the model's input size).
        mean, std: the model's normalisation.
        seed: base seed.
        teacher: cached teacher logits ``(N, rounds, classes)``; item ``i`` in epoch ``e`` uses
            augmentation round ``e % rounds`` and its logits (distillation). Without it every
            epoch is a new round.
    """

    def __init__(self, crops: CropSet, augment_: Augment, mean, std, seed: int = 0, teacher=None) -> None:
        self.crops, self.augment, self.mean, self.std, self.seed = crops, augment_, mean, std, seed
        self.teacher = teacher
        self._transform = augment_.transform()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.crops)

    def round_of(self, epoch: int) -> int:
        return epoch % self.teacher.shape[1] if self.teacher is not None else epoch

    def __getitem__(self, i: int) -> dict:
        import torch

        r = self.round_of(self.epoch)
        item = {"pixels": augment(self.crops.images[i], self._transform, sample_seed(self.seed, r, i),
                                  self.mean, self.std),
                "label": torch.tensor(int(self.crops.labels[i]))}
        if self.teacher is not None:
            item["teacher"] = self.teacher[i, r]
        return item


def balance_weights(labels: np.ndarray) -> np.ndarray:
    """Per-crop sampling weights that give every class the same expected share per epoch."""
    counts = Counter(int(v) for v in labels)
    return np.array([1.0 / counts[int(v)] for v in labels], dtype=np.float64)


def train_loader(dataset: AugmentedCrops, batch: int, epoch: int, seed: int = 0,
                 balance_by: np.ndarray | None = None):
    """A DataLoader over one epoch: ``len(dataset)`` crops, drawn class-balanced (with replacement,
    weights from ``balance_by``: class per crop) or shuffled; the order depends on (seed, epoch)
    only, so a resumed run replays the same epochs."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

    dataset.epoch = epoch
    generator = torch.Generator().manual_seed(sample_seed(seed, epoch, 7))
    if balance_by is not None:
        sampler = WeightedRandomSampler(torch.from_numpy(balance_weights(balance_by)), len(dataset),
                                        replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    # Crops are in memory and augmentation is cheap next to a training step: no worker processes.
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=0)


def export_project_set(project, folder: Path, val_fraction: float, seed: int, include_ng: bool,
                       padding: float):
    """The project's labelled crops as an ImageFolder set (``lrihar export -f imagefolder``),
    split by source into train / val; returns the export summary."""
    from lrihar.dataset.export import export_dataset

    if not 0 <= val_fraction < 1:
        raise BadInputError(f"--val-fraction: must lie in [0, 1), not {val_fraction}")
    return export_dataset(project, folder, "imagefolder", fractions=(1 - val_fraction, val_fraction, 0.0),
                          seed=seed, include_ng=include_ng, padding=padding)


def export_unlabelled(project, folder: Path, padding: float) -> int:
    """Crops of the project's detections that carry no label (and are not marked wrong) as
    ``folder/<frame>_<id>.jpg``, for distillation; returns how many."""
    from PIL import Image

    from lrihar.crops import frame_stem, iter_crops

    ids = {r.id for r in project.store.detections() if r.action is None}
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for row, crop in iter_crops(project.store, padding, only=ids):
        Image.fromarray(crop).save(folder / f"{frame_stem(row)}_{row.id}.jpg", quality=95)
        n += 1
    return n
