"""VGG (Simonyan & Zisserman, 2015): stacks of 3×3 convolutions and 2×2 max pooling, then three FC layers.

Parameter names equal torchvision's ``vgg11``/``vgg11_bn``/``vgg16``/``vgg16_bn`` (``features.N.*``,
``classifier.{0,3,6}.*``), so torchvision state dicts load without renaming. ``forward_features`` is the
convolutional ``features`` block: the unpooled map (B, 512, H/32, W/32); ``forward_head`` pools it to 7×7 and runs
the three FC layers, the last of which (``classifier.6``) is the classifier; ``forward_head(feats, pre_logits=True)``
stops before it (B, hidden). ``forward_features(x, stages=True)`` gives the map after each of the five max poolings
(strides 2 to 32, ``feature_info``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._vision import check_image_input
from deepkit.models.base import Classifier
from deepkit.models.registry import register_model
from deepkit.nn import get_norm

# Table 1 of the paper: output channels of each 3×3 conv, "M" = 2×2 max pooling.
VGG_LAYERS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # configuration A
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # B
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # D
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],  # E
}


@dataclass
class VGGConfig:
    in_channels: int = 3
    num_classes: int = 1000
    depth: int = 16  # 11, 13, 16 or 19 weight layers
    norm: str = "none"  # "batchnorm" gives the _bn variants (Ioffe & Szegedy, 2015; not in the original paper)
    dropout: float = 0.5
    hidden: int = 4096  # width of the two FC layers


@register_model("vgg11", VGGConfig, "VGG-11: 3×3 conv stacks + max pooling, FC 4096 ×2 (torchvision names)", depth=11)
@register_model(
    "vgg11_bn",
    VGGConfig,
    "VGG-11 with batch norm: 3×3 conv stacks + max pooling, FC 4096 ×2 (torchvision names)",
    depth=11,
    norm="batchnorm",
)
@register_model("vgg16", VGGConfig, "VGG-16: 3×3 conv stacks + max pooling, FC 4096 ×2 (torchvision names)", depth=16)
@register_model(
    "vgg16_bn",
    VGGConfig,
    "VGG-16 with batch norm: 3×3 conv stacks + max pooling, FC 4096 ×2 (torchvision names)",
    depth=16,
    norm="batchnorm",
)
class VGG(Classifier):
    """VGG: blocks of 3×3 conv → (batch norm) → ReLU with 2×2 max pooling, then FC 4096 → FC 4096 → classes."""

    min_size = 32  # five 2× poolings

    def __init__(self, cfg: VGGConfig):
        super().__init__()
        if cfg.depth not in VGG_LAYERS:
            raise ConfigError(f"model.depth: VGG has depth 11, 13, 16 or 19, got {cfg.depth}")
        if cfg.norm not in ("none", "batchnorm"):
            raise ConfigError(f"model.norm: VGG takes 'none' or 'batchnorm', got {cfg.norm!r}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for v in VGG_LAYERS[cfg.depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            # torchvision keeps the conv bias even before batch norm; kept here so its weights load unchanged
            layers.append(nn.Conv2d(c_in, v, 3, padding=1))
            if cfg.norm == "batchnorm":
                layers.append(get_norm("batchnorm", v, "2d"))
            layers.append(nn.ReLU(inplace=True))
            c_in = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # (B, 512, 7, 7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )
        self.num_features = cfg.hidden
        self._init_weights()

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per 2× max pooling: the channels of the conv before it, stride 2, 4, 8, 16, 32."""
        info, c, i = [], self.cfg.in_channels, 0
        for v in VGG_LAYERS[self.cfg.depth]:
            if v == "M":
                info.append({"num_chs": c, "reduction": 2 ** (len(info) + 1), "module": f"features.{i}"})
                i += 1
            else:
                c = v
                i += 3 if self.cfg.norm == "batchnorm" else 2  # conv, (norm), relu
        return info

    def _init_weights(self) -> None:
        # as torchvision: He init (fan_out) for convs, N(0, 0.01) for linear layers, zero biases
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def check_input(self, shape: tuple[int, ...]) -> None:
        check_image_input(getattr(self, "model_name", "vgg"), self.cfg.in_channels, self.min_size, shape)

    def forward_features(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
        if stages:
            maps, start = [], 0
            for info in self.feature_info:
                end = int(info["module"].split(".")[1]) + 1  # up to and including this pooling
                x = self.features[start:end](x)
                maps.append(x)
                start = end
            return maps
        return self.features(x)  # (B, 512, H/32, W/32)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(feats), 1)  # (B, 25088)
        x = self.classifier[:6](x)  # (B, hidden)
        return x if pre_logits else self.classifier[6](x)

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[6] = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.classifier[6].weight, 0, 0.01)
        nn.init.zeros_(self.classifier[6].bias)
        self.cfg.num_classes = num_classes
