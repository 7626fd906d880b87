"""Semantic-segmentation metrics from one torchmetrics confusion matrix: IoU per class, mIoU, pixel accuracy, Dice.

The matrix (``torchmetrics.classification.MulticlassConfusionMatrix``, rows = truth, columns = prediction) skips the
pixels labelled ``ignore_index`` (torchmetrics #2747, smp #547), and every figure is derived from it:

* IoU of class c = TP / (TP + FP + FN); Dice (= F1) of class c = 2 TP / (2 TP + FP + FN);
* a class absent from both the truth and the predictions (TP + FP + FN = 0) has no IoU (NaN) and stays out of the
  means, which are taken over the classes that have one (torchmetrics' JaccardIndex counts them as 0 instead, or as
  ``zero_division``);
* ``miou``: the mean over every class, the background class included; when the data names a background class,
  ``miou_no_bg`` is the mean without it (Tramac #86: both are stated, neither is hidden);
* ``pixel_accuracy``: correct non-ignored pixels over all non-ignored pixels;
* binary tasks (two classes, class 1 the foreground): ``dice`` and ``iou_fg`` are those of class 1 (vessels,
  membranes), the usual figures of medical segmentation; ``pixel_error`` = 1 - pixel accuracy (ISBI 2012).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import torchmetrics


def confusion_metric(num_classes: int, ignore_index: int | None) -> torchmetrics.Metric:
    """The pixel confusion matrix (rows: truth, columns: prediction); ``ignore_index`` pixels are skipped."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    return MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)


def safe_name(name: str) -> str:
    """A class name as a metric-name suffix: lower case, spaces and punctuation as ``_``."""
    out = "".join(ch if ch.isalnum() else "_" for ch in name.strip().lower())
    return out or "class"


def scores_from_confusion(cm: torch.Tensor, class_names: list[str], background: int | None = None) -> dict[str, float]:
    """Every figure of the module docstring from a (K, K) confusion matrix (rows truth, columns prediction).

    Args:
        cm: counts; ignored pixels must already be left out.
        class_names: K names (metric keys ``iou_<name>``).
        background: index of the background class (for ``miou_no_bg``), or None.
    """
    cm = cm.double().cpu()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    union = tp + fp + fn
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    dice = torch.where(union > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum()
    out = {"miou": _nanmean(iou), "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan")}
    out["mdice"] = _nanmean(dice)
    if background is not None and len(class_names) > 2:
        keep = [i for i in range(len(class_names)) if i != background]
        out["miou_no_bg"] = _nanmean(iou[keep])
    if len(class_names) == 2:
        out["dice"] = float(dice[1])
        out["iou_fg"] = float(iou[1])
        out["pixel_error"] = 1.0 - out["pixel_accuracy"]
    for name, v in zip(class_names, iou.tolist(), strict=True):
        out[f"iou_{safe_name(name)}"] = v
    return out


def _nanmean(x: torch.Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else float("nan")


def mean_rule(class_names: list[str], background: int | None, ignored: str | None) -> str:
    """One sentence saying what the means cover (written into results.json, the IoU table and the log).

    Args:
        class_names: the classes.
        background: index of the background class, or None.
        ignored: the data's ignored label as the masks hold it (``"label 11 (Unlabelled)"``), or None.
    """
    k = len(class_names)
    parts = [f"miou: mean IoU over the {k} classes"]
    if background is not None:
        parts[0] += f", background '{class_names[background]}' included"
        if k > 2:
            parts.append(f"miou_no_bg: the same without '{class_names[background]}'")
    if ignored:
        parts.append(f"pixels of {ignored} are ignored by every metric")
    parts.append("a class absent from both truth and prediction is left out of the means")
    return "; ".join(parts)


def format_iou_table(metrics: dict[str, float], class_names: list[str]) -> str:
    """The per-class IoU table (and the means) as text."""
    width = max(14, *(len(n) for n in class_names))
    lines = [f"{'class':<{width}}  IoU"]
    for name in class_names:
        v = metrics.get(f"iou_{safe_name(name)}", float("nan"))
        lines.append(f"{name:<{width}}  {'  n/a' if math.isnan(v) else f'{100 * v:5.1f}'}")
    for key in ("miou", "miou_no_bg", "pixel_accuracy", "mdice", "dice", "iou_fg"):
        if key in metrics and math.isfinite(metrics[key]):
            lines.append(f"{key:<{width}}  {100 * metrics[key]:5.1f}")
    return "\n".join(lines)
