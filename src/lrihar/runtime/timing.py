"""Per-stage timings and end-to-end latency over a bounded window (memory stays flat on an
endless stream)."""

from __future__ import annotations

from collections import deque

import numpy as np

STAGES = ("decode", "detect", "classify", "track")


class StageTimes:
    """The last ``window`` samples of each stage (seconds per frame) and of end-to-end latency."""

    def __init__(self, window: int = 2000) -> None:
        self.samples: dict[str, deque[float]] = {s: deque(maxlen=window) for s in (*STAGES, "latency")}
        self.frames = 0

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        """``seconds`` spent on ``count`` frames (a batch) in ``stage``; one sample per frame."""
        per = seconds / max(count, 1)
        self.samples[stage].extend([per] * max(count, 1))

    def summary(self) -> dict[str, dict[str, float]]:
        """p50 / p99 in milliseconds per stage and for latency (stages with no sample left out)."""
        out = {}
        for stage, values in self.samples.items():
            if values:
                a = np.fromiter(values, float) * 1000
                out[stage] = {"p50_ms": round(float(np.percentile(a, 50)), 2),
                              "p99_ms": round(float(np.percentile(a, 99)), 2)}
        return out

    def line(self) -> str:
        """One line for the console."""
        return "  ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f} ms" for k, v in self.summary().items())
