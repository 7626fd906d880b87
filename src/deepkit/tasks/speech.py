"""Audio classification: waveform batches ``{"audio", "lengths", "label"}`` into a classifier that computes its own
features; cross-entropy, accuracy, macro-F1, and recall per class from the confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.tasks.classification import ClassificationTask


class AudioClassificationTask(ClassificationTask):
    """``model(audio, lengths) -> logits (B, K)``. Metrics: ``accuracy``, ``f1`` (macro) and ``recall_<class>``
    (the share of each class's clips recognised); the last confusion matrix is kept in ``confusion`` (rows: truth)."""

    name = "audio_classification"

    def __init__(self, model: nn.Module, class_names: list[str], preprocessing: Preprocessing | None = None,
                 label_smoothing: float = 0.0):  # fmt: skip
        self.class_names = list(class_names)
        self.confusion: torch.Tensor | None = None
        self.per_class = True  # recall per class among the metrics (the family turns it off during training epochs)
        super().__init__(model, len(class_names), preprocessing, label_smoothing)

    def make_metrics(self):
        from deepkit import metrics

        collection = metrics.classification_metrics(self.num_classes)
        collection.add_metrics({"confusion": metrics.confusion_matrix(self.num_classes)})
        return collection

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["audio"], batch["lengths"])

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.forward(batch)
        y = batch["label"]
        return {"loss": self.loss(out, y), **self.step_logs(out.detach(), y)}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.forward(batch).float()
        self.update_metrics(out, batch["label"])
        return {"loss": F.cross_entropy(out, batch["label"])}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.postprocess(self.forward(batch).float())

    def batch_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # deepkit doctor's per-example view
        return self.forward(batch)

    def batch_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["label"]

    def compute_metrics(self) -> dict[str, float]:
        values = dict(self.metrics.compute())
        conf = values.pop("confusion").long().cpu()
        self.confusion = conf
        out = {k: float(v.float().mean()) for k, v in values.items()}
        totals = conf.sum(1).clamp(min=1)
        for i, name in enumerate(self.class_names if self.per_class else ()):
            out[f"recall_{name}"] = float(conf[i, i] / totals[i])
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "classes": len(self.class_names)}


class AudioInference(nn.Module):
    """``(audio (B, T), lengths (B,)) -> class probabilities (B, K)``: what ``predict`` computes, as one module for
    ``deepkit export`` (the feature front end and its normalization are inside the model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(audio, lengths).float().softmax(-1)
