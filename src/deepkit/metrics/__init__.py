"""Thin adapters over torchmetrics: the metric sets each task reports, by name."""

from __future__ import annotations

import torchmetrics
from torchmetrics import classification as tmc
from torchmetrics import regression as tmr


def classification_metrics(num_classes: int) -> torchmetrics.MetricCollection:
    """accuracy, macro-F1 (and the confusion matrix, computed separately at evaluation)."""
    return torchmetrics.MetricCollection(
        {
            "accuracy": tmc.MulticlassAccuracy(num_classes, average="micro"),
            "f1": tmc.MulticlassF1Score(num_classes, average="macro"),
        }
    )


def binary_metrics() -> torchmetrics.MetricCollection:
    return torchmetrics.MetricCollection(
        {
            "accuracy": tmc.BinaryAccuracy(),
            "f1": tmc.BinaryF1Score(),
            "auroc": tmc.BinaryAUROC(),
        }
    )


def regression_metrics(num_outputs: int = 1) -> torchmetrics.MetricCollection:
    """RMSE, MAE and R² in the target's original units."""
    return torchmetrics.MetricCollection(
        {
            "rmse": tmr.MeanSquaredError(squared=False, num_outputs=num_outputs),
            "mae": tmr.MeanAbsoluteError(num_outputs=num_outputs) if _mae_takes_outputs() else tmr.MeanAbsoluteError(),
            "r2": tmr.R2Score(multioutput="uniform_average") if num_outputs > 1 else tmr.R2Score(),
        }
    )


def confusion_matrix(num_classes: int) -> torchmetrics.Metric:
    return tmc.MulticlassConfusionMatrix(num_classes)


def _mae_takes_outputs() -> bool:
    import inspect

    return "num_outputs" in inspect.signature(tmr.MeanAbsoluteError.__init__).parameters
