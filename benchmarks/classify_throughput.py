"""Crops/s of embed + match with the offline encoder (torch vs ONNX Runtime), and matching time
against 10 / 1,000 / 10,000 templates (batched vs a crop-at-a-time loop), in one run.

Targets: ≥ 200 crops/s on 2 CPU cores with the offline encoder; matching ≤ 1 ms per crop
against 10,000 templates.

Usage: python benchmarks/classify_throughput.py  -> benchmarks/results/classify_throughput.json
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import HANDS_DEV, load_gt, write_result
from lrihar.classify.match import Matcher
from lrihar.models.encoders import create_encoder
from lrihar.sources import read_image


def real_crops(n: int) -> list[np.ndarray]:
    """Ground-truth hand crops of the gloves set (random crops where it is absent)."""
    crops = []
    if (HANDS_DEV / "gloves_roboflow").is_dir():
        for im in load_gt("gloves_roboflow"):
            image = read_image(HANDS_DEV / "gloves_roboflow" / im["file"])
            for x1, y1, x2, y2 in im["hands"]:
                if x2 - x1 >= 4 and y2 - y1 >= 4:
                    crops.append(image[round(y1):round(y2), round(x1):round(x2)])
    rng = np.random.default_rng(0)
    while len(crops) < n:
        crops.append(rng.integers(0, 255, (rng.integers(60, 300), rng.integers(60, 300), 3), np.uint8))
    return crops[:n]


def time_embed_and_match(encoder, crops, matcher) -> float:
    encoder.embed(crops[:8])  # warm-up
    start = time.perf_counter()
    matcher.assign(encoder.embed(crops))
    return len(crops) / (time.perf_counter() - start)


def time_matching(n_templates: int, n_crops: int, dim: int = 1280) -> dict:
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(n_templates, dim)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    crops = rng.normal(size=(n_crops, dim)).astype(np.float32)
    crops /= np.linalg.norm(crops, axis=1, keepdims=True)
    matcher = Matcher(templates, rng.integers(0, 8, n_templates), 8, 0.5)
    matcher.assign(crops[:4])
    start = time.perf_counter()
    matcher.assign(crops)
    batched = (time.perf_counter() - start) / n_crops
    loop_n = min(n_crops, 50)
    start = time.perf_counter()
    for row in crops[:loop_n]:
        matcher.assign(row[None])
    one_by_one = (time.perf_counter() - start) / loop_n
    return {"templates": n_templates, "ms_per_crop_batched": round(1000 * batched, 4),
            "ms_per_crop_one_at_a_time": round(1000 * one_by_one, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=256)
    args = parser.parse_args()
    crops = real_crops(args.crops)
    results = {"crops": len(crops), "embed_and_match": {}}
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["LRIHAR_CACHE"] = tmp
        for label, options in [("torch fp32, 224 px", {"runtime": "torch"}),
                               ("onnxruntime fp32, 224 px", {"runtime": "onnx"}),
                               ("onnxruntime fp32, 160 px", {"runtime": "onnx", "input_size": 160})]:
            encoder = create_encoder("mobilenet-v2", **options)
            bank = encoder.embed(crops[:20])
            matcher = Matcher(bank, np.arange(20) % 2, 2, 0.5)
            rate = time_embed_and_match(encoder, crops, matcher)
            results["embed_and_match"][label] = {"crops_per_s": round(rate, 1)}
            print(f"{label:28s} {rate:7.1f} crops/s", flush=True)
    results["matching"] = [time_matching(n, 1000) for n in (10, 1_000, 10_000)]
    for row in results["matching"]:
        print(row)
    best = max(v["crops_per_s"] for v in results["embed_and_match"].values())
    at_10k = results["matching"][-1]["ms_per_crop_batched"]
    results["targets"] = {"crops_per_s >= 200": best >= 200, "match_ms_at_10k <= 1": at_10k <= 1.0}
    print(results["targets"])
    print("wrote", write_result("classify_throughput", results))


if __name__ == "__main__":
    main()
