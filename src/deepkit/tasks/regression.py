"""Regression: MSE, MAE or Huber loss on standardized targets; RMSE, MAE and R² in original units."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from deepkit import metrics
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, suggest
from deepkit.tasks.base import Task

LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


class RegressionTask(Task):
    """Outputs (B, K) against targets (B, K). The loss is computed on standardized targets (if the data
    standardized them); metrics are reported after mapping predictions back to the original units."""

    name = "regression"
    monitor = "val_loss"
    monitor_mode = "min"

    def __init__(
        self,
        model: nn.Module,
        num_outputs: int = 1,
        preprocessing: Preprocessing | None = None,
        loss: str = "mse",
        huber_delta: float = 1.0,
    ):
        if loss not in LOSSES:
            raise ConfigError(f"unknown regression loss '{loss}'{suggest(loss, LOSSES)}")
        self.num_outputs, self.loss_name, self.huber_delta = num_outputs, loss, huber_delta
        super().__init__(model, preprocessing)

    def make_metrics(self):
        return metrics.regression_metrics(self.num_outputs)

    def loss(self, outputs, target):
        target = self.preprocessing.transform_target(target.reshape(outputs.shape))
        if self.loss_name == "huber":
            return F.huber_loss(outputs, target, delta=self.huber_delta)
        return LOSSES[self.loss_name](outputs, target)

    def update_metrics(self, outputs, target):
        pred = self.preprocessing.inverse_target(outputs)
        target = target.reshape(pred.shape)
        if self.num_outputs == 1:
            pred, target = pred.reshape(-1), target.reshape(-1)
        self.metrics.update(pred, target)

    def postprocess(self, outputs):
        return self.preprocessing.inverse_target(outputs)  # (B, K) in the target's units
