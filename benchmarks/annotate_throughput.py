"""Frames/s of `lrihar annotate` (decode, detect, sift, store) vs a bare detector loop.

Both sides use the same `mediapipe-hands` detector settings on the same 1280×720 frames: the
bare loop calls the detector on frames decoded beforehand (decode not timed); the pipeline is
`annotate()` on the video file into a fresh project. Target: pipeline ≥ 0.85× the bare rate.

The clip is the hands-dev kneading video upscaled to 1280×720 and looped (or a synthetic one
where the dev data is absent).

Usage: python benchmarks/annotate_throughput.py [--loops 3]  -> benchmarks/results/annotate_throughput.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, write_result

SOURCE_CLIP = HANDS_DEV / "videos" / "mixkit_42467_baker_kneading_dough.mp4"


def make_clip(path: Path, loops: int) -> Path:
    import cv2

    from lrihar.sources import open_source
    from lrihar.videowriter import write_video

    if SOURCE_CLIP.exists():
        base = [cv2.resize(f.image, (1280, 720), interpolation=cv2.INTER_CUBIC)
                for f in open_source(SOURCE_CLIP)]
    else:
        rng = np.random.default_rng(0)
        base = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(50)]
    return write_video(path, (frame for _ in range(loops) for frame in base), fps=25, crf=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=3, help="Times the 50-frame clip repeats.")
    args = parser.parse_args()

    from lrihar.annotate.pipeline import annotate
    from lrihar.models.build import build_detector
    from lrihar.project import Project, init_project
    from lrihar.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip720p.mp4", args.loops)
        init_project(Path(tmp) / "proj")
        project = Project.open(Path(tmp) / "proj")
        frames = [f.image for f in open_source(clip)]

        detector = build_detector(project.config)
        detector(frames[0])  # warm-up: graph start-up is not throughput
        start = time.perf_counter()
        bare_boxes = sum(len(detector(f)) for f in frames)
        bare_s = time.perf_counter() - start

        detector = build_detector(project.config)
        detector(frames[0])
        start = time.perf_counter()
        summary = annotate(project, [str(clip)], detector=detector)
        pipeline_s = time.perf_counter() - start

    bare_fps = len(frames) / bare_s
    pipeline_fps = summary.frames_read / pipeline_s
    ratio = pipeline_fps / bare_fps
    result = {
        "clip": {"frames": len(frames), "size": "1280x720",
                 "from": SOURCE_CLIP.name if SOURCE_CLIP.exists() else "synthetic"},
        "detector": detector.describe(),
        "bare_loop": {"frames_per_s": round(bare_fps, 2), "boxes": bare_boxes},
        "annotate_pipeline": {"frames_per_s": round(pipeline_fps, 2), "boxes": summary.boxes,
                              "frames_action": summary.frames_action,
                              "frames_empty": summary.frames_empty},
        "ratio": round(ratio, 3),
        "target": ">= 0.85",
        "met": ratio >= 0.85,
    }
    print(f"bare loop {bare_fps:.2f} frames/s, annotate {pipeline_fps:.2f} frames/s, ratio {ratio:.3f}")
    print("wrote", write_result("annotate_throughput", result))


if __name__ == "__main__":
    main()
