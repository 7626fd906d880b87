"""Convolution → pooling → fully connected networks: LeNet-5 and a configurable ``simple_cnn``.

``forward_features`` returns the last pooled convolutional map (B, C, H, W); ``forward_head`` flattens or pools it,
runs the FC layers and the classifier (see :mod:`deepkit.models.base`). ``forward_features(x, stages=True)`` gives
the map after each 2× pooling, described by ``feature_info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepkit.errors import ShapeError
from deepkit.models.base import Classifier
from deepkit.models.registry import register_model
from deepkit.nn import get_act, get_norm


def _pool(kind: str) -> nn.Module:
    return nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)


@dataclass
class LeNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    act: str = "tanh"  # LeCun et al. 1998 used scaled tanh; "relu" trains faster
    pool: str = "avg"  # "avg" (subsampling, as in the paper) or "max"
    padding: int = 2  # 2 keeps 28×28 MNIST at the paper's 32×32 geometry; 0 for 32×32 inputs
    dropout: float = 0.0


@register_model("lenet5", LeNetConfig)
class LeNet5(Classifier):
    """LeNet-5 (LeCun et al., 1998): conv 6@5×5 → pool → conv 16@5×5 → pool → FC 120 → FC 84 → classes."""

    def __init__(self, cfg: LeNetConfig):
        super().__init__()
        self.cfg = cfg
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, 6, 5, padding=cfg.padding),
            get_act(cfg.act),
            _pool(cfg.pool),  # C1, S2
            nn.Conv2d(6, 16, 5),
            get_act(cfg.act),
            _pool(cfg.pool),  # C3, S4: (B, 16, 5, 5) at 28/32 px; forward_features ends here (features[:6])
            nn.AdaptiveAvgPool2d((5, 5)),  # identity at the paper's sizes; lets larger images through
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            get_act(cfg.act),  # C5 (a 5×5 conv on a 5×5 map is a linear layer)
            nn.Linear(120, 84),
            get_act(cfg.act),  # F6
            nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity(),
        )
        self.num_features = 84
        self.head = nn.Linear(84, cfg.num_classes)

    @property
    def min_size(self) -> int:
        return 28 - 2 * self.cfg.padding  # smallest side that still yields a 5×5 map after C3/S4

    @property
    def example_size(self) -> tuple[int, int]:
        s = 32 - 2 * self.cfg.padding  # the paper's 32×32 geometry: 28 px (MNIST) at the default padding 2
        return s, s

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return [
            {"num_chs": 6, "reduction": 2, "module": "features.2"},  # S2
            {"num_chs": 16, "reduction": 4, "module": "features.5"},  # S4
        ]

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise ShapeError(f"lenet5 expects images (C, H, W), got samples of shape {tuple(shape)}")
        c, h, w = shape
        need = self.min_size
        if c != self.cfg.in_channels:
            raise ShapeError(f"lenet5 was built for {self.cfg.in_channels} channel(s), got images with {c}")
        if min(h, w) < need:
            raise ShapeError(
                f"lenet5 needs images of at least {need}×{need} px (padding={self.cfg.padding}), got {h}×{w}"
            )

    def forward_features(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
        if stages:
            s2 = self.features[:3](x)  # (B, 6, H/2, W/2)
            return [s2, self.features[3:6](s2)]
        return self.features[:6](x)  # (B, C, H, W) -> (B, 16, 5, 5) at the paper's sizes

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        feats = self.features[6:](feats)  # pool to 5×5 -> flatten -> C5 -> F6: (B, 84)
        return feats if pre_logits else self.head(feats)

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes


@dataclass
class SimpleCNNConfig:
    in_channels: int = 1
    num_classes: int = 10
    channels: list[int] = field(default_factory=lambda: [32, 64])  # one stage per entry, each ends in a 2× pool
    convs_per_stage: int = 2
    kernel_size: int = 3
    act: str = "relu"
    norm: str = "batchnorm"  # batchnorm, groupnorm, layernorm, none
    pool: str = "max"
    global_pool: str = "avg"  # "avg" (any input size) or "flatten" (keeps position; needs input_size)
    input_size: list[int] | None = None  # [H, W]; filled from the data by recipes, needed by "flatten"
    hidden: int = 128  # width of the FC layer before the head; 0 for none
    dropout: float = 0.0


@register_model("simple_cnn", SimpleCNNConfig)
class SimpleCNN(Classifier):
    """Configurable CNN: stages of [conv → norm → act] × n → pool, then global pooling → FC → head."""

    def __init__(self, cfg: SimpleCNNConfig):
        super().__init__()
        self.cfg = cfg
        stages: list[nn.Module] = []
        c_in = cfg.in_channels
        for c_out in cfg.channels:
            layers: list[nn.Module] = []
            for _ in range(cfg.convs_per_stage):
                # bias is redundant before a norm layer that re-centres the activations
                layers += [
                    nn.Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=cfg.norm == "none"),
                    get_norm(cfg.norm, c_out, "2d"),
                    get_act(cfg.act),
                ]
                c_in = c_out
            layers.append(_pool(cfg.pool))
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        if cfg.global_pool == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            n = c_in
        elif cfg.global_pool == "flatten":
            if not cfg.input_size or len(cfg.input_size) != 2:
                raise ShapeError(f"simple_cnn with global_pool='flatten' needs input_size=[H, W], got {cfg.input_size}")
            self.pool = nn.Flatten()
            k = 2 ** len(cfg.channels)
            n = c_in * (cfg.input_size[0] // k) * (cfg.input_size[1] // k)
        else:
            raise ShapeError(f"simple_cnn: global_pool must be 'avg' or 'flatten', got {cfg.global_pool!r}")
        fc: list[nn.Module] = []
        if cfg.hidden > 0:
            fc += [nn.Linear(n, cfg.hidden), get_act(cfg.act)]
            n = cfg.hidden
        if cfg.dropout > 0:
            fc.append(nn.Dropout(cfg.dropout))
        self.fc = nn.Sequential(*fc)
        self.num_features = n
        self.head = nn.Linear(n, cfg.num_classes)

    @property
    def min_size(self) -> int:
        return 2 ** len(self.cfg.channels)  # one 2× pooling per stage

    @property
    def example_size(self) -> tuple[int, int]:
        return tuple(self.cfg.input_size) if self.cfg.input_size else super().example_size

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return [
            {"num_chs": c, "reduction": 2 ** (i + 1), "module": f"features.{i}"}
            for i, c in enumerate(self.cfg.channels)
        ]

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise ShapeError(f"simple_cnn expects images (C, H, W), got samples of shape {tuple(shape)}")
        c, h, w = shape
        if c != self.cfg.in_channels:
            raise ShapeError(f"simple_cnn was built for {self.cfg.in_channels} channel(s), got images with {c}")
        need = self.min_size
        if self.cfg.global_pool == "flatten" and [h, w] != list(self.cfg.input_size):
            raise ShapeError(
                f"simple_cnn was built for {self.cfg.input_size[0]}×{self.cfg.input_size[1]} images "
                f"(global_pool='flatten'), got {h}×{w}"
            )
        if min(h, w) < need:
            raise ShapeError(
                f"simple_cnn with {len(self.cfg.channels)} pooling stages needs images of at least "
                f"{need}×{need} px, got {h}×{w}"
            )

    def forward_features(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | list[torch.Tensor]:
        if stages:
            maps = []
            for stage in self.features:
                x = stage(x)
                maps.append(x)  # (B, channels[i], H / 2^(i+1), W / 2^(i+1))
            return maps
        return self.features(x)  # (B, C, H, W) -> (B, channels[-1], H / 2^n, W / 2^n)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        feats = self.fc(self.pool(feats))  # global pool (or flatten) -> FC: (B, num_features)
        return feats if pre_logits else self.head(feats)

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
