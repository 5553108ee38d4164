"""A csv stand-in for polars, for training on a machine that holds only torch and ultralytics."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _polars_stand_in() -> None:
    """ultralytics reads results.csv back with polars only to store it in the checkpoint; polars'
    wheel (54 MB) is too big to carry to a GPU machine, so there the csv module does that."""
    if _have("polars"):
        return
    import csv
    import io
    import types

    class _Frame:
        def __init__(self, rows: list[dict]) -> None:
            self.rows = rows

        def to_dict(self, as_series: bool = True) -> dict:
            keys = list(self.rows[0]) if self.rows else []
            return {k: [_number(r[k]) for r in self.rows] for k in keys}

    def _number(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    def read_csv(data, **_ignored) -> _Frame:
        text = data.decode() if isinstance(data, bytes) else Path(data).read_text()
        rows = csv.DictReader(io.StringIO(text))
        return _Frame([{k.strip(): v.strip() for k, v in r.items()} for r in rows])

    sys.modules["polars"] = types.SimpleNamespace(read_csv=read_csv)  # type: ignore[assignment]


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
