"""ResNet (He et al., 2016, "Deep Residual Learning for Image Recognition").

Two stems share the same blocks:

* ``imagenet`` (resnet18/34/50): 7×7/2 conv → 3×3/2 max pool, four stages 64-128-256-512 (×4 for bottlenecks).
  Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``),
  so torchvision state dicts load without renaming. Bottlenecks put the stride on the 3×3 conv (torchvision's
  "ResNet v1.5").
* ``cifar`` (resnet20/32/56, section 4.2 of the paper): 3×3 conv, no pooling, three stages 16-32-64 of n basic
  blocks each, for 28–32 px images. The paper's CIFAR shortcut is zero-padded identity (option A); here the
  shortcut that changes shape is a 1×1 conv + BN (option B), as in the ImageNet models.

``act`` and ``norm`` pick the activation and normalization by name (:func:`deepkit.nn.get_act` /
:func:`deepkit.nn.get_norm`); the defaults ``relu`` and ``batchnorm`` are the paper's (and torchvision's) modules.

``forward_features`` returns the last stage's unpooled map (B, C, H/32, W/32) (ImageNet stem; H/4 for the CIFAR
stem); ``forward_head`` pools it globally and applies dropout and ``fc``, the classifier
(``pre_logits=True``: the pooled (B, C) vector). ``forward_features(x, stages=True)`` returns the map of every stage
(``feature_info``): for the ImageNet stem the stem's activation (stride 2) and ``layer1``..``layer4`` (strides 4, 8,
16, 32); for the CIFAR stem ``layer1``..``layer3`` (strides 1, 2, 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepkit.errors import ConfigError, suggest
from deepkit.models._vision import check_image_input
from deepkit.models.base import Classifier
from deepkit.models.registry import register_model
from deepkit.nn import get_act, get_norm, list_acts, list_norms


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def conv1x1(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``act``/``norm`` name the activation and normalization (``relu``/``batchnorm`` by default); the attribute
    names (``bn1``, ``relu``) stay torchvision's whatever they hold.
    """

    expansion = 1

    def __init__(
        self,
        c_in: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        act: str = "relu",
        norm: str = "batchnorm",
    ):
        super().__init__()
        bias = norm == "none"  # a conv followed by a norm layer needs no bias
        self.conv1 = conv3x3(c_in, width, stride, bias)
        self.bn1 = get_norm(norm, width, "2d")
        self.relu = get_act(act)
        self.conv2 = conv3x3(width, width, bias=bias)
        self.bn2 = get_norm(norm, width, "2d")
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.Module:
        return self.bn2

    def last_conv(self) -> nn.Conv2d:
        return self.conv2


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand (×4), with a residual connection."""

    expansion = 4

    def __init__(
        self,
        c_in: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        act: str = "relu",
        norm: str = "batchnorm",
    ):
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv1x1(c_in, width, bias=bias)
        self.bn1 = get_norm(norm, width, "2d")
        self.conv2 = conv3x3(width, width, stride, bias)
        self.bn2 = get_norm(norm, width, "2d")
        self.conv3 = conv1x1(width, width * self.expansion, bias=bias)
        self.bn3 = get_norm(norm, width * self.expansion, "2d")
        self.relu = get_act(act)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.Module:
        return self.bn3

    def last_conv(self) -> nn.Conv2d:
        return self.conv3


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
    act: str = "relu"  # activation by name (deepkit.nn.list_acts): relu, gelu, silu, leaky_relu, ...
    norm: str = "batchnorm"  # normalization by name (deepkit.nn.list_norms): batchnorm, groupnorm, layernorm, none


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
        for key, name, valid, what in (
            ("act", cfg.act, list_acts(), "activation"),
            ("norm", cfg.norm, list_norms(), "norm"),
        ):
            if name not in valid:
                raise ConfigError(
                    f"model.{key}: unknown {what} {name!r}{suggest(str(name), valid)}; valid: {', '.join(valid)}"
                )
        self.cfg = cfg
        block = BLOCKS[cfg.block]
        act, norm, bias = cfg.act, cfg.norm, cfg.norm == "none"
        c = cfg.widths[0]
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_channels, c, 7, stride=2, padding=3, bias=bias)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(cfg.in_channels, c, bias=bias)
            self.maxpool = nn.Identity()
        self.bn1 = get_norm(norm, c, "2d")
        self.relu = get_act(act)
        c_in = c
        for i, (n, width) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or c_in != width * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(c_in, width * block.expansion, stride, bias), get_norm(norm, width * block.expansion, "2d")
                )
            blocks = [block(c_in, width, stride, downsample, act, norm)]
            c_in = width * block.expansion
            blocks += [block(c_in, width, act=act, norm=norm) for _ in range(n - 1)]
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
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    # the last norm's scale; without a norm layer, the last conv: the block starts as identity
                    last = m.last_bn() if getattr(m.last_bn(), "weight", None) is not None else m.last_conv()
                    nn.init.zeros_(last.weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        c0 = self.cfg.widths[0]
        expansion = BLOCKS[self.cfg.block].expansion
        info = [{"num_chs": c0, "reduction": 2, "module": "relu"}] if self.cfg.stem == "imagenet" else []
        r = 4 if self.cfg.stem == "imagenet" else 1
        for i, width in enumerate(self.cfg.widths):
            r = r if i == 0 else 2 * r
            info.append({"num_chs": width * expansion, "reduction": r, "module": f"layer{i + 1}"})
        return info

    @property
    def min_size(self) -> int:
        # padded convs run on any size, but below this the last stages see a 1×1 map (resnet18 still fits 28 px)
        return 16 if self.cfg.stem == "imagenet" else 8

    def check_input(self, shape: tuple[int, ...]) -> None:
        check_image_input(getattr(self, "model_name", "resnet"), self.cfg.in_channels, self.min_size, shape)

    def forward_features(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, C0, H/2, W/2) imagenet; (B, C0, H, W) cifar
        maps = [x] if stages and self.cfg.stem == "imagenet" else []
        x = self.maxpool(x)  # (B, C0, H/4, W/4) imagenet; identity for cifar
        for stage in self.stages:
            x = stage(x)
            if stages:
                maps.append(x)
        return maps if stages else x  # the last stage: (B, num_features, H/32, W/32) imagenet, (H/4, W/4) cifar

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(self.avgpool(feats), 1))  # (B, num_features)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
