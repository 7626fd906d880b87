"""Batched data augmentation for image classification, run on the training device (kornia + torch).

The recipe's ``data.augment`` section configures it; the task applies it to training batches only (never to
validation, test or prediction). Batches arrive normalized: they are mapped back to pixel values in [0, 1],
augmented there (so padding is black and colour jitter acts on real colours) and normalized again.
Randomness comes from torch's global generator, which checkpoints save and restore, so a resumed run sees
the same augmented batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError


@dataclass
class AugmentConfig:
    crop_padding: int = 0  # random crop of the original size after zero-padding each side by this many pixels
    hflip: float = 0.0  # probability of a horizontal flip (not for digits/text: a flipped 3 is no 3)
    vflip: float = 0.0  # probability of a vertical flip
    degrees: float = 0.0  # random rotation in [-degrees, degrees]
    translate: float = 0.0  # random shift up to this fraction of width/height
    scale: list[float] | None = None  # random zoom range, e.g. [0.9, 1.1]
    brightness: float = 0.0  # colour jitter strengths (ColorJitter semantics)
    contrast: float = 0.0
    saturation: float = 0.0  # colour images only
    hue: float = 0.0  # colour images only, at most 0.5
    erasing: float = 0.0  # probability of random erasing / cutout (Zhong et al., 2020)
    mixup_alpha: float = 0.0  # mixup (Zhang et al., 2018): Beta(alpha, alpha) mixing of image pairs and labels
    cutmix_alpha: float = 0.0  # cutmix (Yun et al., 2019): paste a box from another image, labels by area
    mix_prob: float = 1.0  # probability that a batch is mixed at all (mixup or cutmix, chosen 50/50 if both)


class BatchAugment(nn.Module):
    """Augment a training batch ``(x, y)``: geometric and colour transforms per sample, then mixup/cutmix.

    With mixup or cutmix the labels become soft targets (B, K) that cross-entropy accepts directly.

    Example:
        >>> aug = BatchAugment(AugmentConfig(crop_padding=2, hflip=0.5), Preprocessing(kind="image"), 10)
        >>> x, y = aug((torch.rand(8, 3, 32, 32), torch.arange(8)))
    """

    def __init__(self, cfg: AugmentConfig, preprocessing: Preprocessing, num_classes: int | None):
        super().__init__()
        import kornia.augmentation as K

        self.cfg, self.prep, self.num_classes = cfg, preprocessing, num_classes
        shape = preprocessing.input_shape
        if preprocessing.kind != "image" or len(shape) != 3:
            raise ConfigError(f"data.augment works on images (C, H, W); this data has samples of shape {shape}")
        channels = shape[0]
        if (cfg.saturation or cfg.hue) and channels != 3:
            raise ConfigError(f"data.augment.saturation/hue need colour images; these have {channels} channel(s)")
        if (cfg.mixup_alpha or cfg.cutmix_alpha) and not num_classes:
            raise ConfigError("data.augment.mixup_alpha/cutmix_alpha need a classification task")
        ops: list[nn.Module] = []
        if cfg.crop_padding:
            ops.append(K.RandomCrop(tuple(shape[1:]), padding=cfg.crop_padding, p=1.0))
        if cfg.hflip:
            ops.append(K.RandomHorizontalFlip(p=cfg.hflip))
        if cfg.vflip:
            ops.append(K.RandomVerticalFlip(p=cfg.vflip))
        if cfg.degrees or cfg.translate or cfg.scale:
            ops.append(
                K.RandomAffine(
                    degrees=cfg.degrees,
                    translate=(cfg.translate, cfg.translate) if cfg.translate else None,
                    scale=tuple(cfg.scale) if cfg.scale else None,
                    p=1.0,
                )
            )
        if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
            ops.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=1.0))
        if cfg.erasing:
            ops.append(K.RandomErasing(p=cfg.erasing, scale=(0.02, 0.25), ratio=(0.3, 3.3)))
        self.ops = nn.Sequential(*ops)

    @property
    def is_identity(self) -> bool:
        return len(self.ops) == 0 and not (self.cfg.mixup_alpha or self.cfg.cutmix_alpha)

    def forward(self, batch):
        x, y = batch
        if len(self.ops):
            raw = self.prep.inverse_transform(x.float())
            raw = self.ops(raw.clamp(0, 1))
            x = self.prep.transform(raw).to(x.dtype)
        if (self.cfg.mixup_alpha or self.cfg.cutmix_alpha) and torch.rand(()) < self.cfg.mix_prob:
            x, y = self._mix(x, y)
        return x, y

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        use_cutmix = c.cutmix_alpha > 0 and (c.mixup_alpha <= 0 or bool(torch.rand(()) < 0.5))
        alpha = c.cutmix_alpha if use_cutmix else c.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(len(x), device=x.device)
        if use_cutmix:  # a box of area (1 - lam), clipped to the image; lam is recomputed from the clipped box
            h, w = x.shape[-2:]
            rh, rw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, h)
            x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            x = lam * x + (1 - lam) * x[perm]
        soft = y if y.ndim == 2 else F.one_hot(y, self.num_classes).to(x.dtype)
        return x, lam * soft + (1 - lam) * soft[perm]


def build_augment(
    cfg: AugmentConfig | None, preprocessing: Preprocessing, num_classes: int | None
) -> BatchAugment | None:
    """The training-batch transform a recipe's ``data.augment`` asks for, or None when it asks for nothing."""
    if cfg is None:
        return None
    aug = BatchAugment(cfg, preprocessing, num_classes)
    return None if aug.is_identity else aug
