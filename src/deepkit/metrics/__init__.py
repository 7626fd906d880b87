"""Thin adapters over torchmetrics: the metric sets each task reports, by name.

torchmetrics is imported when a metric set is made (importing it loads its text and audio metrics too, which costs
seconds): predicting with a trained model never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torchmetrics


def classification_metrics(num_classes: int) -> torchmetrics.MetricCollection:
    """accuracy, macro-F1 (and the confusion matrix, computed separately at evaluation)."""
    import torchmetrics
    from torchmetrics import classification as tmc

    return torchmetrics.MetricCollection(
        {
            "accuracy": tmc.MulticlassAccuracy(num_classes, average="micro"),
            "f1": tmc.MulticlassF1Score(num_classes, average="macro"),
        }
    )


def binary_metrics() -> torchmetrics.MetricCollection:
    import torchmetrics
    from torchmetrics import classification as tmc

    return torchmetrics.MetricCollection(
        {
            "accuracy": tmc.BinaryAccuracy(),
            "f1": tmc.BinaryF1Score(),
            "auroc": tmc.BinaryAUROC(),
        }
    )


def regression_metrics(num_outputs: int = 1) -> torchmetrics.MetricCollection:
    """RMSE, MAE and R² in the target's original units."""
    import torchmetrics
    from torchmetrics import regression as tmr

    return torchmetrics.MetricCollection(
        {
            "rmse": tmr.MeanSquaredError(squared=False, num_outputs=num_outputs),
            "mae": tmr.MeanAbsoluteError(num_outputs=num_outputs) if _mae_takes_outputs() else tmr.MeanAbsoluteError(),
            "r2": tmr.R2Score(multioutput="uniform_average") if num_outputs > 1 else tmr.R2Score(),
        }
    )


def confusion_matrix(num_classes: int) -> torchmetrics.Metric:
    from torchmetrics import classification as tmc

    return tmc.MulticlassConfusionMatrix(num_classes)


def _mae_takes_outputs() -> bool:
    import inspect

    from torchmetrics import regression as tmr

    return "num_outputs" in inspect.signature(tmr.MeanAbsoluteError.__init__).parameters
