"""A two-tower recommender with side features (the dual-encoder of YouTube's retrieval model, Yi et al. 2019;
Covington et al. 2016): a user tower over [user-id embedding; user features] and an item tower over [item-id
embedding; item features], each an MLP ending in ``dim + 1`` units: a vector and a bias. The score is
``u . v + b_u + b_i``.

The features of the catalogue's users and items (MovieLens: age, gender, occupation; year and genres) are buffers
the family fills from the data, so the model scores every known user and item alone. While training, a share
``id_dropout`` of the user ids is replaced by an extra "unknown user" row, so the user tower also learns to score
from features alone: a user unseen in training is scored from their features with that row
(``forward(..., user_x=features)`` with ``user = num_users``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Recommender, ScoreAll, example_generator
from deepkit.models.registry import register_model


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        mods.append(nn.Linear(a, b))
        if j < len(sizes) - 2:
            mods += [nn.ReLU(), *([nn.Dropout(dropout)] if dropout > 0 else [])]
    return nn.Sequential(*mods)


@dataclass
class TwoTowerConfig:
    num_users: int = 943
    num_items: int = 1682
    user_features: int = 24  # MovieLens 100k: age, gender (2), occupation (21)
    item_features: int = 20  # MovieLens 100k: release year, 19 genres
    id_dim: int = 32  # id embeddings
    hidden: int = 64
    dim: int = 32  # the towers' output vectors
    dropout: float = 0.0
    id_dropout: float = 0.2  # share of training user ids replaced by the unknown-user row


@register_model("two_tower", TwoTowerConfig)
class TwoTower(Recommender):
    """Two towers (user: id + features, item: id + features) scored by a dot product plus biases."""

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.cfg = cfg
        self.user = nn.Embedding(cfg.num_users + 1, cfg.id_dim)  # row num_users: the unknown user
        self.item = nn.Embedding(cfg.num_items, cfg.id_dim)
        nn.init.normal_(self.user.weight, std=0.01)
        nn.init.normal_(self.item.weight, std=0.01)
        self.user_tower = mlp([cfg.id_dim + cfg.user_features, cfg.hidden, cfg.dim + 1], cfg.dropout)
        self.item_tower = mlp([cfg.id_dim + cfg.item_features, cfg.hidden, cfg.dim + 1], cfg.dropout)
        self.register_buffer("user_x", torch.zeros(cfg.num_users, cfg.user_features))
        self.register_buffer("item_x", torch.zeros(cfg.num_items, cfg.item_features))

    @property
    def unknown_user(self) -> int:
        return self.cfg.num_users

    def set_features(self, user_x: torch.Tensor, item_x: torch.Tensor) -> None:
        """The catalogue's encoded side features: (num_users, user_features) and (num_items, item_features)."""
        with torch.no_grad():
            self.user_x.copy_(user_x)
            self.item_x.copy_(item_x)

    def user_tables(self) -> list[nn.Embedding]:
        return [self.user]

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item]

    def users(self, user: torch.Tensor, user_x: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors (B, dim + 1); ``user_x`` (B, user_features) for users given by their features."""
        if user_x is None:
            user_x = self.user_x[user.clamp(max=self.cfg.num_users - 1)]
        ids = user
        if self.training and self.cfg.id_dropout > 0:
            drop = torch.rand(user.shape, device=user.device) < self.cfg.id_dropout
            ids = torch.where(drop, torch.full_like(user, self.unknown_user), user)
        return self.user_tower(torch.cat([self.user(ids), user_x], -1))

    def items(self, item: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors (B, dim + 1) (every item's when ``item`` is None)."""
        if item is None:
            return self.item_tower(torch.cat([self.item.weight, self.item_x], -1))
        return self.item_tower(torch.cat([self.item(item), self.item_x[item]], -1))

    @staticmethod
    def _score(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u[..., :-1] * v[..., :-1]).sum(-1) + u[..., -1] + v[..., -1]

    def forward(self, user: torch.Tensor, item: torch.Tensor, user_x: torch.Tensor | None = None) -> torch.Tensor:
        return self._score(self.users(user, user_x), self.items(item))

    def score_all(self, user: torch.Tensor, chunk: int = 0, user_x: torch.Tensor | None = None) -> torch.Tensor:
        u, v = self.users(user, user_x), self.items()
        return u[:, :-1] @ v[:, :-1].T + u[:, -1:] + v[:, -1]

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        return ScoreAll(self)  # score_all is already loop-free

    def item_vectors(self) -> torch.Tensor:
        return self.items()[:, :-1]

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user", "item"}`` ids and ``"user_x"`` features (B, user_features)."""
        out = self.pair_example(batch_size)
        out["user_x"] = torch.randn(batch_size, self.cfg.user_features, generator=example_generator(1)).to(
            out["user"].device
        )
        return out
