"""Seconds per frame of Grounding DINO-T on this CPU: fp32 vs bf16 autocast, batch 1 vs 4,
the checkpoint's 800 px resize vs ``short_side: 480``.

The model is the real architecture at full size (Swin-T + BERT-base, 172 M parameters) with
random weights, built from transformers' default config, saved and loaded through the same
``from_pretrained`` path as the real checkpoint: compute per frame is the same as
``IDEA-Research/grounding-dino-tiny`` (boxes are meaningless, speed is not). Frames are
640×480; the processor resizes them to 800 px on the short side, as for the real model.

Usage: python benchmarks/grounding_dino_cpu.py  -> benchmarks/results/grounding_dino_cpu.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, write_result
from lrihar.models.detectors import create_detector


def build_full_size(path: Path) -> Path:
    import torch
    from transformers import (
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import BERT_WORDS

    torch.manual_seed(0)
    GroundingDinoForObjectDetection(GroundingDinoConfig()).eval().save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer)
    processor.save_pretrained(path)
    return path


def seconds_per_frame(model: str, precision: str, batch: int, frames: list[np.ndarray],
                      short_side: int | None = None) -> float:
    detector = create_detector("grounding-dino", model=model, precision=precision, batch_size=batch,
                               short_side=short_side)
    detector.detect_batch(frames[:batch])  # warm-up
    start = time.perf_counter()
    detector.detect_batch(frames)
    return (time.perf_counter() - start) / len(frames)


def main() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_full_size(Path(tmp) / "gd-t"))
        for precision, batch, side in [("fp32", 1, None), ("fp32", 4, None), ("bf16", 1, None),
                                       ("bf16", 4, None), ("fp32", 1, 480), ("bf16", 1, 480)]:
            s = seconds_per_frame(model, precision, batch, frames[: max(4, batch * 2)], side)
            key = f"{precision}, batch {batch}" + (f", short side {side}" if side else "")
            rows[key] = round(s, 3)
            print(f"{key}: {s:.2f} s/frame", flush=True)
    base = rows["fp32, batch 1"]
    result = {"frames": "640x480 (resized to 800 px short side)", "params_millions": 172.3,
              "seconds_per_frame": rows,
              "speedup_vs_fp32_batch1": {k: round(base / v, 2) for k, v in rows.items()}}
    print("wrote", write_result("grounding_dino_cpu", result))


if __name__ == "__main__":
    main()
