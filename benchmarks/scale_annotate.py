"""Frames/s of `lrihar annotate` with the local engine vs `--engine ray` with 1 and 2 workers.

The same detector-bound workload for all three, in one run: `mediapipe-hands` (the offline
default, two views per frame) on the hands-dev kneading clip upscaled to 1280×720 and looped
(synthetic frames where the dev data is absent), each engine into a fresh project. The Ray cluster
is started once before the timed runs (a cluster outlives a command); each timed Ray run includes
building its actors and their detectors, as every `annotate --engine ray` does.

Reported: frames/s per engine, the 2-worker speed-up over 1 worker and its scaling efficiency
(speed-up / 2), and Ray's per-frame overhead at 1 worker, (t_ray1 - t_local) / frames, also as a
share of the local per-frame time. Targets: speed-up ≥ 1.6; overhead ≤ 10 %.

Usage: python benchmarks/scale_annotate.py [--loops 6]  -> benchmarks/results/scale_annotate.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _common import REPO, write_result
from annotate_throughput import make_clip


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(label: str, run) -> dict:
    before = load()
    start = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - start
    out = {"seconds": round(seconds, 2), "frames": summary.frames_read, "boxes": summary.boxes,
           "frames_per_second": round(summary.frames_read / seconds, 2), "uptime_before": before,
           "uptime_after": load()}
    print(label, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=6, help="Times the 50-frame clip repeats.")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from lrihar.annotate.pipeline import annotate
    from lrihar.engines.ray_annotate import annotate_with_ray
    from lrihar.engines.ray_cluster import RayOptions
    from lrihar.project import Project, init_project

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(make_clip(Path(tmp) / "clip720p.mp4", args.loops))

        def project(name: str) -> Project:
            init_project(Path(tmp) / name)
            return Project.open(Path(tmp) / name)

        results = {"local": timed("local", lambda: annotate(project("local"), [clip]))}
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=1 << 30,
                 logging_level="WARNING", runtime_env={"env_vars": {
                     "PYTHONPATH": str(REPO / "src"), "RAY_USAGE_STATS_ENABLED": "0"}})
        cluster_start = round(time.perf_counter() - started, 2)
        for workers in (1, 2):
            options = RayOptions(workers=workers)
            results[f"ray_{workers}"] = timed(f"ray {workers} worker(s)", lambda o=options: annotate_with_ray(
                project(f"ray{o.workers}"), [clip], o))
        ray.shutdown()

    frames = results["local"]["frames"]
    t_local, t1, t2 = (results[k]["seconds"] for k in ("local", "ray_1", "ray_2"))
    speedup = t1 / t2
    overhead = (t1 - t_local) / frames
    write_result("scale_annotate", {
        "workload": f"mediapipe-hands (default settings) on {frames} frames of 1280x720 video",
        "cpus": cpus, "ray_cluster_start_seconds": cluster_start, "runs": results,
        "ray_2_vs_1_speedup": round(speedup, 3), "scaling_efficiency": round(speedup / 2, 3),
        "ray_vs_local_1_worker": round(t_local / t1, 3),
        "ray_overhead_ms_per_frame_1_worker": round(1000 * overhead, 2),
        "ray_overhead_share_1_worker": round(overhead / (t_local / frames), 3),
        "targets": {"ray_2_vs_1_speedup": ">= 1.6", "ray_overhead_share_1_worker": "<= 0.10"},
        "met": {"speedup": speedup >= 1.6, "overhead": overhead / (t_local / frames) <= 0.10},
    })


if __name__ == "__main__":
    main()
