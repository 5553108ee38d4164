"""Classifier run folders under ``PROJECT/models/classifier/`` (see :mod:`lrihar.artifacts`).

A run folder holds ``classifier.json`` (what the model is), ``best.safetensors``, ``last.pt``,
``history.csv``, ``curve.png``, ``data/`` (the exported crops, finetune) and ``export/`` (ONNX).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lrihar.artifacts import write_record as write_run_record


def write_record(run_dir: Path, command: str, config: Any, summary: dict[str, Any],
                 store_run_id: int | None) -> None:
    """Write ``lrihar-train.json`` atomically: the command, its config and the summary so far."""
    write_run_record(run_dir, {"command": command, "config": asdict(config), "store_run_id": store_run_id,
                               "summary": summary})
