"""train-detector, export-runtime and the yolo backend, end to end on a tiny synthetic set."""

from __future__ import annotations

from detector_fixtures import tiny_yolo  # noqa: F401  (session fixture)


def test_smoke(tiny_yolo):
    print(tiny_yolo["train"], tiny_yolo["export"], tiny_yolo["network_attempts"])
