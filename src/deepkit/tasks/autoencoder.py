"""Autoencoder: reconstruction loss (per-pixel BCE or MSE), optional denoising, anomaly scores.

The anomaly score of an image is its reconstruction error; a threshold picked on (normal) validation data turns
it into a decision, and ROC-AUC on test data measures it without a threshold (see :mod:`deepkit.families.generative`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.tasks.base import Task

if TYPE_CHECKING:
    pass


@dataclass
class AutoencoderTaskConfig:
    loss: Literal["bce", "mse"] = "bce"  # per-pixel, on the sigmoid of the decoder logits
    noise: float = 0.0  # denoising autoencoder: std of Gaussian noise added to training inputs (Vincent et al., 2008)
    anomaly_class: int | None = None  # hold this class out of training; it is the anomaly at test time
    threshold_quantile: float = 0.99  # anomaly threshold: this quantile of validation (normal) errors


@dataclass
class AutoencoderTaskSection:
    """The ``task`` section of an autoencoder recipe: ``{name: autoencoder, autoencoder: {...}}``."""

    name: str = "autoencoder"
    autoencoder: AutoencoderTaskConfig = field(default_factory=AutoencoderTaskConfig)


class AutoencoderTask(Task):
    """Trains an ``autoencoder``/``conv_autoencoder``. Logs ``loss`` and ``mse`` (per pixel)."""

    name = "autoencoder"
    monitor = "val_loss"
    monitor_mode = "min"

    def __init__(
        self, model: nn.Module, preprocessing: Preprocessing | None = None, cfg: AutoencoderTaskConfig | None = None
    ):
        self.cfg = cfg or AutoencoderTaskConfig()
        self.preview: torch.Tensor | None = None
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics

        return torchmetrics.MetricCollection({"mse": torchmetrics.MeanMetric()})

    def errors(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction error per image (B,), mean over pixels."""
        if self.cfg.loss == "mse":
            err = (logits.sigmoid() - x).pow(2)
        else:
            err = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return err.flatten(1).mean(1)

    def training_step(self, batch):
        x = batch[0]
        inp = (x + self.cfg.noise * torch.randn_like(x)).clamp(0, 1) if self.cfg.noise > 0 else x
        logits = self.model(inp).float()
        return {"loss": self.errors(logits, x).mean()}

    @torch.no_grad()
    def validation_step(self, batch):
        x = batch[0]
        logits = self.model(x).float()
        self.metrics["mse"].update((logits.sigmoid() - x).pow(2).flatten(1).mean(1))
        return {"loss": self.errors(logits, x).mean()}

    @torch.no_grad()
    def predict_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)  # latent codes (B, latent_dim)

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Reconstruction error per image (B,): higher = more anomalous."""
        self.model.eval()
        return torch.cat([self.errors(self.model(xb).float(), xb) for xb in x.split(batch_size)])

    @torch.no_grad()
    def grids(self, n: int = 64, seed: int = 0) -> dict[str, tuple[torch.Tensor, int]]:
        if self.preview is None:
            return {}
        was = self.model.training
        self.model.eval()
        x = self.preview[:8].to(next(self.model.parameters()).device)
        rows = [x]
        if self.cfg.noise > 0:
            g = torch.Generator().manual_seed(seed)
            noisy = (x + self.cfg.noise * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)
            rows += [noisy, self.model(noisy).sigmoid()]
        else:
            rows.append(self.model(x).sigmoid())
        self.model.train(was)
        return {"reconstructions": (torch.cat(rows), len(x))}
