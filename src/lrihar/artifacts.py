"""The one home of trained and exported models: run folders, their records, deployed files,
and resolving a detector, a classifier or a line's packed models by name.

A project keeps its models under ``PROJECT/models/``::

    models/detector/<run>/     lrihar-train.json, weights/best.pt, last.pt, export/*.onnx
    models/classifier/<run>/   lrihar-train.json, classifier.json, best.safetensors, last.pt,
                               export/classifier.json (the export record) + *.onnx

and ``lrihar models pack -p`` carries a line's deployed models to a plant as
``<models dir>/line__<line>/{detector,classifier}/*.onnx``. ``run``, ``annotate --detector
yolo``, ``classify --classifier``, ``export-runtime`` and ``models pack`` all ask this module;
nothing else walks ``models/``.

Example:
    >>> run_dir = find_run(DETECTOR, project, None)  # doctest: +SKIP
    >>> read_record(run_dir)["summary"]["status"]  # doctest: +SKIP
    'done'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrihar.errors import BadInputError, ModelLoadError
from lrihar.naming import safe_file_name

if TYPE_CHECKING:
    from lrihar.project import Project

RECORD = "lrihar-train.json"
"""A run folder's record: its command, config and summary so far."""

CLASSIFIER_EXPORT = "classifier.json"
"""``export/classifier.json``: what ``export-runtime --classifier`` wrote and which file it deployed."""

LINE_PREFIX = "line__"
"""Packed trained models of a line sit in ``<models dir>/line__<line>/{detector,classifier}/``."""

MODELS_DIR_ENV = "LRIHAR_MODELS_DIR"
"""Where packed models are looked up (``--models-dir`` sets it)."""


@dataclass(frozen=True)
class RunKind:
    """A kind of training run: its folder under ``models/`` and the words its messages use."""

    folder: str
    best: str
    last: str
    name_option: str
    listing: str
    trained: str


DETECTOR = RunKind("detector", "weights/best.pt", "weights/last.pt", "--run/--name", "runs", "detector")
CLASSIFIER = RunKind("classifier", "best.safetensors", "last.pt", "run", "classifier runs", "classifier")


def runs_root(kind: RunKind, project: Project) -> Path:
    """``PROJECT/models/<kind>``: one folder per training run."""
    return project.root / "models" / kind.folder


def read_record(run_dir: Path) -> dict[str, Any]:
    """The ``lrihar-train.json`` of a run folder ({} if absent)."""
    path = run_dir / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def write_record(run_dir: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` (stamped with ``updated_at``) as the run's ``lrihar-train.json``, atomically."""
    doc = {**doc, "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = run_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(run_dir / RECORD)


def next_run_name(root: Path, stem: str) -> str:
    """``<stem>-<n>`` with the first ``n`` not taken under ``root`` (``stem`` made file-safe)."""
    stem = safe_file_name(stem)
    n = 1
    while (root / f"{stem}-{n}").exists():
        n += 1
    return f"{stem}-{n}"


def list_runs(kind: RunKind, project: Project, command: str | None = None) -> list[Path]:
    """Run folders of ``kind`` (of ``command`` only, e.g. finetune or distill), oldest first."""
    root = runs_root(kind, project)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / RECORD).is_file()
            and (command is None or read_record(p).get("command") == command)]
    return sorted(runs, key=lambda p: ((p / RECORD).stat().st_mtime, p.name))


def find_run(kind: RunKind, project: Project, name: str | None, command: str | None = None,
             need: str | None = None) -> Path:
    """The run ``name`` (default: the latest ``command`` run that has ``need``, by default the
    kind's best weights); a clear error if none."""
    need = need or kind.best
    root = runs_root(kind, project)
    if name is not None:
        folder = root / safe_file_name(name)
        if not (folder / need).is_file():
            have = ", ".join(p.name for p in list_runs(kind, project)) or "none"
            raise BadInputError(f"{kind.name_option} {name!r}: {folder / need} not found "
                                f"({kind.listing}: {have})")
        return folder
    runs = [p for p in list_runs(kind, project, command) if (p / need).is_file()]
    if not runs:
        what = f"`lrihar {command}`" if command else ("`lrihar train-detector`" if kind is DETECTOR
                                                     else "`lrihar finetune`")
        raise BadInputError(f"{root}: no trained {kind.trained} with {need}; run {what} first")
    return runs[-1]


def resumable_run(kind: RunKind, project: Project, name: str | None, command: str | None = None) -> Path:
    """The run to continue: ``name``, else the latest unfinished (``command``) run with its last
    weights; a finished run, or one of another command, is bad input."""
    if name is not None:
        run_dir = find_run(kind, project, name, need=kind.last)
    else:
        runs = [p for p in list_runs(kind, project, command) if (p / kind.last).is_file()
                and read_record(p).get("summary", {}).get("status") != "done"]
        if not runs:
            what = f"{command} run" if command else "training run"
            raise BadInputError(f"--resume: no unfinished {what} with {kind.last} under "
                                f"{runs_root(kind, project)}; start a new one without --resume")
        run_dir = runs[-1]
    record = read_record(run_dir)
    if command is not None and record.get("command") != command:
        raise BadInputError(f"--resume: run {run_dir.name!r} is a {record.get('command')} run; "
                            f"resume it with `lrihar {record.get('command')} --resume --name {run_dir.name}`")
    if record.get("summary", {}).get("status") == "done":
        raise BadInputError(f"--resume: run {run_dir.name!r} finished all its epochs; nothing to resume")
    return run_dir


def exported_detector(path: Path) -> Path:
    """The newest recorded ``export/*.onnx`` under a run folder or a project's ``models/detector``,
    checked against the SHA-256 its export record names.

    An ONNX file without its record beside it (an export cut short, a file copied in by hand)
    is not a candidate; give such a file as ``--model PATH.onnx``.
    """
    candidates = []
    for base in (path, path / "models" / DETECTOR.folder):
        candidates += list(base.glob("export/*.onnx")) + list(base.glob("*/export/*.onnx"))
    recorded = [p for p in candidates if not p.is_symlink() and recorded_sha256(p) is not None]
    if not recorded:
        raise ModelLoadError(
            f"{path}: no exported detector found (looked for models/detector/*/export/*.onnx with "
            "its export record); train and export one with `lrihar train-detector` and "
            "`lrihar export-runtime --detector`, or pass the model as --model PATH.onnx "
            "(detector.model in the project file)")
    newest = max(recorded, key=lambda p: (p.stat().st_mtime, str(p)))
    check_recorded(newest)
    return newest


def recorded_sha256(onnx: Path) -> str | None:
    """The SHA-256 the export record beside ``onnx`` names, if any: a classifier's
    ``classifier.json`` (its ``files``), a detector's ``<stem>.json`` (an INT8 copy's: its float
    model's record, ``int8.sha256``)."""
    classifier = onnx.parent / CLASSIFIER_EXPORT
    if classifier.is_file():
        try:
            files = json.loads(classifier.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            return None
        digests = {Path(f["path"]).name: f.get("sha256") for f in files
                   if isinstance(f, dict) and "path" in f}
        return digests.get(onnx.name)
    record = onnx.with_name(onnx.stem.removesuffix("-int8") + ".json")
    try:
        doc = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if onnx.stem.endswith("-int8"):
        doc = doc.get("int8") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("onnx") == onnx.name and isinstance(doc.get("sha256"), str):
        return doc["sha256"]
    return None


_CHECKED: dict[tuple[str, int, int], str] = {}


def check_recorded(path: Path, expected: str | None = None) -> None:
    """Refuse ``path`` unless its content has the SHA-256 its record names (``expected``, default
    :func:`recorded_sha256`); hashed once per (path, size, mtime) in this process."""
    from lrihar.paths import sha256_of

    expected = expected or recorded_sha256(path)
    if expected is None:
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = sha256_of(path)
    if _CHECKED[key] != expected:
        raise ModelLoadError(f"{path}: its content does not match the SHA-256 its export record names "
                             f"({expected[:12]}...): the file was changed or damaged since it was "
                             "exported; export it again (`lrihar export-runtime`)")


def deployed_classifier(run_dir: Path) -> Path:
    """The ONNX file ``export-runtime --classifier`` chose for run ``run_dir``."""
    record = run_dir / "export" / CLASSIFIER_EXPORT
    if not record.is_file():
        raise BadInputError(f"run {run_dir.name!r} has no exported classifier; run "
                            f"`lrihar export-runtime --classifier --run {run_dir.name}` first")
    # by name: the project folder may have moved since the export
    doc = json.loads(record.read_text())
    path = record.parent / Path(doc["deployed"]).name
    if not path.is_file() or path.is_symlink():
        raise BadInputError(f"{path}: the exported classifier is gone; export the run again")
    check_recorded(path)
    return path


def resolve_classifier(project: Project, text: str) -> Path:
    """The exported classifier ``text`` names: an ``.onnx`` path, ``student`` (the latest distilled
    run's deployed export), ``teacher`` (the latest finetuned run's) or a run name."""
    path = Path(text).expanduser()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise BadInputError(f"--classifier: {path} does not exist")
        return path
    if text in ("student", "teacher"):
        command = "distill" if text == "student" else "finetune"
        runs = [p for p in list_runs(CLASSIFIER, project, command)
                if (p / "export" / CLASSIFIER_EXPORT).is_file()]
        if not runs:
            raise BadInputError(f"--classifier {text}: no exported {text}; run `lrihar {command}` and "
                                "`lrihar export-runtime --classifier` first")
        return deployed_classifier(runs[-1])
    return deployed_classifier(find_run(CLASSIFIER, project, text))


def line_pack_folder(models_dir: str | Path, line: str) -> Path:
    """``<models dir>/line__<line>``: where ``models pack -p`` puts a line's models."""
    return Path(models_dir) / f"{LINE_PREFIX}{safe_file_name(line)}"


def packed_line_model(line: str, kind: str, models_dir: str | Path | None = None) -> Path | None:
    """The packed ``kind`` ("detector" or "classifier") ONNX of ``line`` in ``models_dir``
    (default ``$LRIHAR_MODELS_DIR``), if any: a file the pack's manifest lists, inside the pack,
    not a link, with the content the manifest names (else :class:`ModelLoadError`)."""
    root = models_dir or os.environ.get(MODELS_DIR_ENV)
    if not root:
        return None
    pack = line_pack_folder(root, line)
    if not pack.is_dir():
        return None
    listed = pack_manifest(pack)["files"]
    files = sorted(f for f in listed if Path(f).parent == Path(kind) and f.endswith(".onnx"))
    if not files:
        return None
    path = pack_member(pack, files[-1])
    check_recorded(path, listed[files[-1]])
    return path


PACK_MANIFEST = "lrihar-model.json"
"""A packed model's manifest: ``{"model_id", "revision", "files": {relative path: SHA-256}}``."""


def pack_manifest(pack: Path) -> dict[str, Any]:
    """The manifest of the packed model in ``pack``, checked for its shape."""
    path = pack / PACK_MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{pack}: not a packed model (no {PACK_MANIFEST}); pack it with "
                             "`lrihar models pack`") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable manifest ({exc}); pack the model again") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in files.items()):
        raise ModelLoadError(f"{path}: its 'files' must map relative paths to SHA-256 sums; pack the "
                             "model again")
    return doc


def pack_member(pack: Path, relative: str) -> Path:
    """``pack / relative`` if it is a file inside the pack and no link (else :class:`ModelLoadError`)."""
    path = pack / relative
    if Path(relative).is_absolute() or ".." in Path(relative).parts or path.is_symlink() or \
            not path.resolve().is_relative_to(pack.resolve()):
        raise ModelLoadError(f"{pack / PACK_MANIFEST}: lists {relative!r}, which is not a file inside the "
                             "pack; pack the model again")
    if not path.is_file():
        raise ModelLoadError(f"{path}: listed in the pack's manifest but missing; pack the model again")
    return path
