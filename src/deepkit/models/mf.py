"""Biased matrix factorization (Koren, Bell & Volinsky 2009, "Matrix factorization techniques for recommender
systems"): ``r(u, i) = mu + b_u + b_i + p_u . q_i``. The model returns ``b_u + b_i + p_u . q_i``; the rating task
adds the training mean ``mu``. With ``biases=false`` it is plain MF (BPR-MF under the BPR loss, Rendle et al. 2009).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Recommender, ScoreAll, id_embeddings
from deepkit.models.registry import register_model


@dataclass
class MFConfig:
    num_users: int = 943  # MovieLens 100k's; filled from the data
    num_items: int = 1682
    dim: int = 64  # latent factors
    biases: bool = True  # user and item biases b_u, b_i
    init_std: float = 0.01  # factors start N(0, init_std); biases at 0


@register_model("biased_mf", MFConfig)
class BiasedMF(Recommender):
    """Biased matrix factorization: b_u + b_i + p_u . q_i (Koren et al. 2009)."""

    def __init__(self, cfg: MFConfig):
        super().__init__()
        self.cfg = cfg
        self.user, self.item = id_embeddings(cfg.num_users, cfg.num_items, cfg.dim, cfg.init_std)
        if cfg.biases:
            self.user_bias = nn.Embedding(cfg.num_users, 1)
            self.item_bias = nn.Embedding(cfg.num_items, 1)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)

    def user_tables(self) -> list[nn.Embedding]:
        return [self.user, self.user_bias] if self.cfg.biases else [self.user]

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item, self.item_bias] if self.cfg.biases else [self.item]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        out = (self.user(user) * self.item(item)).sum(-1)  # (B,)
        if self.cfg.biases:
            out = out + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
        return out

    def score_all(self, user: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        out = self.user(user) @ self.item.weight.T  # (B, I)
        if self.cfg.biases:
            out = out + self.user_bias(user) + self.item_bias.weight[:, 0]
        return out

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        return ScoreAll(self)  # score_all is already loop-free

    def item_vectors(self) -> torch.Tensor:
        return self.item.weight

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user": (B,), "item": (B,)}`` ids."""
        return self.pair_example(batch_size)
