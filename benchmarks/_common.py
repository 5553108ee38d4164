"""Helpers shared by the benchmark scripts: dev-set paths, machine facts, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from lrihar.versions import machine_info

REPO = Path(__file__).resolve().parents[1]
HANDS_DEV = next((p for p in (REPO.parent / "shared/data/hands-dev", REPO / "shared/data/hands-dev")
                  if p.is_dir()), REPO.parent / "shared/data/hands-dev")
RESULTS = REPO / "benchmarks" / "results"


def load_gt(dataset: str) -> list[dict]:
    gt = json.loads((HANDS_DEV / dataset / "gt.json").read_text())
    return [im for im in gt["images"] if im["hands"] is not None]


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine_info(), **result}, indent=2) + "\n")
    return path


def write_model_yaml(arch: str, path: Path, changes: dict) -> Path:
    """``path``: the model yaml of architecture ``arch`` with ``changes`` (top-level keys) applied;
    its ``yaml_file`` names ``path``, where ultralytics then writes an export of it."""
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    from lrihar.train.detector import model_source

    doc = yaml_model_load(model_source(arch)) | changes | {"yaml_file": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
