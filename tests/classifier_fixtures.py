"""Helpers for the classifier tests: a tiny ViT saved like a hub checkpoint, toy ImageFolder sets,
a toy project (the hands-dev splits are cut by benchmarks/_handsets.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TOY_CLASSES = ("red", "green", "blue")


def save_tiny_vit(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A 32-wide, 2-layer ViT classifier (random weights) and its image processor, written with
    ``save_pretrained`` so that it loads through the real ``from_pretrained`` path."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=image_size, patch_size=8, num_labels=5)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def toy_image(cls: int, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A noisy crop whose dominant colour channel is the class."""
    img = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    img[..., cls] = rng.integers(150, 255, size=(size, size), dtype=np.uint8)
    return img


def write_toy_imagefolder(root: Path, per_class: dict[str, int] | None = None, val_per_class: int = 3,
                          seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` of the toy colour classes."""
    rng = np.random.default_rng(seed)
    per_class = per_class or dict.fromkeys(TOY_CLASSES, 8)
    for split, counts in (("train", per_class), ("val", dict.fromkeys(per_class, val_per_class))):
        for name, n in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.fromarray(toy_image(TOY_CLASSES.index(name), rng)).save(folder / f"{k}.png")
    return root


def toy_project(root: Path, per_class: int = 6, labelled: bool = True, unlabelled: int = 0,
                seed: int = 0) -> Path:
    """A project whose store holds one still per crop (an image folder source): a toy crop pasted
    into a grey 64×64 frame, its box stored as a detection, labelled with its colour class as the
    matcher would (provenance auto) when ``labelled``; ``unlabelled`` more boxes carry no label.
    Two template crops per class sit in ``templates/<class>/``."""
    import supervision as sv

    from lrihar.store import FrameRecord, Store

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    classes = [{"name": c, "templates": f"templates/{c}"} for c in TOY_CLASSES]
    (root / "lrihar.yaml").write_text(json.dumps({"classes": classes, "classify": {"lambda": 0.0}}))
    for c in TOY_CLASSES:  # two template crops per class for the template matcher
        (root / "templates" / c).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(toy_image(TOY_CLASSES.index(c), rng)).save(root / "templates" / c / f"{k}.png")
    frames = root / "stills"
    frames.mkdir()
    store = Store(root / "lrihar.db")
    run = store.start_run("annotate", {}, {})
    src = store.source_id(str(frames), "images")
    wanted = [(TOY_CLASSES.index(c), True) for c in TOY_CLASSES for _ in range(per_class)]
    wanted += [(int(rng.integers(3)), False) for _ in range(unlabelled)]
    labels = []
    for k, (cls, has_label) in enumerate(wanted):
        frame = np.full((64, 64, 3), 128, np.uint8)
        frame[12:52, 10:50] = toy_image(cls, rng)
        path = frames / f"f{k:03d}.png"
        Image.fromarray(frame).save(path)
        dets = sv.Detections(xyxy=np.array([[10.0, 12.0, 50.0, 52.0]]), confidence=np.array([0.9]),
                             class_id=np.zeros(1, int), data={"class_name": np.array(["hand"])})
        store.write_frames(run, src, [(FrameRecord(k, float(k), 64, 64, "action", str(path)), dets)], "test")
        labels.append((TOY_CLASSES[cls], has_label and labelled))
    ids = [r.id for r in store.detections()]
    rows = [(i, name, 0.9, None, None, "toy", 0.5)
            for i, (name, keep) in zip(ids, labels, strict=True) if keep]
    if rows:
        store.write_auto_labels(run, rows)
    store.finish_run(run, "done", {})
    store.close()
    return root
