"""Augmentation that moves boxes with the image: horizontal flip, scale jitter, random crop, letterbox.

Functions take an image ``(C, H, W)`` float tensor and its boxes ``(N, 4)`` xyxy in pixels and return both
transformed, plus which boxes survived (a crop can cut an object out). Randomness comes from an explicit
``numpy.random.Generator``, which the loader seeds from (seed, epoch, image index): the same run sees the same
augmented images, and a resumed run continues exactly.

:func:`augment` applies the steps a config names (the detection family's ``data.augment`` section,
``deepkit.families.detection.AugmentSection``): ``hflip`` (probability), ``scale`` ([low, high] jitter, canvas size
kept), ``crop`` (probability; ``min_crop`` of each side at least; boxes kept with ``min_visible`` of their area),
``letterbox`` (long side, padded square).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right; x1' = W - x2, x2' = W - x1."""
    w = image.shape[-1]
    out = boxes.clone()
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return image.flip(-1), out


def resize(image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize to ``size = (H, W)`` (bilinear), scaling the boxes by the same factors."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image, boxes
    out = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    sy, sx = size[0] / h, size[1] / w
    return out, boxes * boxes.new_tensor([sx, sy, sx, sy])


def crop(
    image: torch.Tensor, boxes: torch.Tensor, window: tuple[int, int, int, int], min_visible: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut ``window = (x0, y0, x1, y1)``; boxes are clipped to it and kept when ``min_visible`` of their area stays.
    Returns the image, the kept boxes (in the window's pixels) and the keep mask."""
    x0, y0, x1, y1 = window
    shifted = boxes - boxes.new_tensor([x0, y0, x0, y0])
    clipped = shifted.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, x1 - x0)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, y1 - y0)
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    left = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
    keep = (left > 0) & (left >= min_visible * area)
    return image[:, y0:y1, x0:x1], clipped[keep], keep


def letterbox(
    image: torch.Tensor, boxes: torch.Tensor, size: int, fill: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, int, int]]:
    """Resize keeping the aspect ratio so the long side is ``size``, and pad to ``size``×``size`` (centred, value
    ``fill``). Returns the image, the boxes and ``(scale, pad_x, pad_y)``: original = (letterboxed - pad) / scale."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    image, boxes = resize(image, boxes, (nh, nw))
    px, py = (size - nw) // 2, (size - nh) // 2
    out = image.new_full((image.shape[0], size, size), fill)
    out[:, py : py + nh, px : px + nw] = image
    return out, boxes + boxes.new_tensor([px, py, px, py]), (scale, px, py)


def unletterbox(boxes: torch.Tensor, info: tuple[float, int, int]) -> torch.Tensor:
    """Boxes on a letterboxed image back to the original image's pixels."""
    scale, px, py = info
    return (boxes - boxes.new_tensor([px, py, px, py])) / scale


def augment(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, cfg: Any, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training image through the configured steps (flip, scale jitter, crop, letterbox), boxes along."""
    if cfg.hflip and rng.random() < cfg.hflip:
        image, boxes = hflip(image, boxes)
    h, w = image.shape[-2:]
    if cfg.scale is not None:
        f = float(rng.uniform(cfg.scale[0], cfg.scale[1]))
        image, boxes = resize(image, boxes, (max(8, round(h * f)), max(8, round(w * f))))
        sh, sw = image.shape[-2:]
        if f > 1:  # cut a window of the original size out of the larger image
            x0, y0 = int(rng.integers(0, sw - w + 1)), int(rng.integers(0, sh - h + 1))
            image, boxes, keep = crop(image, boxes, (x0, y0, x0 + w, y0 + h), cfg.min_visible)
            labels = labels[keep]
        else:  # place the smaller image on a canvas of the original size
            x0, y0 = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
            canvas = image.new_zeros((image.shape[0], h, w))
            canvas[:, y0 : y0 + sh, x0 : x0 + sw] = image
            image, boxes = canvas, boxes + boxes.new_tensor([x0, y0, x0, y0])
    if cfg.crop and rng.random() < cfg.crop:
        h, w = image.shape[-2:]
        cw, ch = int(w * rng.uniform(cfg.min_crop, 1)), int(h * rng.uniform(cfg.min_crop, 1))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image, boxes, keep = crop(image, boxes, (x0, y0, x0 + cw, y0 + ch), cfg.min_visible)
        labels = labels[keep]
    if cfg.letterbox:
        image, boxes, _ = letterbox(image, boxes, cfg.letterbox)
    return image, boxes, labels
