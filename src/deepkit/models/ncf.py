"""Neural collaborative filtering (He et al. 2017, "Neural Collaborative Filtering"): GMF, the NCF MLP and NeuMF.

* GMF: ``h . (p_u * q_i) + b`` (a weighted inner product);
* NCF MLP: a tower over ``[p_u; q_i]``, halving its width layer by layer (``layers`` = the widths, the first being
  the concatenated embeddings, as in the paper's ``[64, 32, 16, 8]``);
* NeuMF: both, with their own embeddings, fused by one output layer over ``[GMF vector; MLP vector]``. As in the
  paper it can start from trained GMF and MLP runs (``pretrained_gmf``, ``pretrained_mlp``): their weights are
  copied in and the output layer becomes ``[alpha * h_gmf; (1 - alpha) * h_mlp]`` (the recommender family loads
  them when a run starts, :func:`init_from_pretrained`).

Outputs are logits of an interaction (ranking: BCE or BPR), or rating offsets (rating prediction adds the mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import Recommender, ScoreAll, id_embeddings
from deepkit.models.registry import register_model


def check_layers(layers: list[int]) -> None:
    if len(layers) < 2 or layers[0] % 2 or any(w < 1 for w in layers):
        raise ConfigError(
            f"model.layers must list >= 2 positive widths, the first even (it holds the user and item embeddings "
            f"side by side), got {layers}"
        )


def tower(layers: list[int], dropout: float) -> nn.Sequential:
    """``Linear -> ReLU (-> Dropout)`` for each pair of consecutive widths. Glorot-uniform weights and zero biases,
    as in the paper's code: the embeddings start tiny (std 0.01), so torch's default random biases would decide
    alone which units start active, and a narrow last layer could start (and stay) nearly dead."""
    mods: list[nn.Module] = []
    for a, b in zip(layers[:-1], layers[1:], strict=True):
        linear = nn.Linear(a, b)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        mods += [linear, nn.ReLU()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
    return nn.Sequential(*mods)


@dataclass
class GMFConfig:
    num_users: int = 943
    num_items: int = 1682
    dim: int = 32  # predictive factors
    init_std: float = 0.01


@register_model("gmf", GMFConfig)
class GMF(Recommender):
    """Generalized matrix factorization (He et al. 2017): h . (p_u * q_i) + b."""

    def __init__(self, cfg: GMFConfig):
        super().__init__()
        self.cfg = cfg
        self.user, self.item = id_embeddings(cfg.num_users, cfg.num_items, cfg.dim, cfg.init_std)
        self.head = nn.Linear(cfg.dim, 1)

    def user_tables(self) -> list[nn.Embedding]:
        return [self.user]

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.head(self.user(user) * self.item(item))[:, 0]

    def score_all(self, user: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        # h . (p * q) = (p * h) . q: one matmul for every item
        return (self.user(user) * self.head.weight[0]) @ self.item.weight.T + self.head.bias

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        return ScoreAll(self)  # score_all is already loop-free

    def item_vectors(self) -> torch.Tensor:
        return self.item.weight * self.head.weight[0]  # the item factors as the head weighs them

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user": (B,), "item": (B,)}`` ids."""
        return self.pair_example(batch_size)


@dataclass
class NCFMLPConfig:
    num_users: int = 943
    num_items: int = 1682
    layers: list[int] = field(default_factory=lambda: [64, 32, 16, 8])  # [2 * embedding size, hidden widths...]
    dropout: float = 0.0
    init_std: float = 0.01


@register_model("ncf_mlp", NCFMLPConfig)
class NCFMLP(Recommender):
    """The NCF MLP (He et al. 2017): a ReLU tower over [p_u; q_i], then one output unit."""

    def __init__(self, cfg: NCFMLPConfig):
        super().__init__()
        check_layers(cfg.layers)
        self.cfg = cfg
        self.user, self.item = id_embeddings(cfg.num_users, cfg.num_items, cfg.layers[0] // 2, cfg.init_std)
        self.mlp = tower(cfg.layers, cfg.dropout)
        self.head = nn.Linear(cfg.layers[-1], 1)

    def user_tables(self) -> list[nn.Embedding]:
        return [self.user]

    def item_tables(self) -> list[nn.Embedding]:
        return [self.item]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(torch.cat([self.user(user), self.item(item)], -1)))[:, 0]

    def item_vectors(self) -> torch.Tensor:
        return self.item.weight

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user": (B,), "item": (B,)}`` ids."""
        return self.pair_example(batch_size)


@dataclass
class NeuMFConfig:
    num_users: int = 943
    num_items: int = 1682
    dim: int = 32  # GMF predictive factors
    layers: list[int] = field(default_factory=lambda: [64, 32, 16, 8])  # the MLP tower, as in ncf_mlp
    dropout: float = 0.0
    init_std: float = 0.01
    pretrained_gmf: str | None = None  # a trained gmf run (directory) to start from (new runs only)
    pretrained_mlp: str | None = None  # a trained ncf_mlp run
    alpha: float = 0.5  # weight of the GMF part in the pretrained output layer


@register_model("neumf", NeuMFConfig)
class NeuMF(Recommender):
    """NeuMF (He et al. 2017): GMF and an MLP tower with separate embeddings, fused by one output layer."""

    def __init__(self, cfg: NeuMFConfig):
        super().__init__()
        check_layers(cfg.layers)
        if not 0.0 <= cfg.alpha <= 1.0:
            raise ConfigError(f"model.alpha must be in [0, 1], got {cfg.alpha}")
        self.cfg = cfg
        half = cfg.layers[0] // 2
        self.gmf_user = nn.Embedding(cfg.num_users, cfg.dim)
        self.gmf_item = nn.Embedding(cfg.num_items, cfg.dim)
        self.mlp_user = nn.Embedding(cfg.num_users, half)
        self.mlp_item = nn.Embedding(cfg.num_items, half)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=cfg.init_std)
        self.mlp = tower(cfg.layers, cfg.dropout)
        self.head = nn.Linear(cfg.dim + cfg.layers[-1], 1)

    def user_tables(self) -> list[nn.Embedding]:
        return [self.gmf_user, self.mlp_user]

    def item_tables(self) -> list[nn.Embedding]:
        return [self.gmf_item, self.mlp_item]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        g = self.gmf_user(user) * self.gmf_item(item)  # (B, dim)
        m = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], -1))  # (B, layers[-1])
        return self.head(torch.cat([g, m], -1))[:, 0]

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.gmf_item.weight, self.mlp_item.weight], -1)

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"user": (B,), "item": (B,)}`` ids."""
        return self.pair_example(batch_size)


def init_from_pretrained(
    model: NeuMF, gmf: dict[str, torch.Tensor], mlp: dict[str, torch.Tensor], alpha: float
) -> None:
    """Copy a trained GMF's and NCF MLP's weights into ``model`` (He et al. 2017, section 3.4.1): the embeddings and
    the tower as they are, the output layer as ``[alpha * h_gmf; (1 - alpha) * h_mlp]``, bias likewise."""
    pairs = {
        "gmf_user.weight": gmf["user.weight"],
        "gmf_item.weight": gmf["item.weight"],
        "mlp_user.weight": mlp["user.weight"],
        "mlp_item.weight": mlp["item.weight"],
        **{f"mlp.{k[4:]}": v for k, v in mlp.items() if k.startswith("mlp.")},
    }
    own = model.state_dict()
    for key, value in pairs.items():
        if key not in own or own[key].shape != value.shape:
            have = tuple(own[key].shape) if key in own else "none"
            raise ShapeError(
                f"pretrained weight {key}: shape {tuple(value.shape)} does not fit NeuMF's {have}; the GMF/MLP runs "
                "need this run's users, items, dim and layers"
            )
    with torch.no_grad():
        for key, value in pairs.items():
            own[key].copy_(value)
        model.head.weight.copy_(torch.cat([alpha * gmf["head.weight"], (1 - alpha) * mlp["head.weight"]], -1))
        model.head.bias.copy_(alpha * gmf["head.bias"] + (1 - alpha) * mlp["head.bias"])
