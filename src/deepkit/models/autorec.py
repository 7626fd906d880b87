"""I-AutoRec (Sedhain, Menon, Sanner & Xie 2015, "AutoRec: Autoencoders Meet Collaborative Filtering"): an
autoencoder over item rating vectors. Item ``i`` is the vector of its ratings by every user (0 where unrated;
deepkit centres ratings on the training mean); ``h(r) = f(V r + mu)``, ``r_hat = W h + b``. Only the observed
ratings enter the loss, and the prediction of user ``u`` for item ``i`` is ``r_hat(r_i)[u]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.base import Recommender, example_generator, model_device
from deepkit.models.registry import register_model
from deepkit.nn import get_act


@dataclass
class AutoRecConfig:
    num_users: int = 943  # width of an item's rating vector; filled from the data
    num_items: int = 1682  # (the catalogue; the network itself does not depend on it)
    hidden: int = 500  # the paper's k
    act: str = "sigmoid"  # encoder activation (the paper: sigmoid; identity decoder)
    dropout: float = 0.0  # on the input ratings while training


@register_model("i_autorec", AutoRecConfig)
class IAutoRec(Recommender):
    """I-AutoRec (Sedhain et al. 2015): an autoencoder over each item's vector of user ratings."""

    inputs = "item_vectors"

    def __init__(self, cfg: AutoRecConfig):
        super().__init__()
        self.cfg = cfg
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.Linear(cfg.num_users, cfg.hidden)
        self.act = get_act(cfg.act)
        self.decoder = nn.Linear(cfg.hidden, cfg.num_users)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Item rating vectors (B, U) -> codes (B, hidden)."""
        return self.act(self.encoder(self.drop(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))  # (B, U): every user's predicted rating (offset) of these items

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        """User ids -> that user's column of ``forward(item_matrix)``: the items' codes depend on no user, so they are
        computed here, once, and the graph holds them and the decoder (the same products, a user's columns only)."""
        if item_matrix is None:
            raise ConfigError("I-AutoRec's export needs the run's known ratings as item vectors (item_matrix)")
        with torch.no_grad():
            codes = self.encode(item_matrix)
        return AutoRecDecoder(codes, self.decoder)

    def item_vectors(self) -> torch.Tensor:
        raise NotImplementedError("I-AutoRec's item vectors are codes of rating vectors: encode(vectors)")

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"x": (B, num_users)}``: sparse centred ratings (one in five observed)."""
        g = example_generator()
        x = torch.randint(-2, 3, (batch_size, self.cfg.num_users), generator=g).float()
        x = x * (torch.rand(batch_size, self.cfg.num_users, generator=g) < 0.2)
        return {"x": x.to(model_device(self))}


class AutoRecDecoder(nn.Module):
    """User ids ``(B,)`` -> ``decoder(codes)[:, user].T``, every item's predicted rating offset ``(B, num_items)``."""

    def __init__(self, codes: torch.Tensor, decoder: nn.Linear):
        super().__init__()
        self.register_buffer("codes", codes.detach().clone())  # (I, hidden)
        self.decoder = decoder

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.decoder.weight[user] @ self.codes.T + self.decoder.bias[user][:, None]
