"""Classifier run folders: ``PROJECT/models/classifier/<run>/`` and their ``lrihar-train.json``.

A run folder holds ``classifier.json`` (what the model is), ``best.safetensors``, ``last.pt``,
``history.csv``, ``curve.png``, ``data/`` (the exported crops, finetune) and ``export/`` (ONNX).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lrihar.errors import BadInputError
from lrihar.naming import safe_file_name
from lrihar.train.detector import RECORD, read_record


def classifier_root(project) -> Path:
    """``PROJECT/models/classifier``: one folder per finetune / distill run."""
    return project.root / "models" / "classifier"


def next_name(root: Path, stem: str) -> str:
    """``<stem>-<n>`` with the first ``n`` not taken under ``root``."""
    stem = safe_file_name(Path(stem).name if "/" in stem else stem)
    n = 1
    while (root / f"{stem}-{n}").exists():
        n += 1
    return f"{stem}-{n}"


def write_record(run_dir: Path, command: str, config: Any, summary: dict[str, Any],
                 store_run_id: int | None) -> None:
    """Write ``lrihar-train.json`` atomically: the command, its config and the summary so far."""
    doc = {"command": command, "config": asdict(config), "store_run_id": store_run_id, "summary": summary,
           "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = run_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(run_dir / RECORD)


def classifier_runs(project, command: str | None = None) -> list[Path]:
    """Run folders (of ``command``: finetune or distill, else both), oldest first."""
    root = classifier_root(project)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / RECORD).is_file()
            and (command is None or read_record(p).get("command") == command)]
    return sorted(runs, key=lambda p: ((p / RECORD).stat().st_mtime, p.name))


def find_run(project, name: str | None, command: str | None = None, need: str = "best.safetensors") -> Path:
    """The run ``name`` (default: the latest ``command`` run that has ``need``); a clear error if none."""
    root = classifier_root(project)
    if name is not None:
        folder = root / safe_file_name(name)
        if not (folder / need).is_file():
            have = ", ".join(p.name for p in classifier_runs(project)) or "none"
            raise BadInputError(f"run {name!r}: {folder / need} not found (classifier runs: {have})")
        return folder
    runs = [p for p in classifier_runs(project, command) if (p / need).is_file()]
    if not runs:
        what = f"`lrihar {command}`" if command else "`lrihar finetune`"
        raise BadInputError(f"{root}: no trained classifier with {need}; run {what} first")
    return runs[-1]


def resumable(project, name: str | None, command: str) -> Path:
    """The run to continue: ``name``, else the latest unfinished ``command`` run with ``last.pt``."""
    if name is not None:
        run_dir = find_run(project, name, need="last.pt")
    else:
        runs = [p for p in classifier_runs(project, command) if (p / "last.pt").is_file()
                and read_record(p).get("summary", {}).get("status") != "done"]
        if not runs:
            raise BadInputError(f"--resume: no unfinished {command} run with last.pt under "
                                f"{classifier_root(project)}; start a new one without --resume")
        run_dir = runs[-1]
    record = read_record(run_dir)
    if record.get("command") != command:
        raise BadInputError(f"--resume: run {run_dir.name!r} is a {record.get('command')} run; "
                            f"resume it with `lrihar {record.get('command')} --resume --name {run_dir.name}`")
    if record.get("summary", {}).get("status") == "done":
        raise BadInputError(f"--resume: run {run_dir.name!r} finished all its epochs; nothing to resume")
    return run_dir
