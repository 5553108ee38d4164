"""The template bank: a few labelled crops per class, embedded once and cached in the store.

Templates live in one folder per class: a templates root (``classify.templates``, or
``--templates``) with a sub-folder per class, whose names are the classes when the project file
names none; or a class's own ``classes[].templates``. Embeddings are cached by file content
(SHA-1) and encoder settings, so adding a template embeds only that file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.errors import BadInputError
from lrihar.models.encoders.base import Crop, Encoder
from lrihar.sources import IMAGE_SUFFIXES, read_image
from lrihar.store import Store


@dataclass(frozen=True)
class TemplateFile:
    """One template image and its class."""

    class_name: str
    path: Path
    sha1: str


@dataclass(frozen=True)
class TemplateBank:
    """Embedded templates: ``vectors[i]`` belongs to ``classes[template_class[i]]``."""

    classes: list[str]
    files: list[TemplateFile]
    vectors: np.ndarray
    template_class: np.ndarray

    def counts(self) -> dict[str, int]:
        return {c: int((self.template_class == i).sum()) for i, c in enumerate(self.classes)}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover_templates(folders: dict[str, Path]) -> list[TemplateFile]:
    """Every template image of every class, hashed; empty or missing folders are errors."""
    files = []
    for name, folder in folders.items():
        if not folder.is_dir():
            raise BadInputError(f"{folder}: template folder of class {name!r} not found")
        images = _images_in(folder)
        if not images:
            raise BadInputError(f"{folder}: class {name!r} has no template images "
                                "(jpg, png, bmp, webp, tif); add a few crops of the action")
        for path in images:
            files.append(TemplateFile(name, path, hashlib.sha1(path.read_bytes()).hexdigest()))
    return files


def template_crops(files: list[TemplateFile], with_landmarks: bool) -> list[Crop]:
    """Read templates (unreadable ones are errors naming the file); add hand landmarks if asked."""
    images = [read_image(f.path) for f in files]
    if not with_landmarks:
        return [Crop(img) for img in images]
    from lrihar.models.detectors import create_detector

    # Templates are tight crops: the zoom-out view lets the palm detector see the whole hand.
    detector = create_detector("mediapipe-hands", zoom_out=2.0, max_num_hands=2)
    crops = []
    for img in images:
        dets = detector(img)
        if len(dets):
            best = int(np.argmax(dets.confidence))
            crops.append(Crop(img, dets.data["world_landmarks"][best], str(dets.data["handedness"][best]),
                              dets.data["landmarks"][best]))
        else:
            crops.append(Crop(img))
    return crops


def build_bank(store: Store, encoder: Encoder, encoder_key: str, folders: dict[str, Path]) -> TemplateBank:
    """Embed the templates, reusing cached embeddings of unchanged files."""
    files = discover_templates(folders)
    cached = store.template_embeddings(encoder_key, {f.sha1 for f in files})
    todo = [f for f in files if f.sha1 not in cached]
    if todo:
        vectors = encoder.embed(template_crops(todo, encoder.uses_landmarks))
        fresh = {f.sha1: v for f, v in zip(todo, vectors, strict=True)}
        store.put_template_embeddings(encoder_key, fresh)
        cached |= fresh
    classes = list(folders)
    return TemplateBank(
        classes=classes,
        files=files,
        vectors=np.stack([cached[f.sha1] for f in files]).astype(np.float32),
        template_class=np.array([classes.index(f.class_name) for f in files]),
    )
