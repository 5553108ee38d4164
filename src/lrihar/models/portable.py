"""Carrying hub models to air-gapped plants: pack them on a connected machine, load them offline.

``pack`` copies a model's files out of the Hugging Face cache (downloading them first where
asked and possible) into ``DIR/<org>__<name>/`` with a manifest of SHA-256 sums. Copy ``DIR`` to
the plant and point ``LRIHAR_MODELS_DIR`` at it: every hub id lrihar loads (detectors, encoders)
is then looked up there first, with no network.

Example:
    >>> pack_models(["IDEA-Research/grounding-dino-tiny"], "models/", download=True)  # doctest: +SKIP
    $ LRIHAR_MODELS_DIR=models/ lrihar annotate clip.mp4 -p proj --detector grounding-dino
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lrihar.artifacts import (
    MODELS_DIR_ENV,
    PACK_MANIFEST,
    exported_detector,
    line_pack_folder,
    pack_manifest,
    pack_member,
    resolve_classifier,
)
from lrihar.errors import BadInputError, ModelLoadError
from lrihar.paths import sha256_of

MANIFEST = PACK_MANIFEST


def folder_name(model_id: str) -> str:
    """``org/name`` -> ``org__name`` (one folder per model)."""
    if not model_id or model_id.count("/") > 1 or ".." in model_id:
        raise BadInputError(f"{model_id!r}: not a Hugging Face model id (org/name)")
    return model_id.replace("/", "__")


def packed_path(model_id: str, models_dir: str | Path | None = None) -> Path | None:
    """The packed copy of ``model_id`` in ``models_dir`` (default ``$LRIHAR_MODELS_DIR``), if any."""
    root = models_dir or os.environ.get(MODELS_DIR_ENV)
    if not root or "/" not in model_id or Path(model_id).expanduser().exists():
        return None
    path = Path(root) / folder_name(model_id)
    return path if (path / MANIFEST).is_file() else None


@dataclass(frozen=True)
class PackedModel:
    model_id: str
    path: Path
    files: int
    bytes: int


def pack_models(model_ids: list[str], out: str | Path, download: bool = False,
                cache_dir: str | None = None) -> list[PackedModel]:
    """Copy each model from the local Hugging Face cache (or the hub, with ``download``) to ``out``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    out = Path(out)
    packed = []
    for model_id in model_ids:
        target = out / folder_name(model_id)
        try:
            snapshot = Path(snapshot_download(model_id, cache_dir=cache_dir, local_files_only=not download))
        except LocalEntryNotFoundError:
            raise BadInputError(f"{model_id}: not in the Hugging Face cache of this machine; run with "
                                "--download on a machine with access to the hub") from None
        except OSError as exc:
            raise BadInputError(f"{model_id}: cannot fetch ({str(exc).splitlines()[0]})") from None
        tmp = _staging(out, target)
        files = {}
        for src in sorted(p for p in snapshot.rglob("*") if p.is_file()):
            rel = src.relative_to(snapshot)
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # follows the cache's symlinks to the real blobs
            files[str(rel)] = sha256_of(dst)
        (tmp / MANIFEST).write_text(json.dumps({"model_id": model_id, "revision": snapshot.name,
                                                "files": files}, indent=1, sort_keys=True) + "\n")
        _clear(target)
        tmp.rename(target)  # a half-copied model never looks packed
        size = sum((target / f).stat().st_size for f in files)
        packed.append(PackedModel(model_id, target, len(files), size))
    return packed


def verify(path: Path) -> list[str]:
    """Files of a packed model whose content no longer matches its manifest, or that lie outside
    the pack or are links (empty = intact); an unreadable manifest is :class:`ModelLoadError`."""
    bad = []
    for f, digest in pack_manifest(path)["files"].items():
        try:
            member = pack_member(path, f)
        except ModelLoadError:
            bad.append(f)
            continue
        if sha256_of(member) != digest:
            bad.append(f)
    return bad


def list_packed(models_dir: str | Path) -> list[dict]:
    """Every packed model in ``models_dir`` with its id, revision and integrity."""
    root = Path(models_dir)
    if not root.is_dir():
        raise BadInputError(f"{root}: no such models folder")
    out = []
    for manifest in sorted(p for p in root.glob(f"*/{MANIFEST}") if not p.parent.name.startswith(".")):
        doc = pack_manifest(manifest.parent)
        bad = verify(manifest.parent)
        out.append({"model_id": doc["model_id"], "revision": doc["revision"], "files": len(doc["files"]),
                    "path": str(manifest.parent), "intact": not bad, "changed": bad})
    return out


def pack_line_models(project, out: str | Path) -> PackedModel:
    """Copy the project's deployed models (the newest exported detector, and the newest exported
    student, else teacher) into ``out/line__<line>/`` for each line of the project, with a
    manifest, so one folder carries a whole line's models to the plant; ``lrihar run`` there finds
    them through ``--models-dir``.

    Returns:
        The first line's pack (every line's holds the same files).

    Raises:
        BadInputError: the project has exported neither a detector nor a classifier.
    """
    from lrihar.lines import project_layout

    found: dict[str, Path] = {}
    with contextlib.suppress(ModelLoadError):
        found["detector"] = exported_detector(project.root)
    for kind in ("student", "teacher"):
        try:
            found["classifier"] = resolve_classifier(project, kind)
            break
        except BadInputError:
            continue
    if not found:
        raise BadInputError(f"{project.root}: no exported detector or classifier to pack; run `lrihar "
                            "export-runtime --detector` / `--classifier` first")
    packs = [_pack_line(found, out, line) for line in project_layout(project.config).lines]
    return packs[0]


def _pack_line(found: dict[str, Path], out: str | Path, line: str) -> PackedModel:
    target = line_pack_folder(out, line)
    tmp = _staging(Path(out), target)
    files = {}
    for kind, src in found.items():
        rel = Path(kind) / src.name
        (tmp / kind).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / rel)
        files[str(rel)] = sha256_of(tmp / rel)
    (tmp / MANIFEST).write_text(json.dumps({"model_id": f"line:{line}", "revision": "trained",
                                            "files": files}, indent=1, sort_keys=True) + "\n")
    _clear(target)
    tmp.rename(target)
    return PackedModel(f"line:{line}", target, len(files), sum((target / f).stat().st_size for f in files))


def _staging(out: Path, target: Path) -> Path:
    """A fresh folder in ``out`` to pack into, moved to ``target`` once whole: made here, so no
    link planted under a predictable name can send the copy elsewhere."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=out))


def _clear(target: Path) -> None:
    """Remove an earlier pack at ``target`` (a link planted there: the link, not what it points to)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    else:
        shutil.rmtree(target, ignore_errors=True)
