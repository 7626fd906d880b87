"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013, "Distributed Representations of
Words and Phrases and their Compositionality").

The model returns scores only (no loss inside): ``forward(center, context, negatives)`` ->
``(positive (B,), negative (B, K))`` logits; :class:`~deepkit.tasks.word2vec.Word2VecTask` turns them into
the negative-sampling loss. The word vectors are ``in_embed.weight`` (``vectors()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.base import example_generator, model_device, random_ids
from deepkit.models.registry import register_model


@dataclass
class Word2VecConfig:
    vocab_size: int = 10000
    embed_dim: int = 100
    mode: Literal["skipgram", "cbow"] = "skipgram"
    padding_idx: int = 0


class Word2Vec(nn.Module):
    """Input and output embeddings scored by dot products.

    - skip-gram: ``center`` (B,) predicts one ``context`` word (B,) against ``negatives`` (B, K);
    - CBOW: the mean of the ``context`` words (B, 2W) (padding id 0 ignored) predicts ``center`` (B,).
    """

    def __init__(self, cfg: Word2VecConfig):
        super().__init__()
        if cfg.mode not in ("skipgram", "cbow"):
            raise ConfigError(f"model.mode: expected skipgram or cbow, got '{cfg.mode}'")
        self.cfg = cfg
        self.in_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.padding_idx)
        self.out_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.padding_idx)
        # the reference initialization: input vectors uniform in ±0.5/D, output vectors zero
        nn.init.uniform_(self.in_embed.weight, -0.5 / cfg.embed_dim, 0.5 / cfg.embed_dim)
        nn.init.zeros_(self.out_embed.weight)
        with torch.no_grad():
            self.in_embed.weight[cfg.padding_idx].zero_()

    def forward(
        self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.mode == "skipgram":
            h = self.in_embed(center)  # (B, D)
            target = context
        else:
            mask = (context != self.cfg.padding_idx).unsqueeze(-1)  # (B, 2W, 1)
            h = (self.in_embed(context) * mask).sum(1) / mask.sum(1).clamp_min(1)  # (B, D)
            target = center
        pos = (h * self.out_embed(target)).sum(-1)  # (B,)
        neg = torch.einsum("bd,bkd->bk", h, self.out_embed(negatives))  # (B, K)
        return pos, neg

    def example_input(self, batch_size: int = 2, window: int = 2, negatives: int = 3) -> dict[str, torch.Tensor]:
        """``{"center": (B,), "context": (B,) skip-gram or (B, 2·window) CBOW, "negatives": (B, negatives)}``, ids
        from 1 (past the padding id 0)."""
        g, v = example_generator(), self.cfg.vocab_size
        center = random_ids(g, v, (batch_size,), low=1)
        context = random_ids(g, v, (batch_size,) if self.cfg.mode == "skipgram" else (batch_size, 2 * window), low=1)
        neg = random_ids(g, v, (batch_size, negatives), low=1)
        device = model_device(self)
        return {"center": center.to(device), "context": context.to(device), "negatives": neg.to(device)}

    def vectors(self) -> torch.Tensor:
        """The learned word vectors (V, D)."""
        return self.in_embed.weight.detach()


register_model("word2vec_skipgram", Word2VecConfig, mode="skipgram")(Word2Vec)
register_model("word2vec_cbow", Word2VecConfig, mode="cbow")(Word2Vec)
