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

from lrihar.config import ProjectConfig
from lrihar.errors import BadInputError
from lrihar.models.encoders.base import Crop, Encoder
from lrihar.naming import check_class_name
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


NG_LABEL = "NG"
"""The rejection label: never a class, so never a template folder."""


def template_subfolders(root: Path) -> dict[str, Path]:
    """Class name -> folder, for every sub-folder of a templates root.

    Hidden folders (``.cache``, ``.ipynb_checkpoints``) are tools' clutter, not classes; every
    other sub-folder name may become a class name, so it must be a valid one.

    Raises:
        BadInputError: the root is missing, or a sub-folder's name is not a valid class name.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"{root}: templates folder not found")
    subdirs = {check_class_name(p.name, f"{root}: template folder"): p
               for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if NG_LABEL in subdirs:
        raise BadInputError(f"{subdirs[NG_LABEL]}: 'NG' is reserved for the rejection class; rename "
                            "that template folder")
    return subdirs


def class_folders(cfg: ProjectConfig, templates_root: Path | None = None) -> dict[str, Path]:
    """Class name -> template folder.

    The classes are those the project file names, else the sub-folders of the templates root
    (``templates_root`` from the command line, else ``classify.templates``), named as the
    folders. With a root, a class's folder is ``ROOT/<name>``; without one, its own
    ``classes[].templates``.

    Raises:
        BadInputError: no classes, a class with no folder, a sub-folder naming no class of the
            project or not a valid class name.
    """
    root = templates_root or cfg.classify.templates
    names = [c.name for c in cfg.classes]
    if root is not None:
        root = Path(root)
        subdirs = template_subfolders(root)
        if not names:  # no classes in the project file: the sub-folders are the classes
            names = list(subdirs)
        unknown = sorted(set(subdirs) - set(names))
        if unknown:
            raise BadInputError(f"{root}: folder(s) {', '.join(unknown)} name no class of the project "
                                f"(classes: {', '.join(names)}); add them to `classes` or remove them")
        folders = {n: root / n for n in names}
    else:
        folders = {c.name: c.templates for c in cfg.classes if c.templates is not None}
        missing = [c.name for c in cfg.classes if c.templates is None]
        if missing:
            raise BadInputError(f"classes {', '.join(missing)}: no `templates` folder given in the "
                                "project file (set `classify.templates`, or pass --templates DIR)")
    if not folders:
        if root is not None:
            raise BadInputError(f"{root}: no class folders: make one sub-folder of a few template crops "
                                "per action class (its name is the class name), or list the classes "
                                "under `classes` in the project file")
        raise BadInputError("no action classes: set `classify.templates` in the project file (or pass "
                            "--templates DIR) to a folder with one sub-folder of template crops per "
                            "class, or list them under `classes`")
    return folders


def post_classes(cfg: ProjectConfig, posts: list[str] | None = None) -> list[str]:
    """The classes of ``posts`` (None: the project-wide ones, then every post's), in order of
    first appearance: each post's named classes, else the sub-folders of its templates root
    (none while that folder does not exist yet).

    Raises:
        BadInputError: an unknown post, or a template sub-folder's name is not a valid class name.
    """
    from lrihar.layout import project_layout

    layout = project_layout(cfg)
    names = [c.name for c in cfg.classes] if posts is None else []
    roots = [cfg.classify.templates] if posts is None and not names else []
    for post in [layout.post(p) for p in (posts if posts is not None else layout.posts)]:
        if post.classes:
            names += [n for n in post.class_names if n not in names]
        else:
            roots.append(post.templates)
    for root in dict.fromkeys(roots):  # posts often share one root: read it once
        if root is not None and Path(root).is_dir():
            names += [n for n in template_subfolders(root) if n not in names]
    return names


def project_classes(cfg: ProjectConfig, store: Store | None = None, every_label: bool = False) -> list[str]:
    """The project's action classes: the one answer the review page, export, evaluation and
    interchange share (through :attr:`lrihar.project.Project.classes`).

    The classes the project file names (project-wide, then each post's), else the sub-folders
    of ``classify.templates`` (and of posts' own templates roots; none while a folder does not
    exist yet), else the labels stored in ``store`` (a project classified with ``--templates``
    elsewhere). With ``every_label``, any other label stored follows, sorted, so that evaluation
    and export leave no labelled box out. NG is never one.

    Raises:
        BadInputError: a template sub-folder's name is not a valid class name.
    """
    names = post_classes(cfg)
    if store is not None and (every_label or not names):
        stored = store.db.execute("SELECT DISTINCT label FROM labels ORDER BY label")
        names += [n for (n,) in stored if n != NG_LABEL and n not in names]
    return names


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
