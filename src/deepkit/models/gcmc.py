"""Graph convolutional matrix completion (Berg, Kipf & Welling 2017, "Graph Convolutional Matrix Completion"): a
graph auto-encoder on the bipartite user-item graph of the training ratings.

* Encoder: one graph-convolution layer with a weight matrix per rating level ``r`` (``W_r``; with ``ordinal``
  weight sharing ``W_r = T_1 + ... + T_r``): a node's hidden vector gathers ``c * W_r x_j`` from every neighbour
  ``j`` it shares a rating ``r`` with, the per-level sums stacked (``accumulate=stack``) or added (``sum``), then
  ReLU. Node features are one-hot ids, so ``W_r x_j`` is row ``j`` of ``W_r``. ``c`` is ``1 / deg(node)`` (``left``
  normalisation) or ``1 / sqrt(deg(node) deg(j))`` (``symmetric``), degrees over all levels. Node dropout drops
  whole input rows (every message a node sends) with probability ``dropout``.
* A dense layer (weights shared by users and items) maps the hidden vectors to ``dense`` units; with
  ``side_features`` the users' and items' own features (MovieLens: age, gender, occupation; year, genres) enter
  it through a small hidden layer (``feature_hidden`` units) each.
* Decoder: bilinear with ``basis`` shared matrices ``Q_s`` (basis-matrix weight sharing): the logit of level ``r``
  is ``sum_s a_rs u^T Q_s v``; the prediction is the expected rating under their softmax.

The graph is the training split's ratings (``set_graph``, which the recommenders family calls with the training
part only: no validation or test pair is a message); it is kept in buffers, so a saved run scores with the graph it
was trained on. ``average`` > 0 keeps an exponential moving average of the weights (the paper's evaluation uses
one, decay 0.995), updated after each optimizer step (``update_average``); in eval mode the model computes with the
averages. One run, one model: the average is of this run's own weights along its trajectory, not an ensemble.

``forward(user, item)`` returns the expected rating minus the training mean (the level values are stored centred),
as every rating recommender here does; ``level_logits(user, item)`` are what the cross-entropy loss reads.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.base import Recommender, example_generator
from deepkit.models.registry import register_model


@dataclass
class GCMCConfig:
    num_users: int = 943  # filled from the data
    num_items: int = 1682
    num_levels: int = 5  # rating levels (MovieLens: 1..5), filled from the data
    num_edges: int = 0  # training ratings in the graph, filled from the data
    hidden: int = 500  # graph-convolution units (stack: split over the levels, rounded up to a multiple of them)
    dense: int = 75  # the dense layer's units (the decoder's vectors)
    accumulate: Literal["stack", "sum"] = "stack"
    ordinal: bool = True  # ordinal weight sharing: W_r = T_1 + ... + T_r
    norm: Literal["left", "symmetric"] = "left"
    dropout: float = 0.7  # node dropout on the graph inputs and dropout on the dense layer's inputs
    dense_act: Literal["none", "relu"] = "none"
    basis: int = 2  # basis matrices of the bilinear decoder
    side_features: bool = False
    user_features: int = 0  # filled from the data when side_features is on
    item_features: int = 0
    feature_hidden: int = 10
    average: float = 0.995  # decay of the weights' moving average used in eval mode; 0: off


def glorot_(t: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(t, -bound, bound)


@register_model("gcmc", GCMCConfig)
class GCMC(Recommender):
    """Graph auto-encoder for rating prediction (Berg et al. 2017): ordinal graph convolution, dense layer,
    bilinear decoder with shared bases; the expected rating under a softmax over the rating levels."""

    def __init__(self, cfg: GCMCConfig):
        super().__init__()
        if cfg.num_levels < 2:
            raise ConfigError(f"gcmc needs at least 2 rating levels, got num_levels={cfg.num_levels}")
        if not 0 <= cfg.dropout < 1 or not 0 <= cfg.average < 1:
            raise ConfigError(f"model.dropout and model.average must be in [0, 1), got {cfg.dropout}, {cfg.average}")
        self.cfg = cfg
        n, levels = cfg.num_users + cfg.num_items, cfg.num_levels
        h = -(-cfg.hidden // levels) if cfg.accumulate == "stack" else cfg.hidden  # stack: hidden / L units a level
        width = h * levels if cfg.accumulate == "stack" else h
        self.conv = nn.Parameter(glorot_(torch.empty(levels, n, h), n, h))  # T_r (ordinal) or W_r, rows: nodes
        self.dense_w = nn.Parameter(glorot_(torch.empty(cfg.dense, width), width, cfg.dense))
        if cfg.side_features:
            if cfg.user_features < 1 or cfg.item_features < 1:
                raise ConfigError("model.side_features needs user_features and item_features (filled from the data)")
            fh = cfg.feature_hidden
            self.user_feat_w = nn.Parameter(glorot_(torch.empty(fh, cfg.user_features), cfg.user_features, fh))
            self.item_feat_w = nn.Parameter(glorot_(torch.empty(fh, cfg.item_features), cfg.item_features, fh))
            self.user_feat_b = nn.Parameter(torch.zeros(fh))
            self.item_feat_b = nn.Parameter(torch.zeros(fh))
            self.user_side_w = nn.Parameter(glorot_(torch.empty(cfg.dense, fh), fh, cfg.dense))
            self.item_side_w = nn.Parameter(glorot_(torch.empty(cfg.dense, fh), fh, cfg.dense))
            self.register_buffer("user_x", torch.zeros(cfg.num_users, cfg.user_features))
            self.register_buffer("item_x", torch.zeros(cfg.num_items, cfg.item_features))
        bases = [nn.init.orthogonal_(torch.empty(cfg.dense, cfg.dense)) for _ in range(cfg.basis)]
        self.bases = nn.Parameter(torch.stack(bases))
        self.mix = nn.Parameter(glorot_(torch.empty(cfg.basis, levels), cfg.basis, levels))
        # the graph (training ratings) and the centred value of each level; a placeholder until set_graph
        g = example_generator(1)
        self.register_buffer("edge_user", torch.randint(0, cfg.num_users, (cfg.num_edges,), generator=g))
        self.register_buffer("edge_item", torch.randint(0, cfg.num_items, (cfg.num_edges,), generator=g))
        self.register_buffer("edge_level", torch.randint(0, levels, (cfg.num_edges,), generator=g))
        self.register_buffer("level_values", torch.arange(levels, dtype=torch.float32) - (levels - 1) / 2)
        if cfg.average > 0:
            for name, p in self.named_parameters():
                self.register_buffer(f"avg_{name}", p.detach().clone())
            self.register_buffer("avg_steps", torch.zeros((), dtype=torch.long))

    # --- set up by the family ----------------------------------------------------------------------------------------
    def set_graph(self, user: torch.Tensor, item: torch.Tensor, level: torch.Tensor, values: torch.Tensor) -> None:
        """The training ratings as edges (user, item, level index) and the levels' values minus the training mean."""
        if not len(user) == len(item) == len(level) == self.cfg.num_edges:
            raise ConfigError(f"set_graph: {len(user)} edges given, the model was built for {self.cfg.num_edges}")
        if len(values) != self.cfg.num_levels:
            raise ConfigError(f"set_graph: {len(values)} level values, expected {self.cfg.num_levels}")
        with torch.no_grad():
            self.edge_user.copy_(user)
            self.edge_item.copy_(item)
            self.edge_level.copy_(level)
            self.level_values.copy_(values)

    def set_side_features(self, user_x: torch.Tensor, item_x: torch.Tensor) -> None:
        """The catalogue's encoded side features (num_users, user_features), (num_items, item_features)."""
        with torch.no_grad():
            self.user_x.copy_(user_x)
            self.item_x.copy_(item_x)

    @torch.no_grad()
    def update_average(self) -> None:
        """One step of the weights' moving average (after each optimizer step); the decay is
        ``min(average, (1 + t) / (10 + t))`` at step ``t`` (TensorFlow's ``num_updates`` form), so the average follows
        the weights closely early on instead of lingering near their initial values."""
        t = int(self.avg_steps)
        d = min(self.cfg.average, (1 + t) / (10 + t))
        self.avg_steps += 1
        for name, p in self.named_parameters():
            getattr(self, f"avg_{name}").mul_(d).add_(p.detach(), alpha=1 - d)

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to compute with: the parameters while training, their moving averages in eval mode."""
        if self.training or self.cfg.average <= 0:
            return dict(self.named_parameters())
        return {name: getattr(self, f"avg_{name}") for name, _ in self.named_parameters()}

    # --- encoder / decoder -------------------------------------------------------------------------------------------
    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's and item's vector, (num_users, dense) and (num_items, dense)."""
        cfg, w = self.cfg, self.weights()
        nu, ni = cfg.num_users, cfg.num_items
        x = w["conv"].cumsum(0) if cfg.ordinal else w["conv"]  # (L, N, h)
        if self.training and cfg.dropout > 0:  # node dropout: a dropped node sends nothing at any level
            keep = torch.rand(x.shape[1], 1, device=x.device) >= cfg.dropout
            x = x * keep / (1 - cfg.dropout)
        rows = x.reshape(-1, x.shape[-1])  # (L * N, h): row r * N + j is W_r x_j
        hu, hi = (torch.relu(m @ rows) for m in self._messages())
        if cfg.accumulate == "stack":  # (nodes * L, h) rows -> (nodes, L * h)
            hu, hi = hu.reshape(nu, -1), hi.reshape(ni, -1)
        if self.training and cfg.dropout > 0:
            hu, hi = F.dropout(hu, cfg.dropout), F.dropout(hi, cfg.dropout)
        zu, zi = hu @ w["dense_w"].T, hi @ w["dense_w"].T
        if cfg.side_features:
            fu = torch.relu(F.linear(self.user_x, w["user_feat_w"], w["user_feat_b"]))
            fi = torch.relu(F.linear(self.item_x, w["item_feat_w"], w["item_feat_b"]))
            zu, zi = zu + fu @ w["user_side_w"].T, zi + fi @ w["item_side_w"].T
        if cfg.dense_act == "relu":
            zu, zi = torch.relu(zu), torch.relu(zi)
        return zu, zi

    def _messages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised graph as two sparse (CSR) matrices from the input rows ``(level, node)`` of ``conv`` to the
        users' and the items' hidden rows (``(node, level)`` with ``stack``, ``node`` with ``sum``); cached until
        the edges change (``set_graph``, loading a checkpoint)."""
        key = (self.edge_user._version, self.edge_item._version, self.edge_level._version, self.edge_user.device)
        cache = getattr(self, "_graph_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        cfg = self.cfg
        nu, ni, levels = cfg.num_users, cfg.num_items, cfg.num_levels
        n = nu + ni
        u, i, r = self.edge_user, self.edge_item, self.edge_level
        deg_u = torch.bincount(u, minlength=nu).clamp_min(1).float()
        deg_i = torch.bincount(i, minlength=ni).clamp_min(1).float()
        if cfg.norm == "left":
            c_u, c_i = 1 / deg_u[u], 1 / deg_i[i]
        else:
            c_u = c_i = (deg_u[u] * deg_i[i]).rsqrt()
        out = []
        for dst, src, c, size in ((u, nu + i, c_u, nu), (i, u, c_i, ni)):
            rows = dst * levels + r if cfg.accumulate == "stack" else dst
            height = size * levels if cfg.accumulate == "stack" else size
            cols = r * n + src
            order = torch.argsort(rows * (levels * n) + cols)
            crow = torch.zeros(height + 1, dtype=torch.long, device=u.device)
            crow[1:] = torch.cumsum(torch.bincount(rows, minlength=height), 0)
            with warnings.catch_warnings():  # torch calls its sparse CSR support beta
                warnings.simplefilter("ignore")
                out.append(torch.sparse_csr_tensor(crow, cols[order], c[order], (height, levels * n)))
        self._graph_cache = (key, tuple(out))
        return self._graph_cache[1]

    def _logits(self, zu: torch.Tensor, zi: torch.Tensor, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Level logits of the pairs ``(user, item)`` from every user's and item's vectors (B, L). When the pairs
        are 2% of all (user, item) cells or more (a full training batch), every cell's ``u^T Q_s v`` is one matrix
        product (cheaper than gathering a vector per pair), else per pair."""
        w = self.weights()
        uq = torch.einsum("ud,sde->sue", zu, w["bases"])  # (S, U, D): u^T Q_s for every user once
        if len(user) * 50 >= zu.shape[0] * zi.shape[0]:
            per_basis = (uq @ zi.T).flatten(1)[:, user * zi.shape[0] + item]  # (S, B)
        else:
            per_basis = (uq[:, user] * zi[item]).sum(-1)
        return per_basis.T @ w["mix"]

    def level_logits(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The logit of each rating level for each (user, item) pair (B, num_levels)."""
        zu, zi = self.encode()
        return self._logits(zu, zi, user, item)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Expected rating minus the training mean (B,)."""
        return self.level_logits(user, item).softmax(-1) @ self.level_values

    def score_all(self, user: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Expected ratings minus the mean of every item for each user (B, num_items)."""
        zu, zi = self.encode()
        w = self.weights()
        zi_q = torch.einsum("sde,ie->sid", w["bases"], zi)  # (S, I, D)
        rows = []
        for part in user.split(chunk):
            per_basis = torch.einsum("bd,sid->bis", zu[part], zi_q)  # (B, I, S)
            rows.append((per_basis @ w["mix"]).softmax(-1) @ self.level_values)
        return torch.cat(rows) if rows else zu.new_zeros(0, self.cfg.num_items)

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        """The decoder over every user's and item's vector: the graph encoder runs here, once (in eval mode its
        inputs, the training graph and the weights, are fixed; sparse products stay out of the exported graph)."""
        with torch.no_grad():
            zu, zi = self.encode()
            w = self.weights()
            zi_q = torch.einsum("sde,ie->sid", w["bases"], zi)
        return GCMCDecoder(zu, zi_q, w["mix"], self.level_values)

    def item_vectors(self) -> torch.Tensor:
        return self.encode()[1]

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user", "item"}`` ids (the graph is the placeholder until ``set_graph``)."""
        return self.pair_example(batch_size)


class GCMCDecoder(nn.Module):
    """User ids ``(B,)`` -> expected ratings minus the mean of every item ``(B, num_items)`` (``score_all``'s
    decoder on the encoded users and items, kept as buffers)."""

    def __init__(self, zu: torch.Tensor, zi_q: torch.Tensor, mix: torch.Tensor, level_values: torch.Tensor):
        super().__init__()
        for name, t in (("zu", zu), ("zi_q", zi_q), ("mix", mix), ("level_values", level_values)):
            self.register_buffer(name, t.detach().clone())

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        per_basis = torch.einsum("bd,sid->bis", self.zu[user], self.zi_q)  # (B, I, S)
        return (per_basis @ self.mix).softmax(-1) @ self.level_values
