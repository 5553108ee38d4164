"""The hands-dev sets cut into ImageFolder classification splits (ground-truth boxes), shared by the
classifier benchmarks and tests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def _save_crop(src: Path, box, out: Path) -> None:
    x1, y1, x2, y2 = (round(v) for v in box)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as photo:
        photo.convert("RGB").crop((x1, y1, x2, y2)).save(out, quality=95)


def asl_imagefolder(asl: Path, out: Path, letters: tuple[str, ...] | None = None, held_out: int = 2) -> Path:
    """ASL letters: ``train`` = Roboflow train + valid minus ``held_out`` valid photos per letter
    (those form ``val``, for choosing the best epoch), ``test`` = Roboflow test. Every image has
    its own ``source_photo``, so no photo lands in two splits."""
    images = json.loads((asl / "gt.json").read_text())["images"]
    images = [im for im in images if letters is None or im["label"] in letters]
    held: dict[str, list[str]] = {}
    for im in sorted(images, key=lambda i: i["source_photo"]):
        if im["split"] == "valid" and len(held.setdefault(im["label"], [])) < held_out:
            held[im["label"]].append(im["source_photo"])
    held_photos = {p for photos in held.values() for p in photos}
    for im in images:
        split = "test" if im["split"] == "test" else "val" if im["source_photo"] in held_photos else "train"
        _save_crop(asl / im["file"], im["hands"][0], out / split / im["label"] / f"{im['source_photo']}.jpg")
    return out


def gloves_imagefolder(gloves: Path, out: Path, min_side: int = 8) -> Path:
    """Gloves: crops of even-numbered images train (every fifth of them ``val``), odd-numbered
    images test (as in benchmarks/classify_accuracy.py); boxes under ``min_side`` px are skipped."""
    images = [im for im in json.loads((gloves / "gt.json").read_text())["images"] if im["hands"] is not None]
    for k, im in enumerate(images):
        split = "test" if k % 2 else "val" if k % 10 == 0 else "train"
        for j, (box, cls) in enumerate(zip(im["hands"], im["hand_classes"], strict=True)):
            if min(box[2] - box[0], box[3] - box[1]) < min_side:
                continue
            _save_crop(gloves / im["file"], box, out / split / cls / f"{k:04d}_{j}.jpg")
    return out
