"""Boxes drawn on images (PIL): predictions with class names and scores, ground truth, and grids of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128),
]  # fmt: skip


def draw_boxes(
    image: np.ndarray,
    boxes,
    labels,
    class_names: list[str],
    scores=None,
    width: int = 2,
    scale: int = 1,
):
    """An RGB ``PIL.Image`` of ``image`` ((H, W) or (H, W, 3) uint8) with each box outlined in its class's colour
    and captioned ``name score``. ``scale`` enlarges small images first (nearest), so captions stay legible."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(image).convert("RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    labels = np.asarray(labels).reshape(-1)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        color = PALETTE[int(lab) % len(PALETTE)]
        draw.rectangle([float(v) for v in b], outline=color, width=width)
        text = class_names[int(lab)] if 0 <= int(lab) < len(class_names) else str(int(lab))
        if scores is not None:
            text += f" {float(np.asarray(scores).reshape(-1)[i]):.2f}"
        x, y = float(b[0]), max(0.0, float(b[1]) - 11)
        tw = draw.textlength(text)
        draw.rectangle([x, y, x + tw + 2, y + 11], fill=color)
        draw.text((x + 1, y), text, fill=(0, 0, 0))
    return img


def save_grid(images: list, path: str | Path, columns: int = 4) -> Path:
    """Tile PIL images (padded to the largest) into one PNG."""
    from PIL import Image

    w = max(im.width for im in images)
    h = max(im.height for im in images)
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
