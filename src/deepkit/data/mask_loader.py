"""Batches of image + mask pairs for the Trainer, with joint augmentation.

A batch is ``(images (B, C, H, W) float32 normalized, masks (B, H, W) int64)``; masks hold class indices and
:data:`~deepkit.data.masks.IGNORE`. Images of different sizes in one evaluation batch are padded (image: 0, mask:
IGNORE, so padding counts nowhere).

Training samples are augmented (:func:`joint_augment`): the geometric transforms (scale jitter, flips, 90° turns,
random crop) move image and mask together, the mask resampled nearest-neighbour so it keeps class indices; the
photometric ones (brightness, contrast) touch the image only. Each sample's randomness is a pure function of
(seed, epoch, index) and the order of (seed, epoch), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepkit.data.detection_loader import to_tensor
from deepkit.data.masks import IGNORE, MaskSet
from deepkit.data.module import IndexedLoader, SetsData
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, DataError


@dataclass
class JointAugment:
    """``data.augment`` of segmentation recipes (training images only)."""

    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.0  # ... of a vertical flip (medical images, aerial views)
    rot90: bool = False  # turn by a random multiple of 90° (orientation-free images: EM slices, fundus photos)
    scale: list[float] | None = None  # resize by a factor in [low, high] before cropping
    brightness: float = 0.0  # add a value in [-b, b] (images in [0, 1])
    contrast: float = 0.0  # scale around the mean by a factor in [1 - c, 1 + c]

    def check(self) -> None:
        if not (0 <= self.hflip <= 1 and 0 <= self.vflip <= 1):
            raise ConfigError(f"data.augment.hflip/vflip are probabilities in [0, 1], got {self.hflip}, {self.vflip}")
        if self.scale is not None and (len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]):
            raise ConfigError(f"data.augment.scale: expected [low, high] with 0 < low <= high, got {self.scale}")
        if not (0 <= self.brightness <= 1 and 0 <= self.contrast < 1):
            raise ConfigError(f"data.augment.brightness must be in [0, 1] and contrast in [0, 1), got "
                              f"{self.brightness}, {self.contrast}")  # fmt: skip


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (C, H, W) bilinear, mask (H, W) nearest-neighbour, to ``size`` (h, w)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(mask.dtype)
    return image, mask


def random_crop(
    image: torch.Tensor, mask: torch.Tensor, crop: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``crop``×``crop`` window at a random place; a smaller image is padded first (image 0, mask IGNORE)."""
    h, w = mask.shape
    ph, pw = max(0, crop - h), max(0, crop - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.0)
        mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE)
        h, w = mask.shape
    y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return image[:, y0 : y0 + crop, x0 : x0 + crop], mask[y0 : y0 + crop, x0 : x0 + crop]


def joint_augment(
    image: torch.Tensor, mask: torch.Tensor, cfg: JointAugment, crop: int | None, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one (C, H, W) image in [0, 1] and its (H, W) mask (see the module docstring)."""
    if cfg.scale is not None and cfg.scale != [1.0, 1.0]:
        f = float(rng.uniform(cfg.scale[0], cfg.scale[1]))
        h, w = mask.shape
        image, mask = resize_pair(image, mask, (max(1, round(h * f)), max(1, round(w * f))))
    if crop is not None:
        image, mask = random_crop(image, mask, crop, rng)
    if rng.random() < cfg.hflip:
        image, mask = image.flip(-1), mask.flip(-1)
    if rng.random() < cfg.vflip:
        image, mask = image.flip(-2), mask.flip(-2)
    if cfg.rot90:
        k = int(rng.integers(0, 4))
        if k:
            image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
    if cfg.brightness > 0:
        image = image + float(rng.uniform(-cfg.brightness, cfg.brightness))
    if cfg.contrast > 0:
        mean = image.mean()
        image = (image - mean) * float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
    return image.clamp(0, 1).contiguous(), mask.contiguous()


def pad_batch(images: list[torch.Tensor], masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    h = max(m.shape[0] for m in masks)
    w = max(m.shape[1] for m in masks)
    x = images[0].new_zeros(len(images), images[0].shape[0], h, w)
    y = torch.full((len(masks), h, w), IGNORE, dtype=torch.int64)
    for i, (img, m) in enumerate(zip(images, masks, strict=True)):
        x[i, :, : m.shape[0], : m.shape[1]] = img
        y[i, : m.shape[0], : m.shape[1]] = m
    return x, y


class MaskLoader(IndexedLoader):
    """Batches of a :class:`MaskSet` (see the module docstring)."""

    def __init__(
        self,
        data: MaskSet,
        batch_size: int,
        channels: int,
        mean: list[float],
        std: list[float],
        shuffle: bool = False,
        seed: int = 0,
        augment: JointAugment | None = None,
        crop: int | None = None,
        resize: list[int] | None = None,
        cache: dict[int, np.ndarray] | None = None,
        repeats: int = 1,
    ):
        self.data, self.channels = data, channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.augment, self.crop, self.resize = augment, crop, resize
        self.repeats = repeats  # each image this many times an epoch (a new random crop each time)
        self.start(batch_size, shuffle, seed)
        self.cache = cache if cache is not None else {}

    @property
    def num_samples(self) -> int:
        return len(self.data) * self.repeats

    def raw(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``i`` as (C, H, W) in [0, 1] and (H, W) int64, resized (``resize``) but neither augmented nor
        normalized."""
        i = i % len(self.data)  # a repeated image
        s = self.data.samples[i]
        if i not in self.cache:
            self.cache[i] = s.load_image()
        image = to_tensor(self.cache[i], self.channels)
        mask = torch.from_numpy(s.mask.astype(np.int64))
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise DataError(f"mask of {s.name} is {mask.shape[1]}×{mask.shape[0]} px but its image is "
                            f"{image.shape[-1]}×{image.shape[-2]}")  # fmt: skip
        if self.resize is not None:
            image, mask = resize_pair(image, mask, (int(self.resize[0]), int(self.resize[1])))
        return image, mask

    def sample(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.raw(i)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = joint_augment(image, mask, self.augment, self.crop, rng)
        return (image - self.mean) / self.std, mask

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, bs = self.order(), self.batch_size
        for b in range(self.start_batch, len(self)):
            pairs = [self.sample(i) for i in order[b * bs : (b + 1) * bs]]
            x, y = pad_batch([p[0] for p in pairs], [p[1] for p in pairs])
            yield x.to(self.device), y.to(self.device)
        self.start_batch = 0


@dataclass
class SegmentationData(SetsData):
    """Segmentation splits, each a :class:`MaskSet` with the same classes."""

    class_names: list[str]
    sets: dict[str, MaskSet]
    channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    batch_size: int = 8
    eval_batch_size: int = 8
    augment: JointAugment | None = None
    crop: int | None = None  # training crops (px); None: whole images
    repeats: int = 1  # training: each image this many times an epoch (each with its own crop and augmentation)
    resize: list[int] | None = None  # every split resized to (h, w) first; None: native size
    background: int | None = None
    ignored: str | None = None  # the dataset's ignored label as its masks hold it ("label 11 (Unlabelled)")
    notes: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    _caches: dict[str, dict[int, Any]] = field(default_factory=dict, repr=False)

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> MaskLoader:
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        train = name == "train"
        return MaskLoader(
            self.sets[name], self.batch_size if train else self.eval_batch_size, self.channels, self.mean, self.std,
            train if shuffle is None else shuffle, seed, self.augment if train else None,
            self.crop if train else None, self.resize, self._caches.setdefault(name, {}), self.repeats if train else 1,
        )  # fmt: skip
