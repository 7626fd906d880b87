"""Segmentation masks drawn (PIL): a VOC-style colour per class, palette PNGs, overlays and image/truth/prediction
grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IGNORE = 255
IGNORE_COLOUR = (255, 255, 255)


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: Pascal VOC's colour map (class 0 black; the bits of the index spread over R, G, B)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def class_palette(num_classes: int, colours: list[list[int]] | None = None) -> np.ndarray:
    """(256, 3) uint8: the classes' colours (given, else VOC's), white for IGNORE."""
    pal = voc_palette(256)
    if colours is not None:
        pal[: len(colours)] = np.asarray(colours, np.uint8)
    pal[IGNORE] = IGNORE_COLOUR
    return pal


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours."""
    return palette[mask.astype(np.int64)]


def save_palette_png(mask: np.ndarray, path: str | Path, palette: np.ndarray) -> Path:
    """Write (H, W) class indices as a palette PNG (mode P, VOC-style): the values are the classes, viewers show the
    colours."""
    from PIL import Image

    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W[, 3]) uint8 image with the mask's colours blended in (class 0 and IGNORE left clear when class 0 is
    black, i.e. the background)."""
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    colours = colorize(mask, palette).astype(np.float32)
    clear = (mask == IGNORE) | ((mask == 0) & (palette[0] == 0).all())
    a = np.where(clear[..., None], 0.0, alpha)
    return (rgb.astype(np.float32) * (1 - a) + colours * a).round().clip(0, 255).astype(np.uint8)


def save_triptychs(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], palette: np.ndarray, path: str | Path,
                   scale: int = 1) -> Path:  # fmt: skip
    """A grid with one row per sample: image | truth | prediction (colours), titled columns."""
    from PIL import Image, ImageDraw

    from deepkit.viz.boxes import save_grid

    tiles = []
    for image, truth, pred in rows:
        rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        for arr in (rgb, colorize(truth, palette), colorize(pred, palette)):
            im = Image.fromarray(arr)
            if scale != 1:
                im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            tiles.append(im)
    for tile, title in zip(tiles[:3], ("image", "truth", "prediction"), strict=False):
        ImageDraw.Draw(tile).text((3, 2), title, fill=(255, 255, 0))
    return save_grid(tiles, path, columns=3)
