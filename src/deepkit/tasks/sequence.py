"""Sequence tasks: text classification over padded batches, next-token language modelling, forecasting.

Batches are dicts from :mod:`deepkit.data.text` loaders: ``{"tokens", "lengths", "target"}``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.models.token_model import TokenModel
from deepkit.tasks.base import Task, check_label_smoothing
from deepkit.tasks.classification import ClassificationTask

if TYPE_CHECKING:
    pass

IGNORE = -100  # target id that the LM loss skips (padding after the end of a sentence)


class TextClassificationTask(ClassificationTask):
    """Classification of variable-length token sequences: ``model(tokens, lengths)`` -> logits (B, K)."""

    name = "text_classification"

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["tokens"], batch.get("lengths"))

    def training_step(self, batch):
        out = self._forward(batch)
        y = batch["target"]
        return {"loss": self.loss(out, y), **self.step_logs(out.detach(), y)}

    @torch.no_grad()
    def validation_step(self, batch):
        out = self._forward(batch).float()
        self.update_metrics(out, batch["target"])
        return {"loss": self.loss(out, batch["target"])}

    @torch.no_grad()
    def predict_step(self, batch):
        return self.postprocess(self._forward(batch).float())

    def batch_logits(self, batch):
        return self._forward(batch)

    def batch_targets(self, batch):
        return batch["target"]


class LanguageModelTask(Task):
    """Next-token prediction: logits (B, T, V) against targets (B, T); positions with target -100 are skipped.

    Reports perplexity (torchmetrics) and next-token accuracy; the loss is nats per token. ``label_smoothing``
    (as in Vaswani et al. 2017, 0.1) smooths the training loss only: validation loss and perplexity stay the plain
    negative log-likelihood, so they compare across runs.
    """

    name = "language_model"
    monitor = "val_loss"
    monitor_mode = "min"

    def __init__(
        self,
        model: nn.Module,
        vocab_size: int,
        preprocessing: Preprocessing | None = None,
        label_smoothing: float = 0.0,
    ):
        self.vocab_size = vocab_size
        self.label_smoothing = check_label_smoothing(label_smoothing)
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics
        from torchmetrics.text import Perplexity

        return torchmetrics.MetricCollection({"perplexity": Perplexity(ignore_index=IGNORE)})

    def loss(self, outputs, target, label_smoothing: float = 0.0):
        logits, target = outputs.reshape(-1, outputs.shape[-1]), target.reshape(-1)
        return F.cross_entropy(logits, target, ignore_index=IGNORE, label_smoothing=label_smoothing)

    def step_logs(self, outputs, target):
        valid = target != IGNORE
        return {"accuracy": ((outputs.argmax(-1) == target) & valid).sum() / valid.sum().clamp_min(1)}

    def _forward(self, batch):
        lengths = batch.get("lengths")
        if lengths is None or isinstance(self.model, TokenModel):
            # a causal Transformer needs no lengths: right padding comes after every real position it could see
            return self.model(batch["tokens"])
        return self.model(batch["tokens"], lengths)

    def training_step(self, batch):
        out = self._forward(batch)
        y = batch["target"]
        return {"loss": self.loss(out, y, self.label_smoothing), **self.step_logs(out.detach(), y)}

    @torch.no_grad()
    def validation_step(self, batch):
        out = self._forward(batch).float()
        self.metrics.update(out, batch["target"])
        return {"loss": self.loss(out, batch["target"])}

    def compute_metrics(self) -> dict[str, float]:
        ppl = float(self.metrics.compute()["perplexity"])
        return {"perplexity": ppl, "bits_per_token": math.log2(ppl) if ppl > 0 else float("nan")}

    def describe(self):
        return {"name": self.name, "vocab_size": self.vocab_size}


class Seq2SeqTask(LanguageModelTask):
    """Teacher-forced encoder–decoder training: ``model(src, src_lengths, tgt_in)`` -> logits (B, T, V) against
    ``target`` (-100 on padding). Reports target-side perplexity; BLEU is computed after training by decoding."""

    name = "translation"

    def _forward(self, batch):
        return self.model(batch["src"], batch["src_lengths"], batch["tgt_in"])


class ForecastInference(nn.Module):
    """Raw history (B, W) -> the next ``horizon`` values (B, H) in the series' units: the fitted transform (log,
    difference, standardize), one model call and its inverse in one graph, for ``deepkit export``. ``W`` is the
    model's window, plus one with differencing (the change into the first step needs the value before it)."""

    def __init__(self, model: nn.Module, log: bool, difference: bool, mean: float, std: float):
        super().__init__()
        self.model, self.log, self.difference, self.mean, self.std = model, log, difference, mean, std

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        v = history.double()
        v = torch.log(v) if self.log else v
        z = torch.diff(v, dim=1) if self.difference else v
        z = ((z - self.mean) / self.std).float()
        pred = self.model(z.unsqueeze(-1)).double() * self.std + self.mean  # (B, H) in transformed units
        base = v[:, -1:]
        out = base + torch.cumsum(pred, dim=1) if self.difference else pred
        return (torch.exp(out) if self.log else out).float()
