"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation"): a causal self-attention stack over a
user's latest items, built from deepkit's own Transformer blocks (``deepkit.nn.attention``). Item embeddings
(scaled by sqrt(d)) plus learned positions, pre-LayerNorm blocks with a ReLU feed-forward of the model width, a
final LayerNorm; the score of item ``j`` after position ``t`` is ``h_t . e_j`` with the input embedding table
(shared, as in the paper). Sequences are left-padded with ``num_items`` (the padding row), so the latest item is
always at the last position; padding is masked out of attention and its outputs are zeroed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Recommender, ScoreAll, example_generator, model_device, random_ids
from deepkit.models.registry import register_model
from deepkit.nn.attention import TransformerBlock


@dataclass
class SASRecConfig:
    num_users: int = 943  # (not used by the network: users are their sequences)
    num_items: int = 1682
    max_len: int = 200  # positions (the paper's n; 200 for MovieLens)
    dim: int = 64  # the paper's d
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.2


@register_model("sasrec", SASRecConfig)
class SASRec(Recommender):
    """SASRec (Kang & McAuley 2018): causal self-attention over a user's item sequence, next-item scores."""

    inputs = "sequence"

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item = nn.Embedding(cfg.num_items + 1, cfg.dim, padding_idx=cfg.num_items)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.dim, cfg.n_heads, ffn_dim=cfg.dim, act="relu", norm_position="pre", dropout=cfg.dropout
            )
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.item.weight, std=cfg.dim**-0.5)
        with torch.no_grad():
            self.item.weight[cfg.num_items].zero_()

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """Item ids (B, T), padding = num_items -> states (B, T, dim) (the last ``max_len`` positions)."""
        seq = seq[:, -self.cfg.max_len :]
        t = seq.shape[1]
        keep = (seq != self.cfg.num_items).unsqueeze(-1)  # (B, T, 1)
        x = self.item(seq) * math.sqrt(self.cfg.dim) + self.pos.weight[self.cfg.max_len - t :]
        x = self.drop(x) * keep
        mask = keep[:, None, None, :, 0]  # (B, 1, 1, T): padding keys take no attention
        for block in self.blocks:
            x = block(x, mask=mask, is_causal=True) * keep
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """States (..., dim) -> scores of every item (..., num_items)."""
        return h @ self.item.weight[: self.cfg.num_items].T

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(seq))  # (B, T, num_items)

    def score_all(self, seq: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        return self.logits(self.hidden(seq)[:, -1])

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        return ScoreAll(self)  # score_all is already loop-free

    def item_vectors(self) -> torch.Tensor:
        return self.item.weight[: self.cfg.num_items]

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """``{"seq": (B, seq_len)}`` item ids, the first two positions of row 0 padding."""
        seq = random_ids(example_generator(), self.cfg.num_items, (batch_size, min(seq_len, self.cfg.max_len)))
        seq[0, :2] = self.cfg.num_items
        return {"seq": seq.to(model_device(self))}
