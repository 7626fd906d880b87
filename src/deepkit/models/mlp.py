"""Multi-layer perceptron: flatten → [Linear → norm → act → dropout] × depth → Linear head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Classifier, example_generator, model_device
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

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return feats if pre_logits else self.head(feats)  # (B, width) -> (B, num_classes)

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"x": (batch_size, in_features)}``, standard normal."""
        x = torch.randn(batch_size, self.cfg.in_features, generator=example_generator(), device="cpu")
        return {"x": x.to(model_device(self))}

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes
