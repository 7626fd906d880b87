"""Masked language modelling (BERT / RoBERTa): predict the tokens hidden by the loader's mask.

Batches come from :class:`deepkit.data.masking.MaskedLMLoader`: ``tokens`` are the masked ids, ``target`` holds the
original id at the ~15% chosen positions and -100 everywhere else, so loss, accuracy and perplexity count only
the chosen positions (as in Devlin et al. 2019). The vocabulary projection — the costliest layer of a small
model — runs on the chosen positions only: ``forward_head(hidden[chosen])`` gives logits ``(N, V)``.
"""

from __future__ import annotations

import torch

from deepkit.tasks.sequence import IGNORE, LanguageModelTask
from deepkit.tasks.token_tasks import encoder_inputs


class MaskedLMTask(LanguageModelTask):
    """Masked LM over an encoder with an MLM head: logits ``(B, T, V)`` against ``target (B, T)``."""

    name = "masked_lm"

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(1, N, V)`` at the N chosen positions and their targets ``(1, N)``."""
        target = batch["target"]
        chosen = target != IGNORE  # (B, T)
        model = self.model
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            hidden = model.forward_features(**encoder_inputs(batch))  # (B, T, C)
            logits = model.forward_head(hidden[chosen])  # (N, V)
        else:
            logits = model(**encoder_inputs(batch))[chosen]
        return logits[None], target[chosen][None]

    def training_step(self, batch):
        out, y = self._forward(batch)
        return {"loss": self.loss(out, y, self.label_smoothing), **self.step_logs(out.detach(), y)}

    @torch.no_grad()
    def validation_step(self, batch):
        out, y = self._forward(batch)
        out = out.float()
        self.metrics.update(out, y)
        return {"loss": self.loss(out, y)}
