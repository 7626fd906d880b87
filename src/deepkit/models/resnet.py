"""ResNet (He et al., 2016, "Deep Residual Learning for Image Recognition").

Two stems share the same blocks:

* ``imagenet`` (resnet18/34/50): 7×7/2 conv → 3×3/2 max pool, four stages 64-128-256-512 (×4 for bottlenecks).
  Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``),
  so torchvision state dicts load without renaming. Bottlenecks put the stride on the 3×3 conv (torchvision's
  "ResNet v1.5").
* ``cifar`` (resnet20/32/56, section 4.2 of the paper): 3×3 conv, no pooling, three stages 16-32-64 of n basic
  blocks each, for 28–32 px images. The paper's CIFAR shortcut is zero-padded identity (option A); here the
  shortcut that changes shape is a 1×1 conv + BN (option B), as in the ImageNet models.

``forward_features`` returns the globally pooled features (B, C); the head is ``fc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._vision import check_image_input
from deepkit.models.base import Classifier
from deepkit.models.registry import register_model


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(c_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand (×4), with a residual connection."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(c_in, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass
class ResNetConfig:
    in_channels: int = 3
    num_classes: int = 1000
    block: str = "basic"  # basic (18/34 and the CIFAR nets) or bottleneck (50/101/152)
    layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2])  # blocks per stage
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # block width per stage
    stem: str = "imagenet"  # imagenet: 7×7/2 conv + max pool (224 px); cifar: one 3×3 conv (28–32 px)
    zero_init_residual: bool = False  # start each block as identity (Goyal et al., 2017); helps large batches
    dropout: float = 0.0  # before the head


@register_model("resnet18", ResNetConfig, "ResNet-18: ImageNet stem, basic blocks [2, 2, 2, 2] (torchvision names)")
@register_model("resnet34", ResNetConfig, "ResNet-34: ImageNet stem, basic blocks [3, 4, 6, 3]", layers=[3, 4, 6, 3])
@register_model(
    "resnet50",
    ResNetConfig,
    "ResNet-50: ImageNet stem, bottlenecks [3, 4, 6, 3]",
    block="bottleneck",
    layers=[3, 4, 6, 3],
)
@register_model(
    "resnet20",
    ResNetConfig,
    "ResNet-20 (CIFAR-style, 28–32 px): 3×3 stem, 3 stages × 3 basic blocks, 16-32-64",
    stem="cifar",
    layers=[3, 3, 3],
    widths=[16, 32, 64],
    num_classes=10,
)
@register_model(
    "resnet32",
    ResNetConfig,
    "ResNet-32 (CIFAR-style, 28–32 px): 3×3 stem, 3 stages × 5 basic blocks, 16-32-64",
    stem="cifar",
    layers=[5, 5, 5],
    widths=[16, 32, 64],
    num_classes=10,
)
@register_model(
    "resnet56",
    ResNetConfig,
    "ResNet-56 (CIFAR-style, 28–32 px): 3×3 stem, 3 stages × 9 basic blocks, 16-32-64",
    stem="cifar",
    layers=[9, 9, 9],
    widths=[16, 32, 64],
    num_classes=10,
)
class ResNet(Classifier):
    """ResNet: stem → stages of residual blocks (each stage after the first halves the resolution) → pool → fc."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        if cfg.block not in BLOCKS:
            raise ConfigError(f"model.block: expected 'basic' or 'bottleneck', got {cfg.block!r}")
        if cfg.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"model.stem: expected 'imagenet' or 'cifar', got {cfg.stem!r}")
        if not cfg.layers or len(cfg.layers) != len(cfg.widths) or min(cfg.layers) < 1:
            raise ConfigError(
                f"model.layers and model.widths must be non-empty lists of equal length with at least one block per "
                f"stage, got layers={cfg.layers}, widths={cfg.widths}"
            )
        self.cfg = cfg
        block = BLOCKS[cfg.block]
        c = cfg.widths[0]
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_channels, c, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(cfg.in_channels, c)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        c_in = c
        for i, (n, width) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or c_in != width * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(c_in, width * block.expansion, stride), nn.BatchNorm2d(width * block.expansion)
                )
            blocks = [block(c_in, width, stride, downsample)]
            c_in = width * block.expansion
            blocks += [block(c_in, width) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))  # torchvision's names: layer1 ... layer4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.num_features = c_in
        self.fc = nn.Linear(c_in, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    @property
    def min_size(self) -> int:
        # padded convs run on any size, but below this the last stages see a 1×1 map (resnet18 still fits 28 px)
        return 16 if self.cfg.stem == "imagenet" else 8

    def check_input(self, shape: tuple[int, ...]) -> None:
        check_image_input(getattr(self, "model_name", "resnet"), self.cfg.in_channels, self.min_size, shape)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C0, H/4, W/4) imagenet; (B, C0, H, W) cifar
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(self.avgpool(x), 1)  # (B, num_features)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(feats))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
