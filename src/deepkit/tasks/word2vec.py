"""word2vec's negative-sampling objective: -log σ(u_o·v_c) - Σ_k log σ(-u_k·v_c), averaged over the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from deepkit.tasks.base import Task

if TYPE_CHECKING:
    pass


class Word2VecTask(Task):
    """Scores from :class:`~deepkit.models.word2vec.Word2Vec` -> the loss; reports how often the true pair
    outscores every negative (``pair_accuracy``)."""

    name = "word2vec"
    inputs_identify_examples = False  # deepkit doctor: skip-gram pairs recur across splits by nature
    monitor = "val_loss"
    monitor_mode = "min"

    def make_metrics(self):
        import torchmetrics

        return torchmetrics.MetricCollection({"pair_accuracy": torchmetrics.MeanMetric()})

    def _scores(self, batch):
        return self.model(batch["center"], batch["context"], batch["negatives"])

    def loss(self, outputs, target=None):
        pos, neg = outputs
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()

    def training_step(self, batch):
        out = self._scores(batch)
        return {"loss": self.loss(out)}

    @torch.no_grad()
    def validation_step(self, batch):
        pos, neg = self._scores(batch)
        self.metrics["pair_accuracy"].update((pos[:, None] > neg).all(-1).float())
        return {"loss": self.loss((pos, neg))}
