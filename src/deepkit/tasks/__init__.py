"""What is optimized: loss, metrics, training/validation steps, predict + postprocess."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, suggest
from deepkit.tasks.base import Task
from deepkit.tasks.classification import BinaryClassificationTask, ClassificationTask
from deepkit.tasks.regression import RegressionTask

TASKS = {
    "classification": "multi-class classification: cross-entropy, accuracy, macro-F1, confusion matrix",
    "binary": "binary classification: BCE with logits, accuracy, F1, ROC-AUC",
    "regression": "regression: MSE/MAE/Huber loss, RMSE, MAE, R²",
}


@dataclass
class TaskConfig:
    name: str = "classification"  # classification, binary, regression
    loss: str = "mse"  # regression: mse, mae, huber
    huber_delta: float = 1.0
    label_smoothing: float = 0.0  # classification
    pos_weight: float | None = None  # binary: weight of the positive class in the loss


def build_task(cfg: TaskConfig, model: nn.Module, preprocessing: Preprocessing) -> Task:
    """The task named by ``cfg.name`` around ``model``."""
    if cfg.name == "classification":
        return ClassificationTask(model, len(preprocessing.class_names or []), preprocessing, cfg.label_smoothing)
    if cfg.name == "binary":
        return BinaryClassificationTask(model, preprocessing, cfg.pos_weight)
    if cfg.name == "regression":
        n = len(preprocessing.target_mean) if preprocessing.target_mean else 1
        return RegressionTask(model, n, preprocessing, cfg.loss, cfg.huber_delta)
    raise ConfigError(f"unknown task '{cfg.name}'{suggest(cfg.name, TASKS)}")


__all__ = [
    "TASKS",
    "BinaryClassificationTask",
    "ClassificationTask",
    "RegressionTask",
    "Task",
    "TaskConfig",
    "build_task",
]
