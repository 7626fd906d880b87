"""Batches of detection data for the Trainer: lists of images of any size with a target dict per image.

A batch is ``(images, targets)``: ``images`` a list of ``(C, H, W)`` floats in [0, 1], ``targets`` a list of
``{"boxes": (N, 4) xyxy, "labels": (N,) class index + 1 (0 is the background), "image_id", "area", "iscrowd"}``
(torchvision's detection API). ``batch_len`` counts the images. The order is a pure function of (seed, epoch) and
each training image's augmentation of (seed, epoch, index), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepkit.data.box_augment import augment
from deepkit.data.detection import DetectionImage, DetectionSet
from deepkit.data.module import IndexedLoader, SetsData
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import DataError

LUMA = (0.299, 0.587, 0.114)


def to_tensor(pixels: np.ndarray, channels: int) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 -> (channels, H, W) floats in [0, 1]: greyscale repeated to RGB, RGB to luma."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 1:
        return x.expand(channels, -1, -1).clone()
    if channels == 1:
        return (x * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)
    raise DataError(f"cannot turn a {x.shape[0]}-channel image into {channels} channels")


class DetectionLoader(IndexedLoader):
    """Batches of a :class:`DetectionSet` (see the module docstring)."""

    def __init__(
        self,
        data: DetectionSet,
        batch_size: int,
        channels: int,
        shuffle: bool = False,
        seed: int = 0,
        augment_cfg: Any = None,
        cache: dict[int, np.ndarray] | None = None,
    ):
        self.data, self.channels, self.augment_cfg = data, channels, augment_cfg
        self.start(batch_size, shuffle, seed)
        self.cache = cache if cache is not None else {}

    @property
    def num_samples(self) -> int:
        return len(self.data)

    def pixels(self, i: int, im: DetectionImage) -> np.ndarray:
        if im.pixels is not None:
            return im.pixels
        if id(im) not in self.cache:
            self.cache[id(im)] = im.load()
        return self.cache[id(im)]

    def sample(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        im = self.data.images[i]
        image = to_tensor(self.pixels(i, im), self.channels)
        if tuple(image.shape[-2:]) != (im.height, im.width):
            raise DataError(
                f"image {im.file} is {image.shape[-1]}×{image.shape[-2]} px but its annotation says "
                f"{im.width}×{im.height}"
            )
        boxes, labels = torch.from_numpy(im.boxes), torch.from_numpy(im.labels) + 1
        crowd, area = torch.from_numpy(im.iscrowd), torch.from_numpy(im.areas)
        if self.augment_cfg is not None:  # training: no crowd regions, boxes move with the image
            keep = ~crowd
            boxes, labels = boxes[keep], labels[keep]
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, boxes, labels = augment(image, boxes, labels, self.augment_cfg, rng)
            crowd = torch.zeros(len(boxes), dtype=torch.bool)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        target = {"boxes": boxes.float(), "labels": labels.long(), "image_id": torch.tensor(im.image_id),
                  "area": area.float(), "iscrowd": crowd.bool()}  # fmt: skip
        return image, target

    def __iter__(self) -> Iterator[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]]:
        order, bs = self.order(), self.batch_size
        for b in range(self.start_batch, len(self)):
            images, targets = [], []
            for i in order[b * bs : (b + 1) * bs]:
                image, target = self.sample(i)
                images.append(image.to(self.device))
                targets.append({k: v.to(self.device) for k, v in target.items()})
            yield images, targets
        self.start_batch = 0


@dataclass
class DetectionData(SetsData):
    """Detection splits (``train``, ``val``, ``test``), each a :class:`DetectionSet` with the same class names."""

    class_names: list[str]
    sets: dict[str, DetectionSet]
    channels: int = 3
    batch_size: int = 8
    eval_batch_size: int = 16
    augment: Any = None  # the data.augment section (training images only)
    notes: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    _caches: dict[str, dict[int, Any]] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> DetectionSet | None:
        return self.sets.get(name) if self.has(name) else None

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False):
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        train = name == "train"
        return DetectionLoader(
            self.sets[name], self.batch_size if train else self.eval_batch_size, self.channels,
            train if shuffle is None else shuffle, seed, self.augment if train else None,
            self._caches.setdefault(name, {}),
        )  # fmt: skip
