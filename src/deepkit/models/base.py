"""The classifier interface shared by every model family (timm's convention).

``forward(x) = forward_head(forward_features(x))``; transfer learning swaps the head with
``reset_classifier(num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Base class: subclasses define ``forward_features``, ``forward_head`` and ``reset_classifier``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """The head module (its parameters are what transfer learning replaces); ``self.head`` by default."""
        return self.head

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise ``ShapeError`` if one sample of this ``shape`` (no batch dim) cannot go through the model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
