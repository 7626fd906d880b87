"""Multi-layer perceptron: flatten → [Linear → norm → act → dropout] × depth → Linear head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Classifier
from deepkit.models.registry import register_model
from deepkit.nn import get_act, get_norm


@dataclass
class MLPConfig:
    in_features: int = 784  # filled from the data when a recipe leaves it out
    num_classes: int = 10  # number of outputs: classes, or 1 for single-target regression
    depth: int = 2  # hidden layers
    width: int = 256
    act: str = "relu"  # sigmoid, tanh, relu, leaky_relu, gelu, ...
    norm: str = "none"  # none, batchnorm, layernorm
    dropout: float = 0.0


@register_model("mlp", MLPConfig)
class MLP(Classifier):
    """Fully connected network on flattened inputs (depth, width, activation, norm and dropout configurable)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Flatten()]
        n = cfg.in_features
        for _ in range(cfg.depth):
            layers += [nn.Linear(n, cfg.width), get_norm(cfg.norm, cfg.width, "1d"), get_act(cfg.act)]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            n = cfg.width
        self.features = nn.Sequential(*layers)
        self.num_features = n
        self.head = nn.Linear(n, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, ...) -> (B, width)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)  # (B, width) -> (B, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
