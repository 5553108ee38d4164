"""Contact sheets: a PNG grid of crops per class, with their scores, for a person to eyeball."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def contact_sheet(crops: list[np.ndarray], captions: list[str], title: str, tile: int = 112,
                  columns: int = 10) -> np.ndarray:
    """Crops letterboxed into ``tile``-px cells under a title, each with a caption; RGB array."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    caption_h, title_h = 14, 24
    rows = max(1, -(-len(crops) // columns))
    sheet = Image.new("RGB", (columns * tile, title_h + rows * (tile + caption_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill=(255, 255, 255), font=font)
    for i, (crop, caption) in enumerate(zip(crops, captions, strict=True)):
        img = Image.fromarray(crop)
        img.thumbnail((tile - 4, tile - 4))
        x = (i % columns) * tile
        y = title_h + (i // columns) * (tile + caption_h)
        sheet.paste(img, (x + (tile - img.width) // 2, y + (tile - img.height) // 2))
        draw.text((x + 4, y + tile), caption, fill=(230, 230, 120), font=font)
    return np.asarray(sheet)


def save_sheet(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
