"""Preprocessing fitted on the training split only and saved with the model, so predict sees what training saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepkit.config import from_dict, to_dict
from deepkit.data.tables import TabularEncoding
from deepkit.errors import ShapeError


@dataclass
class Preprocessing:
    """How raw inputs become model inputs (and model outputs become targets), in JSON-safe form.

    Images are floats in [0, 1] before normalization (image files: pixel / 255).
    """

    kind: str = "tabular"  # "image" (C, H, W) or "tabular" (F,)
    input_shape: list[int] = field(default_factory=list)  # one sample, after preprocessing
    normalize: str = "none"  # "channel" (per-channel mean/std), "feature" (per-element), "none"
    mean: list[float] | None = None
    std: list[float] | None = None
    target_mean: list[float] | None = None  # regression targets are standardized for training
    target_std: list[float] | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None  # tables: the columns read (one-hot columns: tabular.features)
    target_name: str | None = None
    tabular: TabularEncoding | None = None  # CSV tables: categories, fill values (runs before it: numbers only)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return from_dict(cls, d, "preprocessing")

    # --- fitting -------------------------------------------------------------------------------------------------
    def fit(self, x: torch.Tensor) -> Preprocessing:
        """Fit mean/std on training inputs ``x`` (N, *input_shape)."""
        if self.normalize == "channel":
            dims = [0] + list(range(2, x.ndim))
            mean, std = x.double().mean(dims), x.double().std(dims)
        elif self.normalize == "feature":
            mean, std = x.double().mean(0).flatten(), x.double().std(0).flatten()
        else:
            return self
        # constant inputs (e.g. border pixels) pass through; so does everything when one sample gives no spread
        std = torch.where((std < 1e-8) | std.isnan(), torch.ones_like(std), std)
        self.mean, self.std = mean.float().tolist(), std.float().tolist()
        return self

    def fit_target(self, y: torch.Tensor) -> Preprocessing:
        y = y.double().reshape(len(y), -1)
        std = y.std(0)
        std = torch.where(std < 1e-12, torch.ones_like(std), std)
        self.target_mean, self.target_std = y.mean(0).float().tolist(), std.float().tolist()
        return self

    # --- applying ------------------------------------------------------------------------------------------------
    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        if self.normalize == "channel":
            shape = (1, -1) + (1,) * (x.ndim - 2)
        else:
            shape = (1, *self.input_shape)
        return mean.view(shape), std.view(shape)

    def check_shape(self, x: torch.Tensor, what: str = "input") -> None:
        if list(x.shape[1:]) != list(self.input_shape):
            raise ShapeError(
                f"{what} has per-sample shape {tuple(x.shape[1:])}, the model expects "
                f"{tuple(self.input_shape)}" + _shape_hint(self.kind, self.input_shape)
            )

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize a batch (N, *input_shape) of raw inputs."""
        x = x.float()
        if self.normalize == "none" or self.mean is None:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def as_module(self) -> torch.nn.Module:
        """:meth:`transform` as a module with the statistics in buffers, for an exported graph (``deepkit export``)."""
        if self.normalize == "none" or self.mean is None:
            return Standardize(None, None)
        mean, std = self._stats(torch.zeros(1, *self.input_shape))
        return Standardize(mean, std)

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized inputs back to raw values (images in [0, 1])."""
        if self.normalize == "none" or self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def transform_target(self, y: torch.Tensor) -> torch.Tensor:
        if self.target_mean is None:
            return y
        m = torch.tensor(self.target_mean, dtype=y.dtype, device=y.device)
        s = torch.tensor(self.target_std, dtype=y.dtype, device=y.device)
        return (y - m) / s

    def inverse_target(self, y: torch.Tensor) -> torch.Tensor:
        if self.target_mean is None:
            return y
        m = torch.tensor(self.target_mean, dtype=y.dtype, device=y.device)
        s = torch.tensor(self.target_std, dtype=y.dtype, device=y.device)
        return y * s + m


class Standardize(torch.nn.Module):
    """``(x - mean) / std`` with broadcastable statistics (1, ...) held in buffers; identity without them."""

    def __init__(self, mean: torch.Tensor | None, std: torch.Tensor | None):
        super().__init__()
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x if self.mean is None else (x - self.mean) / self.std


def _shape_hint(kind: str, shape: list[int]) -> str:
    if kind == "image" and len(shape) == 3:
        c, h, w = shape
        return f" ({c} channel(s), {h}×{w} px)"
    return f" ({int(np.prod(shape))} features)" if shape else ""
