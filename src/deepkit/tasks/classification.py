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

    # --- per-example views for deepkit doctor --------------------------------------------------------------------
    def batch_logits(self, batch) -> torch.Tensor:
        """The model's logits (B, K) for a batch."""
        return self.model(batch[0])

    def batch_targets(self, batch) -> torch.Tensor:
        return batch[1]

    def example_labels(self, batch):
        y = self.batch_targets(batch)
        return y if y.ndim == 1 and not y.is_floating_point() else None

    def example_outputs(self, batch):
        y = self.example_labels(batch)
        if y is None:
            return None
        logits = self.batch_logits(batch).float()
        return {"label": y, "loss": F.cross_entropy(logits, y, reduction="none"), "probs": logits.softmax(-1)}


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

    def example_labels(self, batch):
        return batch[1].long()

    def example_outputs(self, batch):
        logit = self.model(batch[0]).float().reshape(-1)
        y = batch[1].float()
        p1 = logit.sigmoid()
        loss = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
        return {"label": y.long(), "loss": loss, "probs": torch.stack([1 - p1, p1], 1)}
