"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012), in torchvision's single-tower form.

Parameter names equal torchvision's ``alexnet`` (``features.0.weight`` ... ``classifier.6.bias``), so a torchvision
state dict loads without renaming. ``forward_features`` is the convolutional ``features`` block: the unpooled map
(B, 256, H', W') (6×6 at 224 px); ``forward_head`` pools it to 6×6 and runs the three FC layers, the last of which
(``classifier.6``) is the classifier; ``forward_head(feats, pre_logits=True)`` stops before it (B, hidden).
``forward_features(x, stages=True)`` gives the map after each of the three max poolings (``feature_info``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepkit.models._vision import check_image_input
from deepkit.models.base import Classifier
from deepkit.models.registry import register_model


@dataclass
class AlexNetConfig:
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.5
    hidden: int = 4096  # width of the two FC layers (4096 in the paper)


@register_model("alexnet", AlexNetConfig)
class AlexNet(Classifier):
    """AlexNet: 5 convolutions (11×11/4, 5×5, 3×3 ×3) with max pooling, then 3 fully connected layers."""

    min_size = 63  # smallest input side whose last pooling still sees a 3×3 map

    def __init__(self, cfg: AlexNetConfig):
        super().__init__()
        self.cfg = cfg
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # (B, 256, 6, 6) at 224 px; any larger input is pooled to it
        self.classifier = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(256 * 6 * 6, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )
        self.num_features = cfg.hidden

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        # nominal strides: the 11×11/4 conv and the three 3×3/2 poolings (224 px -> 27, 13, 6)
        return [
            {"num_chs": 64, "reduction": 8, "module": "features.2"},
            {"num_chs": 192, "reduction": 16, "module": "features.5"},
            {"num_chs": 256, "reduction": 32, "module": "features.12"},
        ]

    def check_input(self, shape: tuple[int, ...]) -> None:
        check_image_input("alexnet", self.cfg.in_channels, self.min_size, shape)

    def forward_features(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
        if stages:
            maps = []
            for start, end in ((0, 3), (3, 6), (6, 13)):
                x = self.features[start:end](x)
                maps.append(x)
            return maps
        return self.features(x)  # (B, 256, H', W')

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(feats), 1)  # (B, 9216)
        x = self.classifier[:6](x)  # (B, hidden)
        return x if pre_logits else self.classifier[6](x)

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[6] = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
