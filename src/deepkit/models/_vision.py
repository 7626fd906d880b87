"""Helpers shared by the torchvision-compatible image classifiers (AlexNet, VGG, ResNet)."""

from __future__ import annotations

from deepkit.errors import ShapeError


def check_image_input(name: str, in_channels: int, min_size: int, shape: tuple[int, ...]) -> None:
    """Raise ``ShapeError`` unless ``shape`` is (C, H, W) with ``in_channels`` and sides of at least ``min_size``."""
    if len(shape) != 3:
        raise ShapeError(f"{name} expects images (C, H, W), got samples of shape {tuple(shape)}")
    c, h, w = shape
    if c != in_channels:
        raise ShapeError(f"{name} was built for {in_channels} channel(s), got images with {c}")
    if min(h, w) < min_size:
        raise ShapeError(f"{name} needs images of at least {min_size}×{min_size} px, got {h}×{w}")
