"""Classification: multi-class (cross-entropy, softmax) and binary (BCE with logits, sigmoid)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepkit import metrics
from deepkit.data.preprocess import Preprocessing
from deepkit.tasks.base import Task, check_label_smoothing


class ClassificationTask(Task):
    """Multi-class: logits (B, K), integer labels (B,). Reports accuracy and macro-F1; confusion matrix at eval."""

    name = "classification"
    monitor = "val_accuracy"
    monitor_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        preprocessing: Preprocessing | None = None,
        label_smoothing: float = 0.0,
    ):
        self.num_classes = num_classes
        self.label_smoothing = check_label_smoothing(label_smoothing)
        super().__init__(model, preprocessing)

    def make_metrics(self):
        return metrics.classification_metrics(self.num_classes)

    def loss(self, outputs, target):
        # target: labels (B,), or class probabilities (B, K) from mixup/cutmix
        return F.cross_entropy(outputs, target, label_smoothing=self.label_smoothing)

    def step_logs(self, outputs, target):
        hard = target.argmax(1) if target.ndim == 2 else target
        return {"accuracy": (outputs.argmax(1) == hard).float().mean()}

    def postprocess(self, outputs):
        return outputs.softmax(-1)  # (B, K) probabilities


class BinaryClassificationTask(Task):
    """Binary: one logit per sample (B, 1), float labels in {0, 1}. Reports accuracy, F1 and ROC-AUC."""

    name = "binary"
    monitor = "val_accuracy"
    monitor_mode = "max"

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None, pos_weight: float | None = None):
        self.pos_weight = pos_weight
        super().__init__(model, preprocessing)

    def make_metrics(self):
        return metrics.binary_metrics()

    def loss(self, outputs, target):
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=outputs.device)
        return F.binary_cross_entropy_with_logits(outputs.reshape(-1), target.float(), pos_weight=pw)

    def step_logs(self, outputs, target):
        return {"accuracy": ((outputs.reshape(-1) > 0).float() == target).float().mean()}

    def update_metrics(self, outputs, target):
        self.metrics.update(outputs.reshape(-1).sigmoid(), target.long())

    def postprocess(self, outputs):
        return outputs.reshape(-1).sigmoid()  # (B,) probability of class 1
