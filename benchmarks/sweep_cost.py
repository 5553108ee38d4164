"""Time of a 10×10 threshold sweep: offline re-thresholding vs re-running the detector per point.

Same images, same detector, same grid, one run. The offline sweep runs the detector once at the
lowest thresholds and re-thresholds stored scores; the naive sweep builds the detector at each
grid point and runs it on every image. Also checks both give the same recall/accuracy where
they must (Grounding DINO semantics are exact; see evaluate/sweep.py). Target: ≥ 20× faster.

Uses the tiny random-weight Grounding DINO (the paper's sweep is over GD's box/text pair) on
the mmpose dev images, or synthetic frames where they are absent. ``lrihar sweep`` has no
default detector (``--detector`` is required), so the target is judged on this one. With 100
grid points the speed-up is 100 × D / (D + S) for a detector pass D and the offline sweep S:
the tiny model has the smallest D, so its speed-up is a lower bound for the real checkpoint
(2.7 s per frame here).

Usage: python benchmarks/sweep_cost.py  -> benchmarks/results/sweep_cost.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, REPO, load_gt, write_result
from lrihar.evaluate.sweep import ImagePredictions, default_grid, keep, sweep
from lrihar.models.detectors import create_detector
from lrihar.sources import read_image


def main() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import save_tiny_grounding_dino

    if (HANDS_DEV / "mmpose_hands").is_dir():
        entries = load_gt("mmpose_hands")
        images = [read_image(HANDS_DEV / "mmpose_hands" / im["file"]) for im in entries]
        gts = [np.array(im["hands"], float).reshape(-1, 4) for im in entries]
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(20)]
        gts = [np.array([[50, 50, 150, 150]], float) for _ in images]
    grid_a, grid_b = default_grid("box-text", 0), default_grid("box-text", 1)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save_tiny_grounding_dino(Path(tmp) / "gd"))

        start = time.perf_counter()
        low = create_detector("grounding-dino", model=model, box_threshold=float(grid_a.min()),
                              text_threshold=float(grid_b.min()))
        preds = [ImagePredictions.from_detections(low(img)) for img in images]
        rows = sweep(preds, gts, "box-text", grid_a, grid_b, ious=(0.3,))
        offline_s = time.perf_counter() - start

        start = time.perf_counter()
        mismatches = 0
        for a in grid_a:
            for b in grid_b:
                det = create_detector("grounding-dino", model=model, box_threshold=float(a),
                                      text_threshold=float(b))
                for img, pred in zip(images, preds, strict=True):
                    mismatches += len(det(img)) != len(keep(pred, "box-text", a, b))
        naive_s = time.perf_counter() - start
    speedup = naive_s / offline_s
    result = {"grid": f"{len(grid_a)}x{len(grid_b)}", "images": len(images), "rows": len(rows),
              "offline_s": round(offline_s, 2), "naive_rerun_s": round(naive_s, 2),
              "speedup": round(speedup, 1), "box_count_mismatches": mismatches,
              "target": ">= 20x", "judged_on": "tiny Grounding DINO: a lower bound for the real model",
              "met": speedup >= 20}
    print(result)
    print("wrote", write_result("sweep_cost", result))


if __name__ == "__main__":
    main()
