"""Encoder–decoder objectives for T5: text-to-text (translation, summarization: source → target pairs,
teacher forcing) and span-corruption pretraining (Raffel et al. 2020). Both are next-token prediction on the
decoder side; the data (``deepkit.data.masking.PairBatcher``) decides what the pairs are.

Batches: ``{"input_ids", "attention_mask", "decoder_input_ids", "target"}`` (target -100 on padding). BLEU on a
text-to-text run is computed after training by decoding (greedy and beam search, sacrebleu).
"""

from __future__ import annotations

import torch

from deepkit.tasks.sequence import LanguageModelTask


class TextToTextTask(LanguageModelTask):
    """Teacher-forced sequence-to-sequence training: logits ``(B, T_dec, V)`` against ``target (B, T_dec)``."""

    name = "text_to_text"

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(
            input_ids=batch["input_ids"],
            decoder_input_ids=batch["decoder_input_ids"],
            attention_mask=batch["attention_mask"],
        )


class SpanCorruptionTask(TextToTextTask):
    """T5 pretraining: reconstruct the corrupted spans (sentinel, span tokens, ...) from the corrupted input."""

    name = "span_corruption"
